#!/usr/bin/env bash
# Crashes a service of the local stack for chaos testing: SIGKILL to the process `make up`
# recorded (the PostgreSQL postmaster of .data/postgres/data, or the Kafka broker of
# .data/kafka/kafka.pid), nothing else. `deploy/local/up.sh` (or `make up`) brings it back.
#
#   deploy/local/chaos.sh kill postgres|kafka    SIGKILL it; prints the PID killed
#   deploy/local/chaos.sh pid postgres|kafka     print its PID (exit 1 when not running)
#
# The chaos test (cmd/starstream/chaos_test.go, `make chaos`) uses it. It kills the stack other
# tests share: never run it while other tests are running.
set -euo pipefail
SVC=chaos
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# service_pid NAME: PID of the running service, checked against its command line so a reused
# PID is never taken for ours (same checks as postgres.sh and kafka.sh).
service_pid() {
  local pid
  case "$1" in
    postgres)
      local pgdata="$DATA/postgres/data"
      [ -f "$pgdata/postmaster.pid" ] || return 1
      pid="$(head -n1 "$pgdata/postmaster.pid" 2>/dev/null || true)"
      pid_cmdline_has "$pid" "$pgdata" || return 1
      ;;
    kafka)
      [ -f "$DATA/kafka/kafka.pid" ] || return 1
      pid="$(cat "$DATA/kafka/kafka.pid" 2>/dev/null || true)"
      pid_cmdline_has "$pid" "kafka.Kafka $DATA/kafka/server.properties" || return 1
      ;;
    *) die "unknown service $1 (postgres or kafka)" ;;
  esac
  echo "$pid"
}

cmd_kill() {
  local pid
  pid="$(service_pid "$1")" || die "$1 is not running"
  kill -KILL "$pid"
  # Wait until it is gone (or a zombie), so the caller's `up` sees a dead service.
  local deadline=$((SECONDS + 30))
  while pid_alive "$pid"; do
    [ $SECONDS -lt $deadline ] || die "$1 (pid $pid) still alive 30s after SIGKILL"
    sleep 0.1
  done
  log "killed $1 (pid $pid)"
  echo "$pid"
}

case "${1:-}" in
  kill) [ $# = 2 ] || { echo "usage: $0 kill postgres|kafka" >&2; exit 2; }; cmd_kill "$2" ;;
  pid) [ $# = 2 ] || { echo "usage: $0 pid postgres|kafka" >&2; exit 2; }; service_pid "$2" ;;
  *) echo "usage: $0 kill|pid postgres|kafka" >&2; exit 2 ;;
esac
