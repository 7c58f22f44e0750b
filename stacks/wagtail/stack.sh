#!/usr/bin/env bash
# The Wagtail stack of issue 5: the client, Wagtail (Django) under gunicorn with sync workers, and PostgreSQL 15,
# each tier a host of its own (a network namespace with a veth to a bridge that lives in a namespace of its own,
# like `vpath demo`'s hosts):
#
#   client 10.88.0.2 (ab)  --HTTP-->  web 10.88.0.3:18000 (gunicorn, sync workers)  --pgwire-->  db 10.88.0.4:15432
#
#   stack.sh install          Debian's PostgreSQL 15 if missing, a venv with Wagtail + gunicorn + psycopg, the
#                             database (initdb, own data dir), the site's migrations (idempotent)
#   stack.sh start            the hosts (netns), PostgreSQL and gunicorn (idempotent: what runs is left running)
#   stack.sh pages            create item pages item-1 .. item-100, write their ids, warm every page
#   stack.sh load N C         N GETs of /item-K/ at concurrency C spread over the items (ab -l), summary as JSON
#   stack.sh stop             stop, by pid, what start started, and delete the namespaces
#   stack.sh status           what runs, where, with which pid
#
# Everything (venv, site, data dir, logs, pid files, sockets) lives under $VPATH_wagtail (default
# /tmp/vpath-stacks/wagtail); nothing under /etc is written. PostgreSQL runs from its
# own data dir with log_statement = 'all' and a log_line_prefix carrying the backend pid (%p) and the session id
# (%c), collected into pg/log/postgresql.log. Its unix socket (pg/run) serves the admin commands and the load
# markers, so they are no TCP traffic.
#
# Settings by environment: WT_NS_PREFIX (vpw-: namespaces vpw-br, vpw-client, vpw-web, vpw-db), WT_NET (10.88.0:
# the /24 the hosts live in), WT_HTTP_PORT (18000), WT_DB_PORT (15432), WT_WORKERS (4 gunicorn sync workers),
# WT_CONN_MAX_AGE (0: Django opens a new database connection per request, so one PostgreSQL session per request;
# N > 0 keeps a worker's connection for N seconds), WT_ITEMS (100), WT_LOAD_PER_VISIT (1).
set -euo pipefail

D=${VPATH_wagtail:-/tmp/vpath-stacks/wagtail}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P=${WT_NS_PREFIX:-vpw-}
NET=${WT_NET:-10.88.0}
CLIENT_IP=$NET.2
WEB_IP=$NET.3
DB_IP=$NET.4
HTTP_PORT=${WT_HTTP_PORT:-18000}
DB_PORT=${WT_DB_PORT:-15432}
WORKERS=${WT_WORKERS:-4}
CONN_MAX_AGE=${WT_CONN_MAX_AGE:-0}
ITEMS=${WT_ITEMS:-100}
DB_NAME=wagtail
DB_USER=wagtail
DB_PASS=vpath-wagtail-pass
PGBIN=/usr/lib/postgresql/15/bin
PY=$D/venv/bin/python
PIP_PACKAGES=(wagtail gunicorn 'psycopg[binary]')

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# --- hosts: one network namespace each, veth to a bridge in a namespace of its own ----------------------------

ns_up() { [[ -e /run/netns/$P$1 ]]; }

hosts_up() {
  ns_up br && ns_up client && ns_up web && ns_up db && return 0
  hosts_down
  ip netns add "${P}br"
  ip -n "${P}br" link add br0 type bridge
  ip -n "${P}br" link set br0 up
  ip -n "${P}br" link set lo up
  local i=0 h addr
  for h in client web db; do
    addr=$NET.$((2 + i))
    ip netns add "$P$h"
    ip -n "${P}br" link add "h$i" type veth peer name eth0 netns "$P$h"
    ip -n "${P}br" link set "h$i" master br0 up
    ip -n "$P$h" addr add "$addr/24" dev eth0
    ip -n "$P$h" link set eth0 up
    ip -n "$P$h" link set lo up
    i=$((i + 1))
  done
  log "hosts up: client $CLIENT_IP, web $WEB_IP, db $DB_IP (netns $P{client,web,db}, bridge in ${P}br)"
}

