#!/usr/bin/env bash
# The MediaWiki stack of issue 5: Debian's MediaWiki 1.39 on Apache httpd (mpm_event) -> PHP-FPM over TCP
# (mod_proxy_fcgi) -> MariaDB over TCP + memcached over TCP, every tier on 127.0.0.1.
#
#   stack.sh install          apt packages if missing, MariaDB data dir, MediaWiki's install.php (idempotent)
#   stack.sh start            start the four tiers (idempotent: what runs is left running)
#   stack.sh pages            create Page_1 .. Page_100 (+ Template:Box), run the jobs, warm the parser cache
#   stack.sh load N C         N page views at concurrency C spread over the 100 pages (ab -l), summary as JSON
#   stack.sh stop             stop, by pid, what start started
#   stack.sh status           what runs, on which port, with which pid
#
# Everything (configs, data, logs, pid files, sockets) lives under $VPATH_STACK_DIR
# (default /tmp/vpath-stacks/mediawiki); nothing under /etc is written. MediaWiki finds its LocalSettings.php
# through the MW_CONFIG_FILE environment variable (php-fpm pool env, and the maintenance scripts' environment), so
# Debian's /etc/mediawiki stays empty. `install` relies on /usr/sbin/policy-rc.d to keep apt from starting the
# distribution's own services; if that file is absent, it writes one for the duration of the apt run and removes it.
#
# Ports (all on 127.0.0.1) can be moved with MW_HTTP_PORT (8080), MW_FPM_PORT (9000), MW_DB_PORT (3306),
# MW_MC_PORT (11211); MW_FPM_CHILDREN (4) sets the php-fpm pool size (pm = static), MW_FPM_MAX_REQUESTS (0) its
# pm.max_requests (1 = a new child process per request). `start` rewrites the configs from these each time.
set -euo pipefail

D=${VPATH_STACK_DIR:-/tmp/vpath-stacks/mediawiki}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IP=127.0.0.1
HTTP_PORT=${MW_HTTP_PORT:-8080}
FPM_PORT=${MW_FPM_PORT:-9000}
DB_PORT=${MW_DB_PORT:-3306}
MC_PORT=${MW_MC_PORT:-11211}
FPM_CHILDREN=${MW_FPM_CHILDREN:-4}
FPM_MAX_REQUESTS=${MW_FPM_MAX_REQUESTS:-0}
PAGES=${MW_PAGES:-100}
DB_NAME=wikidb
DB_USER=wikiuser
DB_PASS=vpath-wiki-pass
ADMIN_PASS=vpath-admin-pass-1
MW=/usr/share/mediawiki
PHP_FPM=$(command -v php-fpm8.2 || echo /usr/sbin/php-fpm8.2)
SETTINGS=$D/mw/LocalSettings.php
export MW_CONFIG_FILE=$SETTINGS

PACKAGES=(apache2 apache2-utils php8.2-fpm php-fpm php-mysql php-intl php-mbstring php-xml php-cli php-apcu
  mariadb-server mariadb-client memcached mediawiki curl)

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"

# The program each pid file must name (lib.sh's pid_of).
expected_program() {
  case $1:$2 in
    mariadb:*mariadbd* | memcached:*memcached* | php-fpm:*php-fpm* | apache:*apache2*) return 0 ;;
  esac
  return 1
}

# --- configuration -------------------------------------------------------------------------------------------

