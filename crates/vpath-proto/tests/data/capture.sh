#!/usr/bin/env bash
# Captures the test data of this folder from real servers on loopback, as root, on Debian 12:
#   apt-get install memcached mariadb-server mariadb-client postgresql redis-server redis-tools \
#     php-fpm php-cli php-mysql php-pgsql php-redis php-memcached nginx netcat-openbsd strace curl
# Each server is started by hand on 127.0.0.1 with its own port and data in $W, driven by its
# own clients (curl, nginx's FastCGI module, mariadb, PHP mysqli/pgsql/redis/memcached, psql,
# redis-cli, nc), traced with strace on the client side, cut into messages by extract.py, and
# stopped again. Nothing else is touched. Usage: bash capture.sh [OUTDIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE}
W=/tmp/vpath-proto-capture
X="python3 $HERE/extract.py"
ST="strace -f -yy -e trace=%network,read,write,readv,writev -s 65536 -xx"
rm -rf "$W" && mkdir -p "$W" && chmod 777 "$W"
mkdir -p "$OUT"/{http,fastcgi,mysql,postgresql,memcached,redis}
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -f "$W/mc.pid" ] && kill "$(cat "$W/mc.pid")"
  [ -f "$W/redis.pid" ] && kill "$(cat "$W/redis.pid")"
  [ -f "$W/fpm.pid" ] && kill "$(cat "$W/fpm.pid")"
  [ -d "$W/pg" ] && su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $W/pg -m fast stop" >/dev/null
  [ -f "$W/mysql.pid" ] && kill "$(cat "$W/mysql.pid")"
  sleep 2
}
trap cleanup EXIT

KEY='my_wiki:pcache:idhash:7-0!canonical'

echo "== memcached"
memcached -u memcache -l 127.0.0.1 -p 21211 -U 0 -m 16 -d -P "$W/mc.pid"
sleep 0.5
cat > "$W/mc.php" <<EOF
<?php
\$m = new Memcached();
\$m->addServer('127.0.0.1', 21211);
if (\$argv[1] === 'binary') { \$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true); }
\$m->set('$KEY', str_repeat('x', 40), 300);
\$m->get('$KEY');
\$m->get('my_wiki:missing');
\$m->getMulti(['my_wiki:a', 'my_wiki:b', '$KEY']);
\$m->add('my_wiki:counter', 1);
\$m->increment('my_wiki:counter');
\$m->touch('$KEY', 600);
\$m->delete('my_wiki:counter');
EOF
$ST -o "$W/mc-text.strace" php "$W/mc.php" text
$X "$W/mc-text.strace" 21211 "$OUT/memcached" text
$ST -o "$W/mc-bin.strace" php "$W/mc.php" binary
$X "$W/mc-bin.strace" 21211 "$OUT/memcached" binary
i=0
for cmd in "mg $KEY v t f" "ms my_wiki:meta 5 T60\r\nhello" "md my_wiki:meta q" "mn" "version" "get $KEY my_wiki:missing"; do
  $ST -o "$W/mc-nc$i.strace" sh -c "printf '$cmd\r\n' | nc -N -w 2 127.0.0.1 21211 >/dev/null"
  $X "$W/mc-nc$i.strace" 21211 "$OUT/memcached" "nc$i"
  i=$((i + 1))
done

echo "== redis"
redis-server --port 26379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$W/redis.pid" --dir "$W" --logfile "$W/redis.log"
sleep 0.5
i=0
while read -r line; do
  $ST -o "$W/rc$i.strace" sh -c "redis-cli -h 127.0.0.1 -p 26379 $line >/dev/null"
  $X "$W/rc$i.strace" 26379 "$OUT/redis" "cli$i"
  i=$((i + 1))