hosts_down() {
  local h
  for h in client web db br; do
    ns_up "$h" && ip netns del "$P$h"
  done
  return 0
}

in_ns() { local h=$1; shift; ip netns exec "$P$h" "$@"; }

# --- processes, by pid file ------------------------------------------------------------------------------------

# The program each pid file must name (lib.sh's pid_of).
expected_program() {
  case $1:$2 in
    postgres:*postgres*) return 0 ;;
    gunicorn:*python*) [[ $3 == *gunicorn* ]] ;;
    *) return 1 ;;
  esac
}

listening() { in_ns "$1" ss -Hltn "src $2:$3" | grep -q .; }

# launch NAME HOST IP PORT CMD...: start CMD in HOST's namespace in its own session, record its pid, wait for it
# to listen. `setsid` and `ip netns exec` both exec, so the recorded pid is CMD's own.
launch() {
  local name=$1 host=$2 ip=$3 port=$4 pid i
  shift 4
  if [[ -n $(pid_of "$name") ]]; then
    log "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  listening "$host" "$ip" "$port" && die "$ip:$port in $P$host is taken by a process this script did not start"
  setsid ip netns exec "$P$host" "$@" >>"$D/log/$name.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$D/run/$name.pid"
  for ((i = 0; i < 600; i++)); do
    listening "$host" "$ip" "$port" && break
    kill -0 "$pid" 2>/dev/null || die "$name exited during start; see $D/log/$name.out"
    sleep 0.1
  done
  listening "$host" "$ip" "$port" || die "$name is not listening on $ip:$port after 60 s; see $D/log"
  log "$name up on $ip:$port in $P$host (pid $pid)"
}

# --- PostgreSQL ------------------------------------------------------------------------------------------------

as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

psql_admin() { as_pg "$PGBIN/psql" -X -q -h "$D/pg/run" -p "$DB_PORT" -U postgres -d "${2:-postgres}" -tA -c "$1"; }

write_pg_conf() {
  mkdir -p "$D/pg/run" "$D/pg/log"
  chown postgres:postgres "$D/pg" "$D/pg/run" "$D/pg/log"
  cat >"$D/pg/data/vpath.conf" <<EOF
# written by stacks/wagtail/stack.sh on every start
listen_addresses = '$DB_IP'
port = $DB_PORT
unix_socket_directories = '$D/pg/run'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
logging_collector = on
log_directory = '$D/pg/log'
log_filename = 'postgresql.log'
log_file_mode = 0644
log_rotation_age = 0
log_rotation_size = 0
log_statement = 'all'
log_line_prefix = '%m [%p] %c %q%u@%d '
log_connections = on
log_disconnections = on
EOF
  grep -q "include 'vpath.conf'" "$D/pg/data/postgresql.conf" || echo "include 'vpath.conf'" >>"$D/pg/data/postgresql.conf"
  cat >"$D/pg/data/pg_hba.conf" <<EOF
# written by stacks/wagtail/stack.sh
local   all   postgres                 peer
local   all   all                      scram-sha-256
host    all   all        $NET.0/24     scram-sha-256
EOF
  chown postgres:postgres "$D/pg/data/vpath.conf" "$D/pg/data/pg_hba.conf"
}

start_postgres() {
  write_pg_conf
  launch postgres db "$DB_IP" "$DB_PORT" setpriv --reuid=postgres --regid=postgres --init-groups -- \
    "$PGBIN/postgres" -D "$D/pg/data"
  local i
  for ((i = 0; i < 100; i++)); do
    psql_admin 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "PostgreSQL does not answer on its unix socket; see $D/pg/log"
}

# --- the site --------------------------------------------------------------------------------------------------

site_env() {
  export DJANGO_SETTINGS_MODULE=wagsite.settings WAGTAIL_DB_HOST=$DB_IP WAGTAIL_DB_PORT=$DB_PORT \
    WAGTAIL_DB_NAME=$DB_NAME WAGTAIL_DB_USER=$DB_USER WAGTAIL_DB_PASS=$DB_PASS WAGTAIL_CONN_MAX_AGE=$CONN_MAX_AGE \
    PYTHONDONTWRITEBYTECODE=1
}

# manage ARGS...: Django's manage.py in the web host (it reaches the database over the hosts' network).
manage() { (site_env && cd "$D/site" && in_ns web "$PY" manage.py "$@"); }