write_configs() {
  mkdir -p "$D"/{run,log,mysql,php,apache,mw/cache,mw/images,load}
  chmod 755 "$D" "$D"/{run,log,mysql,php,apache,mw,load}
  [[ $(dirname "$D") == / ]] || chmod a+x "$(dirname "$D")"
  chown www-data:www-data "$D/mw/cache" "$D/mw/images"
  chown mysql:mysql "$D/mysql"
  touch "$D/log/php-fpm.log" "$D/log/php-errors.log" && chown www-data "$D/log/php-errors.log"

  cat >"$D/php/php-fpm.conf" <<EOF
[global]
pid = $D/run/php-fpm.internal.pid
error_log = $D/log/php-fpm.log
daemonize = no

[mediawiki]
user = www-data
group = www-data
listen = $IP:$FPM_PORT
listen.allowed_clients = $IP
pm = static
pm.max_children = $FPM_CHILDREN
; 0: a child serves requests one at a time for ever; 1: a fresh child process for every request
pm.max_requests = $FPM_MAX_REQUESTS
catch_workers_output = yes
clear_env = yes
env[MW_CONFIG_FILE] = $SETTINGS
php_admin_value[error_log] = $D/log/php-errors.log
php_admin_flag[log_errors] = on
php_admin_value[memory_limit] = 256M
EOF

  cat >"$D/apache/apache2.conf" <<EOF
ServerRoot "/etc/apache2"
ServerName $IP
PidFile $D/run/apache.internal.pid
Mutex file:$D/run default
DefaultRuntimeDir $D/run
User www-data
Group www-data
Listen $IP:$HTTP_PORT
ErrorLog $D/log/apache-error.log
LogLevel warn

LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_fcgi_module /usr/lib/apache2/modules/mod_proxy_fcgi.so

StartServers 2
ServerLimit 4
ThreadsPerChild 25
MaxRequestWorkers 100
MinSpareThreads 25
MaxSpareThreads 75
MaxConnectionsPerChild 0
KeepAlive On
Timeout 60

TypesConfig /etc/mime.types
LogFormat "%h \"%r\" %>s %B %D pid=%P tid=%{tid}P conn=%{c}a:%{remote}p" vpath
CustomLog $D/log/apache-access.log vpath

DocumentRoot /var/lib/mediawiki
DirectoryIndex index.php
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
<Directory /var/lib/mediawiki>
    Options FollowSymLinks
    Require all granted
</Directory>
<Directory /usr/share/mediawiki>
    Options FollowSymLinks
    Require all granted
</Directory>
<FilesMatch "\.php$">
    SetHandler "proxy:fcgi://$IP:$FPM_PORT"
</FilesMatch>
EOF
}

write_settings_tail() {
  # Appended once to the LocalSettings.php that install.php wrote.
  grep -q 'vpath-stack settings' "$SETTINGS" && return 0
  cat >>"$SETTINGS" <<EOF

# --- vpath-stack settings (stacks/mediawiki/stack.sh) ---
\$wgServer = "http://$IP:$HTTP_PORT";
\$wgScriptPath = "";
\$wgArticlePath = "/index.php?title=\$1";
\$wgDBserver = "$IP:$DB_PORT";   # TCP, never the unix socket
\$wgMainCacheType = CACHE_MEMCACHED;
\$wgParserCacheType = CACHE_MEMCACHED;
\$wgSessionCacheType = CACHE_MEMCACHED;
\$wgMessageCacheType = CACHE_MEMCACHED;
\$wgMemCachedServers = [ "$IP:$MC_PORT" ];
\$wgMemCachedPersistent = false;
\$wgObjectCaches[CACHE_MEMCACHED] = [ 'class' => MemcachedPhpBagOStuff::class, 'loggroup' => 'memcached' ];
\$wgUploadDirectory = "$D/mw/images";
\$wgCacheDirectory = "$D/mw/cache";
\$wgEnableUploads = false;
\$wgJobRunRate = 0;              # jobs run by 'pages', not by page views (no async loopback job requests)
\$wgUseFileCache = false;
\$wgShowExceptionDetails = true;
\$wgDebugLogFile = "";
EOF
}

# --- commands ------------------------------------------------------------------------------------------------

