#!/usr/bin/env bash
# Records a Tomcat stack load with vpath and judges the paths with the independent checker.
#
#   record-and-check.sh N C [OUT_DIR]
#
# The stack must be running with its items (stack.sh install/start/pages). Request content comes from vpath's own
# payload capture (`vpath record --payload-bytes 4096`); the checker compares the SQL text in each path with
# MariaDB's general log. VPATH (default: vpath on PATH) and CHECK (default: vpath-check-tomcat on PATH) name the
# binaries; extra checker arguments go in CHECK_ARGS (e.g. --strict).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
N=${1:-400}
C=${2:-4}
OUT=${3:-/tmp/vpath-tomcat-run}
D=${VPATH_TOMCAT_DIR:-/tmp/vpath-stacks/tomcat}
VPATH=${VPATH:-vpath}
CHECK=${CHECK:-vpath-check-tomcat}
mkdir -p "$OUT"
rm -f "$OUT"/run.vpl "$OUT"/paths.jsonl "$OUT"/report.json
# only the stack's connections: the machine may carry other loopback traffic
"$VPATH" record --payload-bytes 4096 --port "${TC_HTTP_PORT:-8081}" --port "${TC_DB_PORT:-3307}" \
  -o "$OUT/run.vpl" -- "$HERE/stack.sh" load "$N" "$C"
"$VPATH" analyze "$OUT/run.vpl" --format jsonl -o "$OUT/paths.jsonl"
"$VPATH" analyze "$OUT/run.vpl" --summary >"$OUT/summary.txt" 2>&1 || true
# shellcheck disable=SC2086
"$CHECK" --paths "$OUT/paths.jsonl" --stack-dir "$D" --json "$OUT/report.json" ${CHECK_ARGS:-}
