# Shared by the stacks' overhead.sh scripts (source it; not a command).
#
# Capture overhead at saturation, measured as the paper did: the same `ab` load, untraced and traced passes
# alternating in one run. Pairs alternate their order (untraced first in odd rounds, traced first in even ones), so
# a drift of the machine or of a warming JIT does not favour one side. Traced passes run under `vpath record` with
# its defaults: host-wide, protocol labels from the first 64 bytes of each message.
#
# The caller sets AB (an array: the ab command, e.g. `ab -l`, maybe behind `ip netns exec`), N (requests per pass),
# C (concurrency), URL, ROUNDS, WARMUP (requests before the first pass), VPATH, and calls overhead_run. Prints one line per round and a summary: the loss computed
# from the medians of each side, and the median (with the range) of the per-round paired ratios, which drift does
# not bias; JSON on the last line.

# ab's summary: requests per second, then the 50% and 99% response times (ms), then failed requests.
overhead_pass() {
  awk '/^Requests per second/ {rps=$4} /^ *50%/ {p50=$2} /^ *99%/ {p99=$2}
       /^Failed requests/ {failed=$3} END {printf "%s %s %s %s\n", rps, p50, p99, failed}' "$1"
}

overhead_run() {
  local out r side order
  out=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$out'" EXIT
  if [ "${WARMUP:-0}" -gt 0 ]; then
    "${AB[@]}" -n "$WARMUP" -c "$C" "$URL" >/dev/null 2>&1
  fi
  declare -a U T
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="u t"; else order="t u"; fi
    for side in $order; do
      if [ "$side" = u ]; then
        "${AB[@]}" -n "$N" -c "$C" "$URL" >"$out/u$r" 2>&1
        U[r]=$(overhead_pass "$out/u$r")
      else
        "$VPATH" record -o "$out/t$r.vpl" -- "${AB[@]}" -n "$N" -c "$C" "$URL" >"$out/t$r" 2>"$out/t$r.err"
        T[r]=$(overhead_pass "$out/t$r")
        rm -f "$out/t$r.vpl"
      fi
    done
    read -r ur u50 u99 uf <<<"${U[r]}"
    read -r tr t50 t99 tf <<<"${T[r]}"
    echo "round $r (${order/ /, then }): untraced $ur req/s p50 $u50 ms p99 $u99 ms | traced $tr req/s p50 $t50 ms p99 $t99 ms | failed $uf/$tf | $(tail -1 "$out/t$r.err")"
  done
  python3 - "${U[@]}" -- "${T[@]}" <<'PY'
import json, statistics, sys
args = sys.argv[1:]
cut = args.index("--")
def parse(xs):
    return [tuple(float(v) for v in x.split()[:3]) for x in xs]
u, t = parse(args[:cut]), parse(args[cut + 1:])
med = lambda xs, i: statistics.median(x[i] for x in xs)
paired = lambda i, f: sorted(f(tt[i], uu[i]) for uu, tt in zip(u, t))
loss = paired(0, lambda a, b: 100 * (1 - a / b))
p50 = paired(1, lambda a, b: 100 * (a / b - 1))
p99 = paired(2, lambda a, b: 100 * (a / b - 1))
res = {
    "rounds": len(u),
    "untraced_rps": med(u, 0), "traced_rps": med(t, 0),
    "throughput_loss_pct": round(100 * (1 - med(t, 0) / med(u, 0)), 2),
    "p50_increase_pct": round(100 * (med(t, 1) / med(u, 1) - 1), 2),
    "p99_increase_pct": round(100 * (med(t, 2) / med(u, 2) - 1), 2),
    "paired_throughput_loss_pct": round(statistics.median(loss), 2),
    "paired_throughput_loss_range": [round(loss[0], 2), round(loss[-1], 2)],
    "paired_p50_increase_pct": round(statistics.median(p50), 2),
    "paired_p99_increase_pct": round(statistics.median(p99), 2),
}
print(f"median: untraced {res['untraced_rps']:.1f} req/s, traced {res['traced_rps']:.1f} req/s: "
      f"throughput {-res['throughput_loss_pct']:+.2f}%, p50 {res['p50_increase_pct']:+.2f}%, p99 {res['p99_increase_pct']:+.2f}%")
print(f"paired (median of {len(u)} rounds): throughput {-res['paired_throughput_loss_pct']:+.2f}% "
      f"(rounds {-loss[-1]:+.2f}% .. {-loss[0]:+.2f}%), p50 {res['paired_p50_increase_pct']:+.2f}%, "
      f"p99 {res['paired_p99_increase_pct']:+.2f}%")
print(json.dumps(res))
PY
}
