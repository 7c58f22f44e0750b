#!/usr/bin/env bash
# Fails if the committed BPF object is not what scripts/build-bpf.sh makes
# from the committed sources. Builds into a temporary directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
committed="$root/crates/vpath-bpf/bpf/vpath.bpf.o"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$committed" ]; then
    echo "check-bpf: FAIL: $committed is missing; run scripts/build-bpf.sh" >&2
    exit 1
fi
"$root/scripts/build-bpf.sh" "$tmp/vpath.bpf.o" >/dev/null
if cmp -s "$committed" "$tmp/vpath.bpf.o"; then
    echo "check-bpf: OK: $committed matches a fresh build ($(wc -c < "$committed") bytes)"
    exit 0
fi
echo "check-bpf: FAIL: $committed differs from a fresh build of bpf/vpath.bpf.c." >&2
echo "  committed built with: $(cat "$committed.clang-version" 2>/dev/null || echo unknown)" >&2
echo "  fresh build with:     $(cat "$tmp/vpath.bpf.o.clang-version")" >&2
echo "  If you changed bpf/*, run scripts/build-bpf.sh and commit the object." >&2
echo "  If only the clang versions differ, rebuild with the committed one's clang." >&2
cmp "$committed" "$tmp/vpath.bpf.o" >&2 || true
exit 1
