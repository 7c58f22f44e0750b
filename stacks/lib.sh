# Shared by the stacks' stack.sh scripts (source it; not a command). The caller sets D (the stack's folder) and
# defines `expected_program NAME EXE CMDLINE`, true when a process with that executable and command line is the
# one NAME's pid file should name.

log() { printf '[stack %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- processes, by pid file ------------------------------------------------------------------------------------

# pid_of NAME: the pid in $D/run/NAME.pid if that process is alive and runs the expected program, else nothing.
pid_of() {
  local f=$D/run/$1.pid pid exe cmd
  [[ -s $f ]] || return 0
  pid=$(<"$f")
  [[ -d /proc/$pid ]] || return 0
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  if expected_program "$1" "$exe" "$cmd"; then echo "$pid"; fi
  return 0
}

stop_one() {
  local name=$1 pid i
  pid=$(pid_of "$name")
  if [[ -z $pid ]]; then
    rm -f "$D/run/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored TERM for 30 s; KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$D/run/$name.pid"
  log "$name stopped (pid $pid)"
}

# --- servers on loopback (IP, LAUNCH_WAIT seconds, default 60) ---------------------------------------------------

port_busy() { ss -Hltn "sport = :$1" | grep -q .; }

wait_port() { # wait_port PORT NAME PID SECONDS
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    ss -Hltn "src $IP:$1" | grep -q . && return 0
    kill -0 "$3" 2>/dev/null || die "$2 exited during start; see its log under $D/log"
    sleep 0.1
  done
  die "$2 is not listening on $IP:$1 after $4 s; see $D/log"
}

# launch_local NAME PORT CMD...: start CMD in its own session, record its pid, wait for the port.
launch_local() {
  local name=$1 port=$2 pid
  shift 2
  if [[ -n $(pid_of "$name") ]]; then
    log "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  port_busy "$port" && die "port $port is taken by a process this script did not start (ss -ltnp sport = :$port)"
  setsid "$@" >>"$D/log/$name.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$D/run/$name.pid"
  wait_port "$port" "$name" "$pid" "${LAUNCH_WAIT:-60}"
  log "$name up on $IP:$port (pid $pid)"
}
