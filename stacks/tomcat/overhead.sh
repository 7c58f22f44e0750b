#!/usr/bin/env bash
# Capture overhead on the Tomcat stack at saturation, measured as the paper did: the same load, untraced and
# traced passes alternating in one run (so that the machine's drift hits both alike).
#
#   overhead.sh [N] [C] [ROUNDS]     N item views per pass (default 2000) at concurrency C (8), ROUNDS pairs (3)
#
# Load: `ab -l -n N -c C` on one item URL (each view runs Tomcat -> MariaDB over JDBC: with TC_JDBC=direct a new
# connection and 5 statements, with pool a ping and 3 statements). Traced passes run under `vpath record` with its
# defaults: host-wide, protocol labels from the first 64 bytes of each message. Prints one line per pass and a
# summary with the median throughput loss and p50/p99 increases; JSON on the last line.
set -euo pipefail
N=${1:-2000}
C=${2:-8}
ROUNDS=${3:-3}
VPATH=${VPATH:-vpath}
URL="http://127.0.0.1:${TC_HTTP_PORT:-8081}/item.jsp?id=7"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# ab's summary: requests per second, then the 50% and 99% response times (ms).
pass() {
  local f=$1
  awk '/^Requests per second/ {rps=$4} /^ *50%/ {p50=$2} /^ *99%/ {p99=$2}
       /^Failed requests/ {failed=$3} END {printf "%s %s %s %s\n", rps, p50, p99, failed}' "$f"
}

ab -l -n "${WARMUP:-5000}" -c "$C" "$URL" >/dev/null 2>&1 # warm the JIT (C2 needs thousands of requests) and the pool
declare -a U T
for r in $(seq 1 "$ROUNDS"); do
  ab -l -n "$N" -c "$C" "$URL" >"$OUT/u$r" 2>&1
  U[r]=$(pass "$OUT/u$r")
  "$VPATH" record -o "$OUT/t$r.vpl" -- ab -l -n "$N" -c "$C" "$URL" >"$OUT/t$r" 2>"$OUT/t$r.err"
  T[r]=$(pass "$OUT/t$r")
  read -r ur u50 u99 _ <<<"${U[r]}"
  read -r tr t50 t99 _ <<<"${T[r]}"
  echo "round $r: untraced $ur req/s p50 $u50 ms p99 $u99 ms | traced $tr req/s p50 $t50 ms p99 $t99 ms | $(tail -1 "$OUT/t$r.err")"
  rm -f "$OUT/t$r.vpl"
done
python3 - "${U[@]}" -- "${T[@]}" <<'PY'
import json, statistics, sys
args = sys.argv[1:]
cut = args.index("--")
def parse(xs):
    return [tuple(float(v) for v in x.split()[:3]) for x in xs]
u, t = parse(args[:cut]), parse(args[cut + 1:])
med = lambda xs, i: statistics.median(x[i] for x in xs)
res = {
    "untraced_rps": med(u, 0), "traced_rps": med(t, 0),
    "throughput_loss_pct": round(100 * (1 - med(t, 0) / med(u, 0)), 2),
    "p50_increase_pct": round(100 * (med(t, 1) / med(u, 1) - 1), 2),
    "p99_increase_pct": round(100 * (med(t, 2) / med(u, 2) - 1), 2),
}
print(f"median: untraced {res['untraced_rps']:.1f} req/s, traced {res['traced_rps']:.1f} req/s: "
      f"throughput {-res['throughput_loss_pct']:+.2f}%, p50 {res['p50_increase_pct']:+.2f}%, p99 {res['p99_increase_pct']:+.2f}%")
print(json.dumps(res))
PY
