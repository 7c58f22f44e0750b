#!/usr/bin/env bash
# The probes' in-kernel CPU under a load: BPF run-time statistics
# (kernel.bpf_stats_enabled) sampled with bpftool over 5 s while
# `vpath record` runs for 10 s under `ab -l -c 8`. Prints ns per run and
# % of one core per program, and their total.
#
#   scripts/measure/probe-cpu.sh VPATH_BINARY [extra record args...]
#
# Default URL: the Tomcat stack's item page (stacks/tomcat/stack.sh start;
# URL=... to change).
# Run builds alternately (A B A B) and compare: the machine's load moves
# these numbers by tens of percent.
set -euo pipefail
BIN=${1:?usage: probe-cpu.sh VPATH_BINARY [record args...]}
shift
URL=${URL:-http://127.0.0.1:8081/item.jsp?id=7}
tmp=$(mktemp -d)
trap 'sysctl -qw kernel.bpf_stats_enabled=0; rm -rf "$tmp"' EXIT
sysctl -qw kernel.bpf_stats_enabled=1
ab -l -q -n 1000000 -c 8 -t 12 "$URL" >"$tmp/ab.txt" 2>&1 &
AB=$!
sleep 0.5
"$BIN" record --duration 10 -o "$tmp/run.vpl" "$@" 2>"$tmp/rec.err" &
R=$!
sleep 3
bpftool prog show -j >"$tmp/s1.json"
sleep 5
bpftool prog show -j >"$tmp/s2.json"
wait $R
wait $AB
python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
a = {p['id']: p for p in json.load(open(d + '/s1.json'))}
b = {p['id']: p for p in json.load(open(d + '/s2.json'))}
tot = 0
for i, p in b.items():
    n = p.get('name', '')
    if not n.startswith('vp_') or i not in a:
        continue
    dc = p.get('run_cnt', 0) - a[i].get('run_cnt', 0)
    dt = p.get('run_time_ns', 0) - a[i].get('run_time_ns', 0)
    tot += dt
    if dc:
        print("%-16s runs/s %8.0f  ns/run %6.0f  cpu %.2f%%" % (n, dc / 5, dt / dc, dt / 5e9 * 100))
print("total probe cpu %.2f%% of one core" % (tot / 5e9 * 100))
PY
grep -o "recorded.*" "$tmp/rec.err" || true
grep "Requests per" "$tmp/ab.txt" || true
