#!/usr/bin/env bash
# The Java stack of issue 5: Debian's Tomcat 10 (NIO connector: a poller thread hands each connection to an
# exec-pool thread) serving one JSP page, item.jsp?id=N, that runs three statements naming Item_N on MariaDB
# over JDBC (MariaDB Connector/J 2.7, Debian's libmariadb-java), both on 127.0.0.1.
#
#   stack.sh install          apt packages if missing, MariaDB data dir, database and user (idempotent)
#   stack.sh start            start MariaDB and Tomcat (idempotent: what runs is left running)
#   stack.sh pages            seed Item_1 .. Item_100 (rows and reviews), compile and warm item.jsp
#   stack.sh load N C         N item views at concurrency C spread over the items (ab -l), summary as JSON
#   stack.sh stop             stop, by pid, what start started
#   stack.sh status           what runs, on which port, with which pid
#
# Everything (CATALINA_BASE with its own server.xml, MariaDB's data dir, logs, pid files) lives under
# $VPATH_TOMCAT_DIR (default /tmp/vpath-stacks/tomcat); nothing under /etc is written, and the distribution's
# tomcat10 service is never started (`install` keeps apt from starting services through /usr/sbin/policy-rc.d).
#
# Ports (127.0.0.1): TC_HTTP_PORT (8081), TC_DB_PORT (3307; the MediaWiki stack has 3306). TC_THREADS (25) is
# the connector's exec pool size. TC_JDBC picks how item.jsp gets its database connection:
#   direct (default)  DriverManager.getConnection per request: a new TCP connection, closed after the response
#   pool              the container's DataSource (tomcat-dbcp, up to TC_POOL_SIZE (8) connections): a connection
#                     serves many requests, on whichever exec thread borrows it
# TC_JDBC_OPTS adds Connector/J URL options (e.g. usePipelineAuth=false).
# `start` rewrites the configs from these each time (stop, then start, to switch).
set -euo pipefail

D=${VPATH_TOMCAT_DIR:-/tmp/vpath-stacks/tomcat}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IP=127.0.0.1
HTTP_PORT=${TC_HTTP_PORT:-8081}
DB_PORT=${TC_DB_PORT:-3307}
THREADS=${TC_THREADS:-25}
JDBC=${TC_JDBC:-direct}
POOL_SIZE=${TC_POOL_SIZE:-8}
URL_OPTS=${TC_JDBC_OPTS:-}
ITEMS=${TC_ITEMS:-100}
DB_NAME=shop
DB_USER=shop
DB_PASS=vpath-shop-pass
CATALINA_HOME=/usr/share/tomcat10
CB=$D/tomcat
JAVA=${JAVA:-$(readlink -f "$(command -v java || echo /usr/bin/java)")}

PACKAGES=(tomcat10 libmariadb-java default-jre-headless mariadb-server mariadb-client apache2-utils curl)

# shellcheck source=../lib.sh
. "$HERE/../lib.sh"
LAUNCH_WAIT=120

# The program each pid file must name (lib.sh's pid_of).
expected_program() {
  case $1:$2 in
    mariadb:*mariadbd* | tomcat:*java*) return 0 ;;
  esac
  return 1
}

# --- configuration -------------------------------------------------------------------------------------------

write_configs() {
  mkdir -p "$D"/{run,log,mysql,load} "$CB"/{conf,lib,logs,temp,work,webapps/ROOT}
  chmod 755 "$D" "$D"/{run,log,mysql,load}
  [[ $(dirname "$D") == / ]] || chmod a+x "$(dirname "$D")"
  chown mysql:mysql "$D/mysql"
  case $JDBC in direct | pool) ;; *) die "TC_JDBC must be direct or pool, not '$JDBC'" ;; esac

  cp /etc/tomcat10/web.xml /etc/tomcat10/catalina.properties "$CB/conf/"
  mkdir -p "$CB/conf/Catalina/localhost"
  cat >"$CB/conf/logging.properties" <<EOF2
handlers = 1catalina.org.apache.juli.AsyncFileHandler, java.util.logging.ConsoleHandler
.handlers = 1catalina.org.apache.juli.AsyncFileHandler, java.util.logging.ConsoleHandler
1catalina.org.apache.juli.AsyncFileHandler.level = INFO
1catalina.org.apache.juli.AsyncFileHandler.directory = \${catalina.base}/logs
1catalina.org.apache.juli.AsyncFileHandler.prefix = catalina.
java.util.logging.ConsoleHandler.level = INFO
java.util.logging.ConsoleHandler.formatter = java.util.logging.SimpleFormatter
EOF2
  # shutdown port -1: no listener; stop is SIGTERM to the JVM (its shutdown hook stops Catalina)
  cat >"$CB/conf/server.xml" <<EOF2
<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="org.apache.coyote.http11.Http11NioProtocol" address="$IP" port="$HTTP_PORT"
               maxThreads="$THREADS" minSpareThreads="4" connectionTimeout="20000" maxKeepAliveRequests="100" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs" prefix="access" suffix=".log"
               pattern="%h &quot;%r&quot; %s %b %D thread=%I" />
      </Host>
    </Engine>
  </Service>
