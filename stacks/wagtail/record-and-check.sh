#!/usr/bin/env bash
# Records a Wagtail load with vpath and judges the paths with the independent checker.
#
#   record-and-check.sh N C [OUT_DIR]
#
# The stack must be running with its items (stack.sh install/start/pages). vpath records host-wide (every network
# namespace is a domain), only connections on the stack's two ports, with payload capture (`--payload-bytes
# 4096`), so each PostgreSQL span carries its SQL text in attrs["db.query.text"]. The checker compares that with
# PostgreSQL's own statement log (per session, matched by the session's client port) and never uses vpath's
# causality.
#
# VPATH (default: vpath on PATH) and CHECK (default: vpath-check-wagtail on PATH) name the binaries; extra
# arguments for the checker can follow in CHECK_ARGS (e.g. --strict).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
N=${1:-400}
C=${2:-8}
OUT=${3:-/tmp/vpath-wt-run}
D=${VPATH_wagtail:-/tmp/vpath-stacks/wagtail}
VPATH=${VPATH:-vpath}
CHECK=${CHECK:-vpath-check-wagtail}
HTTP_PORT=${WT_HTTP_PORT:-18000}
DB_PORT=${WT_DB_PORT:-15432}
mkdir -p "$OUT"
rm -f "$OUT"/run.vpl "$OUT"/paths.jsonl "$OUT"/report.json
"$VPATH" record --payload-bytes 4096 --port "$HTTP_PORT" --port "$DB_PORT" -o "$OUT/run.vpl" -- \
  "$HERE/stack.sh" load "$N" "$C"
"$VPATH" analyze "$OUT/run.vpl" --format jsonl -o "$OUT/paths.jsonl"
"$VPATH" analyze "$OUT/run.vpl" --summary >"$OUT/summary.txt" 2>&1 || true
# shellcheck disable=SC2086
"$CHECK" --paths "$OUT/paths.jsonl" --stack-dir "$D" --http-port "$HTTP_PORT" --db-port "$DB_PORT" \
  --json "$OUT/report.json" ${CHECK_ARGS:-}