done <<EOF
SET $KEY hello-value EX 300
GET $KEY
GET my_wiki:missing
HSET my_wiki:h field1 value1 field2 value2
MGET $KEY my_wiki:missing
INCR my_wiki:counter
LPUSH my_wiki:list a b c
LRANGE my_wiki:list 0 -1
INCR my_wiki:list
PING
EOF
cat > "$W/redis.php" <<EOF
<?php
\$r = new Redis();
\$r->connect('127.0.0.1', 26379);
\$r->setex('$KEY', 300, str_repeat('v', 30));
\$r->get('$KEY');
\$r->del('my_wiki:gone');
\$r->close();
EOF
$ST -o "$W/redis-php.strace" php "$W/redis.php"
$X "$W/redis-php.strace" 26379 "$OUT/redis" php
$ST -o "$W/redis-inline.strace" sh -c "printf 'PING\r\n' | nc -N -w 2 127.0.0.1 26379 >/dev/null"
$X "$W/redis-inline.strace" 26379 "$OUT/redis" inline

echo "== mariadb"
mariadb-install-db --no-defaults --datadir="$W/mysql" --user=root --skip-test-db >/dev/null
mariadbd --no-defaults --user=root --datadir="$W/mysql" --bind-address=127.0.0.1 --port=23306 \
  --socket="$W/mysql.sock" --pid-file="$W/mysql.pid" --skip-name-resolve \
  --innodb-buffer-pool-size=16M --log-error="$W/mysql.err" &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$W/mysql.sock" ] && break; sleep 0.2; done
mariadb --socket="$W/mysql.sock" -u root <<'EOF'
CREATE DATABASE wikidb;
CREATE USER 'wiki'@'127.0.0.1' IDENTIFIED BY 'wikipass';
GRANT ALL ON wikidb.* TO 'wiki'@'127.0.0.1';
CREATE TABLE wikidb.page (page_id INT PRIMARY KEY AUTO_INCREMENT, page_namespace INT,
  page_title VARBINARY(255), page_len INT);
INSERT INTO wikidb.page (page_namespace, page_title, page_len) VALUES (0, 'Main_Page', 735), (0, 'Page_7', 1200);
EOF
$ST -o "$W/my-cli.strace" mariadb -h 127.0.0.1 -P 23306 -u wiki -pwikipass wikidb \
  -e "SELECT page_id, page_len FROM page WHERE page_title = 'Main_Page'"
$X "$W/my-cli.strace" 23306 "$OUT/mysql" cli
cat > "$W/mysql.php" <<'EOF'
<?php
mysqli_report(MYSQLI_REPORT_OFF);
$db = new mysqli('127.0.0.1', 'wiki', 'wikipass', 'wikidb', 23306);
$db->query("/* WikiPage::loadPageData 127.0.0.1 */ SELECT page_id,page_namespace,page_title,page_len FROM `page` WHERE page_namespace = 0 AND page_title = 'Page_7' LIMIT 1");
$db->query("/* LinksUpdate::doUpdate */ UPDATE `page` SET page_len = 1201 WHERE page_id = 2");
$db->query("INSERT INTO `page` (page_namespace,page_title,page_len) VALUES (0,'New_Page',10)");
$db->query("SELEC broken syntax");
$db->select_db('wikidb');
$st = $db->prepare("SELECT page_title FROM page WHERE page_id = ?");
$id = 2; $st->bind_param('i', $id); $st->execute(); $st->get_result(); $st->close();
$db->ping();
$db->close();
EOF
$ST -o "$W/my-php.strace" php "$W/mysql.php"
$X "$W/my-php.strace" 23306 "$OUT/mysql" php

echo "== postgresql"
echo wikipass > "$W/pgpw"
chmod 644 "$W/pgpw"
su postgres -c "/usr/lib/postgresql/15/bin/initdb -D $W/pg -A scram-sha-256 --pwfile=$W/pgpw -U postgres" >/dev/null
su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $W/pg -l $W/pg.log -o '-p 25432 -k $W -c listen_addresses=127.0.0.1' -w start" >/dev/null
export PGPASSWORD=wikipass
psql -h 127.0.0.1 -p 25432 -U postgres -q <<'EOF'
CREATE USER wiki PASSWORD 'wikipass';
CREATE DATABASE wikidb OWNER wiki;
\c wikidb
SET ROLE wiki;
CREATE TABLE page (page_id SERIAL PRIMARY KEY, page_namespace INT, page_title TEXT, page_len INT);
INSERT INTO page (page_namespace, page_title, page_len) VALUES (0, 'Main_Page', 735), (0, 'Page_7', 1200);
EOF
PGSSLMODE=disable $ST -o "$W/pg-psql.strace" psql -h 127.0.0.1 -p 25432 -U wiki wikidb -q \
  -c "/* WikiPage::loadPageData */ SELECT page_id, page_len FROM page WHERE page_title = 'Main_Page'" \
  -c "UPDATE page SET page_len = 736 WHERE page_id = 1" -c "SELECT * FROM missing_table" || true
