#!/usr/bin/env bash
# Capture overhead on the Wagtail stack at saturation (the measurement: stacks/overhead-lib.sh).
#
#   overhead.sh [N] [C] [ROUNDS]     N views per pass (default 1000) at concurrency C (8), ROUNDS pairs (3)
#
# Load: `ab -l -n N -c C` in the client host (netns) on one item URL, http://10.88.0.3:18000/item-7/; every view
# still runs gunicorn (a sync worker) -> a new PostgreSQL connection and session (SCRAM auth, 6 statements,
# Terminate). The machine is shared: compare rounds, not single passes.
set -euo pipefail
N=${1:-1000}
C=${2:-8}
ROUNDS=${3:-3}
VPATH=${VPATH:-vpath}
P=${WT_NS_PREFIX:-vpw-}
URL="http://${WT_NET:-10.88.0}.3:${WT_HTTP_PORT:-18000}/item-7/"
AB=(ip netns exec "${P}client" ab -l)
WARMUP=${WARMUP:-200}

# shellcheck source=../overhead-lib.sh
. "$(dirname "$0")/../overhead-lib.sh"
overhead_run