</Server>
EOF2
  cat >"$CB/conf/context.xml" <<EOF2
<?xml version="1.0" encoding="UTF-8"?>
<Context>
  <WatchedResource>WEB-INF/web.xml</WatchedResource>
  <Parameter name="vpath.jdbc" value="$JDBC" override="false" />
  <Parameter name="vpath.jdbc.url" value="jdbc:mariadb://$IP:$DB_PORT/$DB_NAME${URL_OPTS:+?$URL_OPTS}" override="false" />
  <Parameter name="vpath.jdbc.user" value="$DB_USER" override="false" />
  <Parameter name="vpath.jdbc.password" value="$DB_PASS" override="false" />
  <Resource name="jdbc/items" auth="Container" type="javax.sql.DataSource"
            driverClassName="org.mariadb.jdbc.Driver" url="jdbc:mariadb://$IP:$DB_PORT/$DB_NAME${URL_OPTS:+?$URL_OPTS}"
            username="$DB_USER" password="$DB_PASS" maxTotal="$POOL_SIZE" maxIdle="$POOL_SIZE" minIdle="0"
            initialSize="0" maxWaitMillis="10000" />
</Context>
EOF2
  ln -sf /usr/share/java/mariadb-java-client.jar "$CB/lib/mariadb-java-client.jar"
  cp "$HERE/item.jsp" "$CB/webapps/ROOT/item.jsp"
  chmod -R a+rX "$CB/conf" "$CB/lib" "$CB/webapps"
  chown -R tomcat:tomcat "$CB"/{logs,temp,work,conf/Catalina}
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
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"/tmp/vpath-tomcat-apt.log" 2>&1 ||
      { tail -20 /tmp/vpath-tomcat-apt.log; ((policy_written)) && rm -f /usr/sbin/policy-rc.d; die "apt-get failed"; }
    ((policy_written)) && rm -f /usr/sbin/policy-rc.d
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
  local started_db=0
  [[ -n $(pid_of mariadb) ]] || { start_mariadb; started_db=1; }
  sql_root "CREATE DATABASE IF NOT EXISTS $DB_NAME;
    CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
    CREATE TABLE IF NOT EXISTS $DB_NAME.item (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE,
      price DECIMAL(10,2) NOT NULL, views BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB;
    CREATE TABLE IF NOT EXISTS $DB_NAME.review (id INT AUTO_INCREMENT PRIMARY KEY, item_name VARCHAR(64) NOT NULL,
      stars INT NOT NULL, body VARCHAR(255) NOT NULL, KEY (item_name)) ENGINE=InnoDB;"
  log "database ready ($(elapsed "$t1") s; total $(elapsed "$t0") s)"
  ((started_db)) && stop_one mariadb
  return 0
}

sql_root() { mariadb --no-defaults --socket="$D/mysql/mysqld.sock" -uroot -N -B -e "$1"; }

start_mariadb() {
  launch_local mariadb "$DB_PORT" /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$D/mysql/data" \
    --bind-address=$IP --port="$DB_PORT" --socket="$D/mysql/mysqld.sock" --pid-file="$D/mysql/mariadb.internal.pid" \
    --log-error="$D/mysql/error.log" --general-log=1 --general-log-file="$D/mysql/general.log" \
    --log-output=FILE --skip-name-resolve --innodb-buffer-pool-size=128M --max-connections=300 \
    --thread-handling=one-thread-per-connection
}

start_tomcat() {
  launch_local tomcat "$HTTP_PORT" setpriv --reuid=tomcat --regid=tomcat --init-groups \
    "$JAVA" -Xms128m -Xmx512m -Djava.awt.headless=true \
    -Djava.util.logging.config.file="$CB/conf/logging.properties" \
    -Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager \
    -Dcatalina.home=$CATALINA_HOME -Dcatalina.base="$CB" -Djava.io.tmpdir="$CB/temp" \
    -cp "$CATALINA_HOME/bin/bootstrap.jar:$CATALINA_HOME/bin/tomcat-juli.jar" \
    org.apache.catalina.startup.Bootstrap start
  # the connector binds its port at init, before the webapp is deployed: wait for an HTTP answer
  local code
  code=$(curl -s -o /dev/null -m 120 -w '%{http_code}' "http://$IP:$HTTP_PORT/") || true
  [[ $code != 000 ]] || die "tomcat does not answer HTTP on $IP:$HTTP_PORT; see $D/log/tomcat.out"
}

cmd_start() {
  [[ -d $D/mysql/data/mysql ]] || die "not installed: run '$0 install' first"
  local t0
  t0=$(now)
  write_configs
  start_mariadb
  start_tomcat
  log "stack up ($(elapsed "$t0") s): http://$IP:$HTTP_PORT/item.jsp?id=1 (JDBC: $JDBC)"
}

