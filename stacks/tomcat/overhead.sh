#!/usr/bin/env bash
# Capture overhead on the Tomcat stack at saturation (the measurement: stacks/overhead-lib.sh).
#
#   overhead.sh [N] [C] [ROUNDS]     N item views per pass (default 2000) at concurrency C (8), ROUNDS pairs (3)
#
# Load: `ab -l -n N -c C` on one item URL (each view runs Tomcat -> MariaDB over JDBC: with TC_JDBC=direct a new
# connection and 5 statements, with pool a ping and 3 statements).
set -euo pipefail
N=${1:-2000}
C=${2:-8}
ROUNDS=${3:-3}
VPATH=${VPATH:-vpath}
URL="http://127.0.0.1:${TC_HTTP_PORT:-8081}/item.jsp?id=7"
AB=(ab -l)
WARMUP=${WARMUP:-5000} # warm the JIT (C2 needs thousands of requests) and the pool

# shellcheck source=../overhead-lib.sh
. "$(dirname "$0")/../overhead-lib.sh"
overhead_run