sync_site() {
  mkdir -p "$D/site"
  cp -r "$HERE/site/." "$D/site/"
}

# --- commands ------------------------------------------------------------------------------------------------

cmd_install() {
  local t0 t1 missing=() p policy_written=0
  t0=$(now)
  for p in postgresql-15 postgresql-client-15 python3-venv apache2-utils iproute2 curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_written=1
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/vpath-wt-apt.log 2>&1 ||
      { tail -20 /tmp/vpath-wt-apt.log; ((policy_written)) && rm -f /usr/sbin/policy-rc.d; die "apt-get failed"; }
    ((policy_written)) && rm -f /usr/sbin/policy-rc.d
  fi
  log "packages ready ($(elapsed "$t0") s)"
  mkdir -p "$D"/{run,log,load,pg}
  chmod 755 "$D"
  t1=$(now)
  if [[ ! -x $D/venv/bin/gunicorn ]] || ! "$PY" -c 'import wagtail, psycopg' 2>/dev/null; then
    [[ -x $PY ]] || /usr/bin/python3 -m venv "$D/venv"
    log "pip install ${PIP_PACKAGES[*]} -> $D/venv"
    "$D/venv/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" >"$D/log/pip.log" 2>&1 ||
      { tail -20 "$D/log/pip.log"; die "pip install failed"; }
  fi
  log "venv ready: wagtail $("$PY" -c 'import wagtail; print(wagtail.__version__)'), $("$D/venv/bin/gunicorn" --version 2>&1) ($(elapsed "$t1") s)"
  sync_site
  if [[ ! -s $D/pg/data/PG_VERSION ]]; then
    log "initdb -> $D/pg/data"
    chown postgres:postgres "$D/pg"
    as_pg "$PGBIN/initdb" -D "$D/pg/data" -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=peer >"$D/log/initdb.log" 2>&1 ||
      { tail "$D/log/initdb.log"; die "initdb failed"; }
  fi
  local started_hosts=0 started_db=0
  ns_up db || started_hosts=1
  hosts_up
  [[ -n $(pid_of postgres) ]] || { start_postgres; started_db=1; }
  psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'" | grep -q 1 ||
    psql_admin "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS'"
  psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1 ||
    psql_admin "CREATE DATABASE $DB_NAME OWNER $DB_USER"
  t1=$(now)
  [[ -d $D/site/items/migrations ]] || manage makemigrations items >"$D/log/migrate.log" 2>&1 ||
    { tail -30 "$D/log/migrate.log"; die "makemigrations failed"; }
  manage migrate --noinput >>"$D/log/migrate.log" 2>&1 || { tail -30 "$D/log/migrate.log"; die "migrate failed"; }
  log "Wagtail migrated ($(elapsed "$t1") s; total $(elapsed "$t0") s)"
  ((started_db)) && stop_one postgres
  ((started_hosts)) && hosts_down
  return 0
}

cmd_start() {
  [[ -s $D/pg/data/PG_VERSION && -x $D/venv/bin/gunicorn ]] || die "not installed: run '$0 install' first"
  mkdir -p "$D"/{run,log,load}
  sync_site
  hosts_up
  start_postgres
  site_env
  # --preload: the app is imported once in the master, so a worker's first request does no import work
  launch gunicorn web "$WEB_IP" "$HTTP_PORT" "$D/venv/bin/gunicorn" --chdir "$D/site" --preload \
    --worker-class sync --workers "$WORKERS" --bind "$WEB_IP:$HTTP_PORT" --backlog 256 --timeout 60 \
    --pid "$D/run/gunicorn.internal.pid" --access-logfile "$D/log/access.log" \
    --access-logformat '%(h)s "%(r)s" %(s)s %(B)s %(D)s pid=%(p)s' --error-logfile "$D/log/gunicorn.log" \
    wagsite.wsgi:application
  local code
  code=$(in_ns client curl -s -o /dev/null -w '%{http_code}' "http://$WEB_IP:$HTTP_PORT/")
  [[ $code == 200 ]] || die "/ answered HTTP $code; see $D/log"
  log "stack up: http://$WEB_IP:$HTTP_PORT/ (from netns ${P}client)"
}

