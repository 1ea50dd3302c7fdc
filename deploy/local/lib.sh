# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
# Shared helpers for the local stack scripts (deploy/local/*.sh). Sourced, never executed.
#
# Everything the stack writes lives under $DATA (<repo>/.data, git-ignored); downloaded jars
# live under $CACHE (<repo>/.cache, git-ignored) so `rm -rf .data` does not re-download them.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
LOCAL_DIR="$ROOT/deploy/local"
DATA="${STARSTREAM_DATA_DIR:-$ROOT/.data}"
CACHE="${STARSTREAM_CACHE_DIR:-$ROOT/.cache}"

# Ports: the defaults are what env.sh and the tests use. A second, independent stack (the
# chaos rounds kill their services, so they get their own) sets STARSTREAM_DATA_DIR and these.
PG_PORT="${STARSTREAM_PG_PORT:-15432}"
PG_USER=starstream
PG_PASSWORD=starstream
PG_DB=starstream
PG_DSN="postgres://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/${PG_DB}?sslmode=disable"
# The least-privilege capture role, over TLS only, verifying the local CA (tls.sh).
CAPTURE_ROLE=starstream_capture
CAPTURE_PASSWORD=capture-secret
TLS_CA_FILE="$DATA/tls/ca.crt"
PG_CAPTURE_DSN="postgres://${CAPTURE_ROLE}:${CAPTURE_PASSWORD}@127.0.0.1:${PG_PORT}/${PG_DB}?sslmode=verify-full&sslrootcert=${TLS_CA_FILE}"
KAFKA_PORT="${STARSTREAM_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${STARSTREAM_KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT}"
# The SASL_SSL listener (SCRAM-SHA-512, certificate from the local CA) next to the plaintext one:
# by default two above it (19094), so a second stack with its own ports gets its own.
KAFKA_SASL_PORT="${STARSTREAM_KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
KAFKA_SASL_BROKERS="127.0.0.1:${KAFKA_SASL_PORT}"
KAFKA_SASL_USER=starstream
KAFKA_SASL_PASSWORD=starstream-secret

# How long `up` waits for a service to answer before giving up (seconds).
UP_TIMEOUT="${STARSTREAM_UP_TIMEOUT:-120}"
# How long `down` waits for a service to exit before escalating (seconds).
DOWN_TIMEOUT="${STARSTREAM_DOWN_TIMEOUT:-60}"

# SVC is set by each service script; messages are prefixed with it.
SVC="${SVC:-local}"

log()  { printf '%-9s %s\n' "${SVC}:" "$*" >&2; }
warn() { printf '%-9s WARNING: %s\n' "${SVC}:" "$*" >&2; }
die()  { printf '%-9s ERROR: %s\n' "${SVC}:" "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# pid_alive PID: the process exists (zombies count as gone).
pid_alive() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -d "/proc/$pid" ] || return 1
  state="$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
  [ -n "$state" ] && [ "$state" != "Z" ]
}

# pid_cmdline_has PID STRING: the process's command line contains STRING (so a PID reused by
# an unrelated process after a crash or reboot is not mistaken for ours).
pid_cmdline_has() {
  local pid="$1" needle="$2"
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}

