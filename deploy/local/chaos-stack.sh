#!/usr/bin/env bash
# A stack of its own for the chaos rounds, which SIGKILL PostgreSQL and the Kafka broker: the
# stack every other test shares (15432/19092, <repo>/.data) is never touched.
#
#   deploy/local/chaos-stack.sh run CMD...   fresh stack up, CMD with its addresses, stack down
#   deploy/local/chaos-stack.sh down         stop it (idempotent; .ci/run calls it on exit)
#   deploy/local/chaos-stack.sh status
#
# The stack lives in <repo>/.data/chaos on PostgreSQL 127.0.0.1:15442 and Kafka 127.0.0.1:19102
# (controller 19103); CHAOS_DATA_DIR, CHAOS_PG_PORT, CHAOS_KAFKA_PORT and
# CHAOS_KAFKA_CONTROLLER_PORT move it. `run` starts from an empty data folder (the previous
# run's logs and topics stay until then, as evidence), exports STARSTREAM_DATA_DIR, the ports,
# STARSTREAM_PG_DSN and STARSTREAM_KAFKA_BROKERS to CMD (so the tests, chaos.sh and up.sh all
# address this stack), runs CMD in a process group of its own, and on exit, failure, Ctrl-C or
# SIGTERM stops that group (SIGTERM, SIGKILL 15 s later) and the stack by the PIDs up.sh
# recorded. Two runs on the same ports take turns (flock) instead of failing.
set -euo pipefail
SVC=chaos
LOCAL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$LOCAL/../.." && pwd -P)"

export STARSTREAM_DATA_DIR="${CHAOS_DATA_DIR:-$REPO/.data/chaos}"
export STARSTREAM_PG_PORT="${CHAOS_PG_PORT:-15442}"
export STARSTREAM_KAFKA_PORT="${CHAOS_KAFKA_PORT:-19102}"
export STARSTREAM_KAFKA_CONTROLLER_PORT="${CHAOS_KAFKA_CONTROLLER_PORT:-19103}"
# shellcheck source=deploy/local/lib.sh
. "$LOCAL/lib.sh"
[ "$DATA" != "$REPO/.data" ] && [ "$PG_PORT" != 15432 ] && [ "$KAFKA_PORT" != 19092 ] ||
  die "the chaos stack must not be the shared one (data $DATA, ports $PG_PORT/$KAFKA_PORT)"
export STARSTREAM_PG_DSN="$PG_DSN" STARSTREAM_KAFKA_BROKERS="$KAFKA_BROKERS"

stack_down() {
  # 7>&-: the services must not inherit the run lock.
  "$LOCAL/down.sh" 7>&- || warn "down.sh failed; see $DATA"
}

# stop_group PGID: SIGTERM to every process of the group, SIGKILL to what is left after 15 s.
stop_group() {
  local pgid="$1" deadline
  kill -0 -- "-$pgid" 2>/dev/null || return 0
  log "stopping the command's processes (group $pgid)"
  kill -TERM -- "-$pgid" 2>/dev/null || true
  deadline=$((SECONDS + 15))
  while kill -0 -- "-$pgid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      warn "group $pgid still running 15s after SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pgid" 2>/dev/null || true
      break
    fi
    sleep 0.3
  done
}

cmd_run() {
  [ $# -gt 0 ] || die "usage: $0 run CMD..."
  mkdir -p "$(dirname "$DATA")"
  exec 7>"/tmp/.starstream-chaos-stack-$PG_PORT.lock"
  if ! flock -n 7; then
    log "another chaos run uses ports $PG_PORT/$KAFKA_PORT; waiting for it (up to an hour)"
    flock -w 3600 7 || die "timed out waiting for /tmp/.starstream-chaos-stack-$PG_PORT.lock"
  fi
  local rc=0
  pgid="" # global: the EXIT trap runs after this function returned
  # shellcheck disable=SC2317  # called by the traps
  cleanup() {
    local st=$?
    trap - EXIT INT TERM HUP
    [ -z "$pgid" ] || stop_group "$pgid"
    stack_down
    if [ "$st" != 0 ]; then # evidence beside the rounds' own (test-artifacts/chaos-*)
      local keep
      keep="$REPO/test-artifacts/chaos-stack-$(date -u +%Y%m%dT%H%M%S)"
      mkdir -p "$keep"
      cp "$DATA/kafka/kafka.log" "$DATA/kafka/kafka.out" "$DATA/postgres/postgres.log" "$keep/" 2>/dev/null || true
      log "stack logs kept in $keep"
    fi
  }
  trap cleanup EXIT
  trap 'log "interrupted"; cleanup; exit 130' INT HUP
  trap 'log "terminated"; cleanup; exit 143' TERM

  stack_down # a run killed with SIGKILL may have left it up
  rm -rf "$DATA"
  "$LOCAL/up.sh" 7>&-
  log "running $* against PostgreSQL 127.0.0.1:$PG_PORT and Kafka $KAFKA_BROKERS"
  # setsid: the command and everything it starts (test binaries, starstream processes) form
  # one process group, which cleanup can stop without naming any process by name. The
  # services that up.sh starts detach into sessions of their own, and down.sh stops them.
  setsid "$@" 7>&- &
  pgid=$!
  wait "$pgid" || rc=$?
  return $rc
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  down) stack_down ;;
  status) "$LOCAL/status.sh" ;;
  *) echo "usage: $0 run CMD...|down|status" >&2; exit 2 ;;
esac