cmd_install() {
  local t0 t1 missing=() p policy_written=0
  t0=$(now)
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_written=1
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"/tmp/vpath-mw-apt.log" 2>&1 ||
      { tail -20 /tmp/vpath-mw-apt.log; ((policy_written)) && rm -f /usr/sbin/policy-rc.d; die "apt-get failed"; }
    ((policy_written)) && rm -f /usr/sbin/policy-rc.d
    dpkg-query -W -f='${Status}' libapache2-mod-php8.2 2>/dev/null | grep -q 'install ok' &&
      log "note: libapache2-mod-php8.2 is installed; this stack does not load it (own apache2.conf)"
  fi
  log "packages ready ($(elapsed "$t0") s)"
  write_configs

  t1=$(now)
  if [[ ! -d $D/mysql/data/mysql ]]; then
    log "mariadb-install-db -> $D/mysql/data"
    mariadb-install-db --no-defaults --datadir="$D/mysql/data" --user=mysql --skip-test-db \
      --auth-root-authentication-method=socket >"$D/log/mariadb-install-db.log" 2>&1 ||
      { tail "$D/log/mariadb-install-db.log"; die "mariadb-install-db failed"; }
  fi
  local started_db=0 started_mc=0
  [[ -n $(pid_of mariadb) ]] || { start_mariadb; started_db=1; }
  [[ -n $(pid_of memcached) ]] || { start_memcached; started_mc=1; }
  sql_root "CREATE DATABASE IF NOT EXISTS $DB_NAME;
    CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';"
  if [[ ! -s $SETTINGS ]]; then
    log "MediaWiki install.php -> $SETTINGS"
    (cd "$MW" && php maintenance/install.php --quiet \
      --dbtype mysql --dbserver "$IP:$DB_PORT" --dbname "$DB_NAME" --dbuser "$DB_USER" --dbpass "$DB_PASS" \
      --installdbuser "$DB_USER" --installdbpass "$DB_PASS" --server "http://$IP:$HTTP_PORT" --scriptpath "" \
      --confpath "$D/mw" --lang en --pass "$ADMIN_PASS" --skins Vector "vpath wiki" Admin) \
      >"$D/log/mw-install.log" 2>&1 || { tail -30 "$D/log/mw-install.log"; die "install.php failed"; }
    chmod 644 "$SETTINGS"
    write_settings_tail
  fi
  log "MediaWiki installed ($(elapsed "$t1") s for the database and install.php; total $(elapsed "$t0") s)"
  ((started_mc)) && stop_one memcached
  ((started_db)) && stop_one mariadb
  return 0
}

sql_root() { mariadb --no-defaults --socket="$D/mysql/mysqld.sock" -uroot -N -B -e "$1"; }

start_mariadb() {
  launch_local mariadb "$DB_PORT" /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$D/mysql/data" \
    --bind-address=$IP --port="$DB_PORT" --socket="$D/mysql/mysqld.sock" --pid-file="$D/mysql/mariadb.internal.pid" \
    --log-error="$D/mysql/error.log" --general-log=1 --general-log-file="$D/mysql/general.log" \
    --log-output=FILE --skip-name-resolve --innodb-buffer-pool-size=256M --max-connections=200 \
    --thread-handling=one-thread-per-connection
}

start_memcached() {
  launch_local memcached "$MC_PORT" /usr/bin/memcached -u memcache -l $IP -p "$MC_PORT" -U 0 -m 128 -t 4 -c 1024
}

cmd_start() {
  [[ -s $SETTINGS && -d $D/mysql/data/mysql ]] || die "not installed: run '$0 install' first"
  write_configs
  start_mariadb
  start_memcached
  launch_local php-fpm "$FPM_PORT" "$PHP_FPM" --nodaemonize -y "$D/php/php-fpm.conf" -c /etc/php/8.2/fpm/php.ini
  launch_local apache "$HTTP_PORT" /usr/sbin/apache2 -f "$D/apache/apache2.conf" -DFOREGROUND
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$IP:$HTTP_PORT/index.php?title=Main_Page")
  [[ $code == 200 ]] || die "Main_Page answered HTTP $code; see $D/log"
  log "stack up: http://$IP:$HTTP_PORT/index.php?title=Main_Page"
}

