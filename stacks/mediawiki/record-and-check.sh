#!/usr/bin/env bash
# Records a MediaWiki load with vpath and judges the paths with the independent checker.
#
#   record-and-check.sh N C [OUT_DIR]
#
# The stack must be running with its pages (stack.sh install/start/pages). Request content for the checker comes
# from vpath's own payload capture (VPATH_CONTENT=payload, the default: `vpath record --payload-bytes 4096`) or
# from a tcpdump capture on lo joined to the spans by stream position (VPATH_CONTENT=pcap: pcap-attrs.py), which
# also works with a recorder that has no payload capture.
#
# VPATH (default: vpath on PATH) and CHECK (default: vpath-check-mediawiki on PATH) name the binaries.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
N=${1:-400}
C=${2:-4}
OUT=${3:-/tmp/vpath-mw-run}
D=${VPATH_STACK_DIR:-/tmp/vpath-stacks/mediawiki}
VPATH=${VPATH:-vpath}
CHECK=${CHECK:-vpath-check-mediawiki}
MODE=${VPATH_CONTENT:-payload}
mkdir -p "$OUT"
rm -f "$OUT"/run.vpl "$OUT"/run.pcap "$OUT"/paths.jsonl "$OUT"/paths-attrs.jsonl

rec=(--payload-bytes 4096)
tp=
if [[ $MODE == pcap ]]; then
  command -v tcpdump >/dev/null || { echo "VPATH_CONTENT=pcap needs tcpdump (apt-get install tcpdump)" >&2; exit 1; }
  rec=(--no-content)
  tcpdump -i lo -s 0 -B 65536 -Z root -w "$OUT/run.pcap" \
    "tcp port ${MW_HTTP_PORT:-8080} or tcp port ${MW_FPM_PORT:-9000} or tcp port ${MW_DB_PORT:-3306} or tcp port ${MW_MC_PORT:-11211}" >"$OUT/tcpdump.log" 2>&1 &
  tp=$!
  sleep 1
fi
# only the stack's connections: the machine may carry other loopback traffic
ports=(--port "${MW_HTTP_PORT:-8080}" --port "${MW_FPM_PORT:-9000}" --port "${MW_DB_PORT:-3306}" --port "${MW_MC_PORT:-11211}")
"$VPATH" record "${rec[@]}" "${ports[@]}" -o "$OUT/run.vpl" -- "$HERE/stack.sh" load "$N" "$C"
if [[ -n $tp ]]; then
  sleep 2 # tcpdump drops what is still in its ring when told to stop: let it drain
  kill -INT "$tp"
  wait "$tp" || true
  grep -E 'dropped' "$OUT/tcpdump.log" || true
fi
"$VPATH" analyze "$OUT/run.vpl" --format jsonl -o "$OUT/paths.jsonl"
"$VPATH" analyze "$OUT/run.vpl" --summary >"$OUT/summary.txt" 2>&1 || true
paths=$OUT/paths.jsonl
if [[ $MODE == pcap ]]; then
  python3 "$HERE/pcap-attrs.py" "$OUT/run.pcap" "$OUT/paths.jsonl" >"$OUT/paths-attrs.jsonl"
  paths=$OUT/paths-attrs.jsonl
fi
"$CHECK" --paths "$paths" --stack-dir "$D" --json "$OUT/report.json"
