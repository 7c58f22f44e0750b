#!/usr/bin/env bash
# The tracer's share of the machine's CPU under a load, start-up excluded:
# the probes' run time (kernel.bpf_stats_enabled) plus `vpath record`'s own
# CPU (every thread's schedstat, in ns), over a window that opens once the
# recorder has loaded its programs, against the machine's busy CPU time
# (/proc/stat) in the same window. At saturation, the tracer's share of the
# busy time is what it takes from the application's throughput; unlike a
# throughput comparison it does not move with the machine's drift between
# passes. A lower bound: tracepoint dispatch (~20-30 ns per call, outside the
# programs) is not in the run-time statistics.
#
#   URL=... scripts/measure/tracer-share.sh VPATH_BINARY [record args...]
#
# Load: `ab -l -c C` (C=8) on URL (default: the Tomcat stack's item page);
# AB names another ab command, e.g. AB="ip netns exec vpw-client ab" for
# the Wagtail stack. SECS (10): the window. ROUNDS (1): repeat.
set -euo pipefail
BIN=${1:?usage: tracer-share.sh VPATH_BINARY [record args...]}
shift
URL=${URL:-http://127.0.0.1:8081/item.jsp?id=7}
read -r -a AB <<<"${AB:-ab}"
C=${C:-8}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-1}
for tool in bpftool python3 "${AB[-1]}"; do
  command -v "$tool" >/dev/null || { echo "tracer-share: $tool not found" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'sysctl -qw kernel.bpf_stats_enabled=0; rm -rf "$tmp"' EXIT
sysctl -qw kernel.bpf_stats_enabled=1

snapshot() { # $1: name, $2: recorder pid
  bpftool prog show -j >"$tmp/$1.progs"
  cat /proc/"$2"/task/*/schedstat | awk '{s += $1} END {print s}' >"$tmp/$1.rec"
  head -1 /proc/stat >"$tmp/$1.cpu"
  date +%s%N >"$tmp/$1.t"
}

for r in $(seq 1 "$ROUNDS"); do
  "${AB[@]}" -l -q -n 100000000 -c "$C" -t $((SECS + 9)) "$URL" >"$tmp/ab.txt" 2>&1 &
  ab_pid=$!
  sleep 1
  "$BIN" record --duration $((SECS + 6)) -o "$tmp/run.vpl" "$@" 2>"$tmp/rec.err" &
  rec=$!
  sleep 4 # loading, verifying and attaching the programs: not in the window
  snapshot s1 "$rec"
  sleep "$SECS"
  snapshot s2 "$rec"
  wait "$rec" || { echo "tracer-share: vpath record failed:" >&2; cat "$tmp/rec.err" >&2; exit 1; }
  wait "$ab_pid" || true
  python3 - "$tmp" "$r" "$(getconf CLK_TCK)" "$(nproc)" <<'PY'
import json, sys
d, rnd, hz, ncpu = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def progs(n):
    return {p["id"]: p for p in json.load(open(f"{d}/{n}.progs")) if p.get("name", "").startswith("vp_")}
a, b = progs("s1"), progs("s2")
probes = sum(p.get("run_time_ns", 0) - a[i].get("run_time_ns", 0) for i, p in b.items() if i in a)
runs = sum(p.get("run_cnt", 0) - a[i].get("run_cnt", 0) for i, p in b.items() if i in a)
reader = int(open(f"{d}/s2.rec").read()) - int(open(f"{d}/s1.rec").read())
def cpu(n):
    v = [int(x) for x in open(f"{d}/{n}.cpu").read().split()[1:]]
    idle = v[3] + v[4]  # idle, iowait
    return sum(v[:8]) - idle
busy = (cpu("s2") - cpu("s1")) * 1e9 / hz
wall = int(open(f"{d}/s2.t").read()) - int(open(f"{d}/s1.t").read())
rps = next((l.split()[3] for l in open(f"{d}/ab.txt") if l.startswith("Requests per second")), "?")
tracer = probes + reader
print(f"round {rnd}: probes {100 * probes / wall:.2f}% of one core ({probes / max(runs, 1):.0f} ns per run), "
      f"reader {100 * reader / wall:.2f}% of one core; machine busy {100 * busy / (wall * ncpu):.1f}% of {ncpu} CPUs; "
      f"tracer {100 * tracer / busy:.2f}% of the busy CPU time ({rps} req/s over the whole load)")
PY
done