cmd_stop() {
  stop_one tomcat
  stop_one mariadb
}

cmd_status() {
  local n pid port
  for n in tomcat:$HTTP_PORT mariadb:$DB_PORT; do
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
  [[ -s $CB/conf/context.xml ]] && printf 'jdbc %s\n' "$(grep -o 'name="vpath.jdbc" value="[a-z]*"' "$CB/conf/context.xml" | sed 's/.*value="//; s/"//')"
  printf 'dir %s\n' "$D"
}

# pages: Item_1 .. Item_ITEMS, each with 1 + N % 3 reviews (idempotent: the tables are refilled), then every
# item page once (the first compiles item.jsp), so that the load sees a warm JVM.
cmd_pages() {
  [[ -n $(pid_of tomcat) && -n $(pid_of mariadb) ]] || die "stack not running: '$0 start' first"
  local t0 k sql
  t0=$(now)
  sql="DELETE FROM $DB_NAME.review; DELETE FROM $DB_NAME.item;"
  for ((k = 1; k <= ITEMS; k++)); do
    sql+="INSERT INTO $DB_NAME.item VALUES ($k, 'Item_$k', $((k * 7 % 100)).$((k % 100)), 0);"
    sql+="INSERT INTO $DB_NAME.review (item_name, stars, body) VALUES ('Item_$k', $((k % 5 + 1)), 'first review of Item_$k')"
    ((k % 3 >= 1)) && sql+=", ('Item_$k', $(((k + 1) % 5 + 1)), 'second review of Item_$k')"
    ((k % 3 == 2)) && sql+=", ('Item_$k', $(((k + 2) % 5 + 1)), 'third review of Item_$k')"
    sql+=";"
  done
  sql_root "$sql"
  log "seeded $ITEMS items ($(elapsed "$t0") s)"
  local code
  for ((k = 1; k <= ITEMS; k++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$IP:$HTTP_PORT/item.jsp?id=$k") || true
    [[ $code == 200 ]] || die "item.jsp?id=$k answered HTTP $code; see $CB/logs and $D/log/tomcat.out"
  done
  # a short warm-up burst so the JIT has seen the page under concurrency
  ab -l -n 400 -c 4 -q "http://$IP:$HTTP_PORT/item.jsp?id=1" >/dev/null 2>&1 || true
  date +%s >"$D/run/pages.done"
  log "pages ready: $ITEMS items, item.jsp compiled and warmed ($(elapsed "$t0") s)"
}

# load N C: C workers, each viewing items in its own order (worker w starts at item 1 + w*ITEMS/C), so concurrent
# requests are for different items; each visit is one `ab -l -n R -c 1` (R = TC_LOAD_PER_VISIT, default 1) on
# /item.jsp?id=K, with `-k` (HTTP keep-alive: the R requests on one connection) when TC_LOAD_KEEPALIVE=1.
# Summary: $D/load/last.json (requests as ab counted them).
cmd_load() {
  local n=${1:-1000} c=${2:-4} r=${TC_LOAD_PER_VISIT:-1} ka=
  [[ ${TC_LOAD_KEEPALIVE:-0} == 1 ]] && ka=-k
  [[ -n $(pid_of tomcat) ]] || die "stack not running: '$0 start' first"
  local run=$D/load/run
  rm -rf "$run" && mkdir -p "$run"
  local w t0 t1
  # markers in the general log (over the unix socket, so they are not TCP traffic): the checker's window
  sql_root "SELECT 'vpath-load-begin'" >/dev/null
  t0=$(now)
  for ((w = 0; w < c; w++)); do
    (
      quota=$((n / c + (w < n % c ? 1 : 0))) v=0
      while ((quota > 0)); do
        item=$(((w * ITEMS / c + v) % ITEMS + 1))
        count=$((quota < r ? quota : r))
        ab -l $ka -n "$count" -c 1 -q "http://$IP:$HTTP_PORT/item.jsp?id=$item" >"$run/ab.$w.$v" 2>&1 || true
        echo "$item $count" >>"$run/visits.$w"
        quota=$((quota - count))
        v=$((v + 1))
      done
    ) &
  done
  wait
  t1=$(now)
  sql_root "SELECT 'vpath-load-end'" >/dev/null
  cat "$run"/ab.* | awk -v n="$n" -v c="$c" -v t0="$t0" -v t1="$t1" -v jdbc="$(cmd_status | awk '/^jdbc/ {print $2}')" '
    /^Complete requests:/ { done += $3 }
    /^Failed requests:/ { failed += $3 }
    /^Non-2xx responses:/ { non2xx += $3 }
    /^Total transferred:/ { bytes += $3 }
    END {
      s = t1 - t0
      printf "{\"requested\":%d,\"concurrency\":%d,\"jdbc\":\"%s\",\"requests\":%d,\"failed\":%d,\"non_2xx\":%d,\"bytes\":%d,\"seconds\":%.3f,\"rate\":%.2f}\n",
        n, c, jdbc, done, failed, non2xx, bytes, s, done / s
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