cmd_stop() {
  stop_one apache
  stop_one php-fpm
  stop_one memcached
  stop_one mariadb
}

cmd_status() {
  local n pid port
  for n in apache:$HTTP_PORT php-fpm:$FPM_PORT mariadb:$DB_PORT memcached:$MC_PORT; do
    port=${n#*:}
    n=${n%%:*}
    pid=$(pid_of "$n")
    if [[ -n $pid ]]; then
      printf '%-10s running  pid %-7s %s:%s  threads %s\n' "$n" "$pid" $IP "$port" \
        "$(ps -o nlwp= -p "$pid" | tr -d ' ')"
    else
      printf '%-10s stopped\n' "$n"
    fi
  done
  printf 'dir %s\n' "$D"
}

mw_php() { (cd "$MW" && runuser -u www-data -- env MW_CONFIG_FILE="$SETTINGS" php "$@"); }

cmd_pages() {
  [[ -n $(pid_of apache) ]] || die "stack not running: '$0 start' first"
  local t0
  t0=$(now)
  cp "$HERE/make-pages.php" "$D/mw/make-pages.php"
  mw_php "$D/mw/make-pages.php" --pages "$PAGES" >"$D/log/pages.log" 2>&1 || { tail "$D/log/pages.log"; die "make-pages failed"; }
  log "$(tail -1 "$D/log/pages.log") ($(elapsed "$t0") s)"
  mw_php maintenance/runJobs.php --quiet >>"$D/log/pages.log" 2>&1 || die "runJobs failed"
  # page id -> title, for the checker (cache keys name pages by id)
  sql_root "SELECT page_id, page_title FROM $DB_NAME.page WHERE page_namespace = 0 AND page_title LIKE 'Page\\_%'" \
    >"$D/mw/page-ids.tsv"
  local k
  for ((k = 1; k <= PAGES; k++)); do
    curl -s -o /dev/null "http://$IP:$HTTP_PORT/index.php?title=Page_$k" || die "view of Page_$k failed"
  done
  log "pages ready: $PAGES pages, jobs run, parser cache warmed ($(elapsed "$t0") s); ids in $D/mw/page-ids.tsv"
}

# load N C: C workers, each viewing pages in its own order (worker w starts at page 1 + w*PAGES/C), so concurrent
# requests are for different pages; each visit is one `ab -l -n R -c 1` (R = MW_LOAD_PER_VISIT, default 1) on
# /index.php?title=Page_K. Summary: $D/load/last.json (requests as ab counted them).
cmd_load() {
  local n=${1:-1000} c=${2:-4} r=${MW_LOAD_PER_VISIT:-1}
  [[ -n $(pid_of apache) ]] || die "stack not running: '$0 start' first"
  local run=$D/load/run
  rm -rf "$run" && mkdir -p "$run"
  local w t0 t1
  # markers in the general log (over the unix socket, so they are not TCP traffic): the checker's window
  sql_root "SELECT 'vpath-load-begin'" >/dev/null
  t0=$(now)
  for ((w = 0; w < c; w++)); do
    (
      local quota=$((n / c + (w < n % c ? 1 : 0))) v=0 page count
      while ((quota > 0)); do
        page=$(((w * PAGES / c + v) % PAGES + 1))
        count=$((quota < r ? quota : r))
        ab -l -n "$count" -c 1 -q "http://$IP:$HTTP_PORT/index.php?title=Page_$page" >"$run/ab.$w.$v" 2>&1 || true
        echo "$page $count" >>"$run/visits.$w"
        quota=$((quota - count))
        v=$((v + 1))
      done
    ) &
  done
  wait
  t1=$(now)
  sql_root "SELECT 'vpath-load-end'" >/dev/null
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