$X "$W/pg-psql.strace" 25432 "$OUT/postgresql" psql
PGSSLMODE=prefer $ST -o "$W/pg-ssl.strace" psql -h 127.0.0.1 -p 25432 -U wiki wikidb -q -c "SELECT 1"
$X "$W/pg-ssl.strace" 25432 "$OUT/postgresql" sslprefer
cat > "$W/pg.php" <<'EOF'
<?php
$c = pg_connect("host=127.0.0.1 port=25432 dbname=wikidb user=wiki password=wikipass sslmode=disable");
pg_query_params($c, 'SELECT page_id, page_len FROM page WHERE page_title = $1', ['Page_7']);
pg_prepare($c, 'get_page', 'SELECT page_title FROM page WHERE page_id = $1');
pg_execute($c, 'get_page', [2]);
pg_close($c);
EOF
$ST -o "$W/pg-php.strace" php "$W/pg.php"
$X "$W/pg-php.strace" 25432 "$OUT/postgresql" php

echo "== nginx + php-fpm (HTTP and FastCGI)"
mkdir -p "$W/www"
cat > "$W/www/index.php" <<'EOF'
<?php echo "<html><body>" . htmlspecialchars($_GET['title'] ?? 'Main_Page') . "</body></html>\n";
EOF
cat > "$W/www/missing.php" <<'EOF'
<?php http_response_code(404); echo "no such page\n";
EOF
cat > "$W/www/fail.php" <<'EOF'
<?php http_response_code(503); echo "database is locked\n";
EOF
chmod -R a+rX "$W/www"
cat > "$W/fpm.conf" <<EOF
[global]
pid = $W/fpm.pid
error_log = $W/fpm.log
daemonize = yes
[proto]
user = www-data
group = www-data
listen = 127.0.0.1:29000
pm = static
pm.max_children = 2
EOF
php-fpm8.2 --fpm-config "$W/fpm.conf"
cat > "$W/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $W/nginx.err;
pid $W/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $W/nb; fastcgi_temp_path $W/nf; proxy_temp_path $W/np;
  uwsgi_temp_path $W/nu; scgi_temp_path $W/ns;
  server {
    listen 127.0.0.1:28080;
    root $W/www;
    index index.php;
    location ~ \.php\$ {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
      fastcgi_pass 127.0.0.1:29000;
    }
  }
}
EOF
sleep 0.5
$ST -o "$W/nginx.strace" nginx -c "$W/nginx.conf" &
PIDS+=($!)
for _ in $(seq 50); do nc -z 127.0.0.1 28080 && break; sleep 0.2; done
i=0
for args in "http://127.0.0.1:28080/index.php?title=Page_7&action=view" \
            "-I http://127.0.0.1:28080/index.php?title=Main_Page" \
            "-d title=Page_7&text=Hello+world http://127.0.0.1:28080/index.php?action=submit" \
            "http://127.0.0.1:28080/missing.php" "http://127.0.0.1:28080/fail.php" \
            "http://127.0.0.1:28080/nonexistent.php" "http://127.0.0.1:28080/static/none.css"; do
  $ST -o "$W/curl$i.strace" curl -s -o /dev/null $args
  $X "$W/curl$i.strace" 28080 "$OUT/http" "curl$i"
  i=$((i + 1))
done
sleep 0.5
kill -QUIT "$(cat "$W/nginx.pid")"; wait "${PIDS[-1]}" 2>/dev/null || true
$X "$W/nginx.strace" 29000 "$OUT/fastcgi" nginx
echo "== done"