# tcp_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
tcp_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# require_free_port PORT OWNER: dies unless a server of ours can bind 127.0.0.1:PORT. A listener
# is someone else's server. A port inside the kernel's ephemeral range can also be held by an
# outgoing connection's local end (CI lost a run to that when PostgreSQL sat on 55442); such a
# socket goes away by itself, so it is waited for, and the default ports sit below the range.
require_free_port() {
  local port="$1" owner="$2" lo hi waited=0
  if tcp_open "$port"; then
    die "port $port is already in use by another process (not $owner); stop it first"
  fi
  if read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null &&
    [ "$port" -ge "$lo" ] && [ "$port" -le "$hi" ]; then
    log "warning: port $port is inside this machine's ephemeral port range ($lo-$hi); an outgoing connection may hold it"
  fi
  command -v ss >/dev/null 2>&1 || return 0
  # Only the states of a connection's live local end: the closing sockets a killed server
  # leaves behind (fin-wait, time-wait) do not stop a new one binding with SO_REUSEADDR.
  while ss -Htan state established state syn-sent state close-wait "( sport = :$port )" 2>/dev/null | grep -q .; do
    if [ "$waited" -ge "$UP_TIMEOUT" ]; then
      die "port $port is held by a connection's local end for ${UP_TIMEOUT}s (ss -tanp 'sport = :$port'); choose another port"
    fi
    [ "$waited" -eq 0 ] && log "port $port is the local end of a live connection; waiting for it to close"
    sleep 1
    waited=$((waited + 1))
  done
}

# with_lock NAME: serialise up/down of one service across concurrent callers (`make test`
# depends on `make up`, so several engineers' test runs may call it at the same moment).
# The lock is held until the calling script exits.
with_lock() {
  mkdir -p "$DATA"
  exec 9>"$DATA/.$1.lock"
  if ! flock -n 9; then
    log "another up/down of $1 is in progress; waiting for it"
    flock -w 900 9 || die "timed out waiting for the lock $DATA/.$1.lock"
  fi
}

# apt_install PKG...: install Debian packages non-interactively (needs root).
apt_install() {
  is_root || die "missing $*; install it (apt-get install -y $*) or run as root"
  command -v apt-get >/dev/null 2>&1 || die "missing $* and no apt-get on this machine: install it by hand"
  log "installing $* with apt-get (one time)"
  export DEBIAN_FRONTEND=noninteractive
  # Two services may install at the same time: apt's own lock is taken by apt-get, but wait
  # politely rather than fail.
  (
    flock -w 900 8 || exit 1
    apt-get update -qq &&
      apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "$@"
  ) 8>/tmp/.starstream-apt.lock >&2 || die "apt-get install $* failed"
}

# tail_log FILE: last lines of a log, indented, for error messages.
tail_log() {
  [ -f "$1" ] || return 0
  echo "---- last lines of $1 ----" >&2
  tail -n 20 "$1" | sed 's/^/    /' >&2
  echo "----" >&2
}

# stop_service PIDFILE LOG PID_FN: stops the process PID_FN names (SIGTERM, then SIGKILL after
# DOWN_TIMEOUT) and removes PIDFILE; a service that is not running only loses a stale PIDFILE.
stop_service() {
  local pidfile="$1" logf="$2" pid_fn="$3" pid
  if ! pid="$("$pid_fn")"; then
    if [ -f "$pidfile" ]; then
      rm -f "$pidfile"
      log "not running (removed stale pid file)"
    else
      log "not running"
    fi
    return 0
  fi
  log "stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + DOWN_TIMEOUT))
  while pid_alive "$pid"; do
    if [ $SECONDS -ge $deadline ]; then
      warn "pid $pid did not exit ${DOWN_TIMEOUT}s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.3
  done
  pid_alive "$pid" && die "pid $pid is still alive; see $logf"
  rm -f "$pidfile"
  log "stopped"
}

# status_row NAME PORT PIDFILE LOG PID_FN ANSWERS_FN: one line of `make status`.
status_row() {
  local name="$1" port="$2" pidfile="$3" logf="$4" pid_fn="$5" answers_fn="$6" pid state
  if pid="$("$pid_fn")"; then
    if "$answers_fn"; then state="running"; else state="running (not answering)"; fi
    printf '%-10s %-38s %-6s %-8s %s\n' "$name" "$state" "$port" "$pid" "$logf"
  elif [ -f "$pidfile" ]; then
    printf '%-10s %-38s %-6s %-8s %s\n' "$name" "stopped (stale pid file)" "$port" "-" "$logf"
  else
    printf '%-10s %-38s %-6s %-8s %s\n' "$name" "stopped" "$port" "-" "$logf"
  fi
}