cmd_stop() {
  stop_one gunicorn
  stop_one postgres
  hosts_down
}

cmd_status() {
  local n pid where
  for n in gunicorn postgres; do
    pid=$(pid_of "$n")
    [[ $n == gunicorn ]] && where="$WEB_IP:$HTTP_PORT ${P}web" || where="$DB_IP:$DB_PORT ${P}db"
    if [[ -n $pid ]]; then
      printf '%-9s running  pid %-7s %s  processes %s\n' "$n" "$pid" "$where" \
        "$(($(pgrep -c -P "$pid" || true) + 1))"
    else
      printf '%-9s stopped\n' "$n"
    fi
  done
  local h
  for h in client web db; do
    ns_up "$h" && printf 'netns %s up\n' "$P$h" || printf 'netns %s down\n' "$P$h"
  done
  printf 'dir %s\n' "$D"
}

cmd_pages() {
  [[ -n $(pid_of gunicorn) ]] || die "stack not running: '$0 start' first"
  local t0 k code
  t0=$(now)
  sync_site
  manage seed_items --items "$ITEMS" --ids "$D/site/page-ids.tsv" >"$D/log/pages.log" 2>&1 ||
    { tail -30 "$D/log/pages.log"; die "seed_items failed"; }
  log "$(tail -1 "$D/log/pages.log") ($(elapsed "$t0") s)"
  for ((k = 1; k <= ITEMS; k++)); do
    code=$(in_ns client curl -s -o /dev/null -w '%{http_code}' "http://$WEB_IP:$HTTP_PORT/item-$k/")
    [[ $code == 200 ]] || die "GET /item-$k/ answered HTTP $code"
  done
  log "pages ready: $ITEMS items, each viewed once ($(elapsed "$t0") s); ids in $D/site/page-ids.tsv"
}

# load N C: C workers in the client host, each viewing items in its own order (worker w starts at item
# 1 + w*ITEMS/C), so concurrent requests are for different items; each visit is one `ab -l -n R -c 1` on
# /item-K/ (R = WT_LOAD_PER_VISIT). Summary: $D/load/last.json (requests as ab counted them).
cmd_load() {
  local n=${1:-1000} c=${2:-4} r=${WT_LOAD_PER_VISIT:-1}
  [[ -n $(pid_of gunicorn) ]] || die "stack not running: '$0 start' first"
  local run=$D/load/run
  rm -rf "$run" && mkdir -p "$run"
  local w t0 t1
  # markers in PostgreSQL's log (over the unix socket, so they are no TCP traffic): the checker's window
  psql_admin "SELECT 'vpath-load-begin'" >/dev/null
  t0=$(now)
  for ((w = 0; w < c; w++)); do
    (
      quota=$((n / c + (w < n % c ? 1 : 0))) v=0
      while ((quota > 0)); do
        item=$(((w * ITEMS / c + v) % ITEMS + 1))
        count=$((quota < r ? quota : r))
        in_ns client ab -l -n "$count" -c 1 -q "http://$WEB_IP:$HTTP_PORT/item-$item/" >"$run/ab.$w.$v" 2>&1 || true
        echo "$item $count" >>"$run/visits.$w"
        quota=$((quota - count))
        v=$((v + 1))
      done
    ) &
  done
  wait
  t1=$(now)
  psql_admin "SELECT 'vpath-load-end'" >/dev/null
  cat "$run"/ab.* | awk -v n="$n" -v c="$c" -v t0="$t0" -v t1="$t1" '
    /^Complete requests:/ { done += $3 }
    /^Failed requests:/ { failed += $3 }
    /^Non-2xx responses:/ { non2xx += $3 }
    /^Total transferred:/ { bytes += $3 }
    END {
      s = t1 - t0
      printf "{\"requested\":%d,\"concurrency\":%d,\"requests\":%d,\"failed\":%d,\"non_2xx\":%d,\"bytes\":%d,\"seconds\":%.3f,\"rate\":%.2f}\n",
        n, c, done, failed, non2xx, bytes, s, done / s
    }' | tee "$D/load/last.json"
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  pages) cmd_pages ;;
  load) shift; cmd_load "$@" ;;
  *) echo "usage: $0 install|start|pages|load N C|stop|status" >&2; exit 2 ;;
esac
