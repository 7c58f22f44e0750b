#!/usr/bin/env bash
# Capture overhead on the MediaWiki stack at saturation (the measurement: stacks/overhead-lib.sh).
#
#   overhead.sh [N] [C] [ROUNDS]     N page views per pass (default 1000) at concurrency C (8), ROUNDS pairs (3)
#
# Load: `ab -l -n N -c C` on one page view URL (after a warm-up, MediaWiki serves it from its parser cache in
# memcached, so each view still runs Apache -> php-fpm -> MariaDB + memcached).
set -euo pipefail
N=${1:-1000}
C=${2:-8}
ROUNDS=${3:-3}
VPATH=${VPATH:-vpath}
URL="http://127.0.0.1:${MW_HTTP_PORT:-8080}/index.php?title=Page_7"
AB=(ab -l)
WARMUP=${WARMUP:-200} # warm the caches

# shellcheck source=../overhead-lib.sh
. "$(dirname "$0")/../overhead-lib.sh"
overhead_run
