#!/usr/bin/env bash
# Builds the kernel side (bpf/vpath.bpf.c) into the object that vpath-bpf
# embeds: crates/vpath-bpf/bpf/vpath.bpf.o. Reproducible: the same clang gives
# the same bytes in any directory (no generated vmlinux.h, no absolute paths
# in the BTF line info, debug sections stripped).
#
# Usage: scripts/build-bpf.sh [OUTPUT.o]   (default: the committed object)
# Needs: clang and llvm-strip (apt-get install -y clang llvm).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/crates/vpath-bpf/bpf/vpath.bpf.o}"
CLANG="${CLANG:-clang}"
STRIP="${LLVM_STRIP:-llvm-strip}"

for tool in "$CLANG" "$STRIP"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build-bpf: '$tool' not found: apt-get install -y clang llvm" >&2
        exit 2
    fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Compile from inside bpf/ with relative paths so nothing host-specific
# lands in the object; the prefix map covers any path clang still records.
(
    cd "$root/bpf"
    "$CLANG" -target bpf -O2 -g -D__TARGET_ARCH_x86 \
        -fdebug-prefix-map="$root/bpf"=. -fdebug-prefix-map="$root"=. \
        -Wall -Werror -Wno-unused-function \
        -c vpath.bpf.c -o "$tmp/vpath.bpf.o"
)
"$STRIP" -g "$tmp/vpath.bpf.o"
mkdir -p "$(dirname "$out")"
cp "$tmp/vpath.bpf.o" "$out"
"$CLANG" --version | head -n1 > "$out.clang-version"
echo "build-bpf: wrote $out ($(wc -c < "$out") bytes, $(cat "$out.clang-version"))"
