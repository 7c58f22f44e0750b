#!/bin/sh
# Regenerates the strace captures of the tiers example (examples/tiers.rs)
# in this directory, and then the golden dumps of their imported records:
#   crates/vpath-import/tests/data/strace/capture.sh
# Needs strace (-f -ttt -yy) and loopback (127.0.0.1 and ::1). The tiers
# binary is copied to /tmp/vpath-tiers first so that the paths in the
# captures do not depend on the checkout.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target-import}
cd "$root"
CARGO_TARGET_DIR=$target cargo build -q -p vpath-import --example tiers
cp "$target/debug/examples/tiers" /tmp/vpath-tiers
cd /tmp
# 3 clients x 2 requests over IPv4; 2 clients x 2 requests over IPv6.
strace -f -ttt -yy -o "$here/tiers-v4.strace" /tmp/vpath-tiers 3 2 >/dev/null
strace -f -ttt -yy -o "$here/tiers-v6.strace" /tmp/vpath-tiers --v6 2 2 >/dev/null
rm -f /tmp/vpath-tiers
ls -l "$here"/*.strace
cd "$root"
VPATH_BLESS=1 CARGO_TARGET_DIR=$target cargo test -q -p vpath-import --test golden
