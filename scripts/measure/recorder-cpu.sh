#!/usr/bin/env bash
# The recorder's own CPU (user + system, start-up included) for 10 s of
# `vpath record` under `ab -l -c 8`, once per argument set, in turn:
#
#   VPATH=target/release/vpath scripts/measure/recorder-cpu.sh "--format raw" "--format events" ...
#
# Prints CPU seconds, records, ns per record, log bytes per record and the
# load's req/s. Default URL: the Tomcat stack's item page (URL=... to change).
set -euo pipefail
V=${VPATH:-vpath}
URL=${URL:-http://127.0.0.1:8081/item.jsp?id=7}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for a in "$@"; do
  ab -l -t 13 -n 10000000 -c 8 "$URL" >"$tmp/ab.out" 2>&1 &
  sleep 1.5
  # shellcheck disable=SC2086
  /usr/bin/time -f "%U %S" -o "$tmp/time" "$V" record $a --duration 10 -o "$tmp/run.vpl" 2>"$tmp/rec.err"
  wait
  read -r u s <"$tmp/time"
  n=$(grep -o "recorded [0-9]*" "$tmp/rec.err" | awk '{print $2}')
  sz=$(stat -c %s "$tmp/run.vpl")
  rps=$(grep "Requests per second" "$tmp/ab.out" | awk '{print $4}')
  awk -v a="$a" -v u="$u" -v s="$s" -v n="$n" -v sz="$sz" -v rps="$rps" \
    'BEGIN{printf "%-32s cpu=%.2fs n=%d ns/rec=%.0f B/rec=%.0f rps=%s\n", a, u+s, n, (u+s)*1e9/n, sz/n, rps}'
done
