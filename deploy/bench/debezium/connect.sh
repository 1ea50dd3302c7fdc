#!/usr/bin/env bash
# Kafka Connect (standalone) with the Debezium PostgreSQL connector against the local stack, for
# the comparison benchmark (deploy/bench/cmd/compare). Jars come from Maven Central through
# deploy/bench/debezium/pom.xml into <repo>/.cache/bench-connect/<hash of pom.xml>/.
#
#   deploy/bench/debezium/connect.sh fetch
#   deploy/bench/debezium/connect.sh start NAME    # prints the worker's PID once the task runs
#   deploy/bench/debezium/connect.sh stop NAME     # SIGTERM to that PID, SIGKILL after 60 s
#   deploy/bench/debezium/connect.sh status NAME
#
# Each NAME has its own directory <repo>/.data/bench/debezium/NAME with the worker and connector
# properties, the offsets file (offsets.dat), the PID file and the logs; `start` on an existing
# NAME keeps its offsets (a restart resumes where the connector stopped).
#
# start reads (all required unless a default is given):
#   DBZ_SLOT, DBZ_PUBLICATION   replication slot and publication (used as they are if they
#                               exist; the publication must exist: autocreate is disabled)
#   DBZ_TABLES                  table.include.list, e.g. bench.order_items
#   DBZ_TOPIC_PREFIX            topic.prefix: records go to <prefix>.<schema>.<table>, which must
#                               exist (the local broker does not auto-create topics)
#   DBZ_SNAPSHOT_MODE           default no_data (stream only)
#   DBZ_REST_PORT               default 18083 (Connect's REST API, 127.0.0.1 only)
#   DBZ_EXTRA                   extra connector properties, one `key=value` a line
#   STARSTREAM_PG_DSN-style settings are not parsed: PG_HOST/PG_PORT/PG_USER/PG_PASSWORD/PG_DB
#                               default to the local stack (deploy/local/lib.sh)
#   CONNECT_HEAP_OPTS           default "-Xms256M -Xmx2G", the default of Kafka's connect-standalone.sh
set -euo pipefail
SVC=connect
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/local/lib.sh
. "$BENCH_DIR/../../local/lib.sh"

POM="$BENCH_DIR/pom.xml"
CONNECT_HEAP_OPTS="${CONNECT_HEAP_OPTS:--Xms256M -Xmx2G}"
# The JVM flags of Kafka's kafka-run-class.sh (KAFKA_JVM_PERFORMANCE_OPTS), so the worker runs
# as it would from a Kafka distribution.
CONNECT_JVM_OPTS="${CONNECT_JVM_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
STOP_TIMEOUT="${CONNECT_STOP_TIMEOUT:-60}"
START_TIMEOUT="${CONNECT_START_TIMEOUT:-180}"

libs_dir() { echo "$CACHE/bench-connect/$(sha256sum "$POM" | cut -c1-12)"; }

# cmd_fetch: resolve the worker's class path and the connector's plugin directory once
# (atomic: a half-finished download is redone).
cmd_fetch() {
  LIBS="$(libs_dir)"
  [ -f "$LIBS/.complete" ] && return 0
  mkdir -p "$CACHE/bench-connect"
  exec 7>"$CACHE/bench-connect/.lock"
  flock -w 900 7 || die "timed out waiting for $CACHE/bench-connect/.lock"
  [ -f "$LIBS/.complete" ] && return 0
  command -v mvn >/dev/null 2>&1 || apt_install maven
  local tmp="$LIBS.tmp.$$" mvnlog="$CACHE/bench-connect/mvn.log"
  rm -rf "$tmp"
  log "resolving Kafka Connect and Debezium from Maven Central into $LIBS (one time)"
  if ! { mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
           -DoutputDirectory="$tmp/worker" &&
         mvn -B -q -Dstyle.color=never -f "$POM" -Pplugin dependency:copy-dependencies \
           -DoutputDirectory="$tmp/plugins/debezium-postgres"; } >"$mvnlog" 2>&1; then
    tail_log "$mvnlog"
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed (full output: $mvnlog)"
  fi
  ls "$tmp"/worker/connect-runtime-*.jar >/dev/null 2>&1 || die "no connect-runtime jar in $tmp/worker"
  ls "$tmp"/plugins/debezium-postgres/debezium-connector-postgres-*.jar >/dev/null 2>&1 ||
    die "no debezium-connector-postgres jar in $tmp/plugins"
  date -u +%FT%TZ >"$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  find "$CACHE/bench-connect" -mindepth 1 -maxdepth 1 -type d ! -path "$LIBS" -exec rm -rf {} +
}

ensure_java() {
  JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$JAVA" >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
}

need_name() {
  [ -n "${NAME:-}" ] || die "usage: $0 start|stop|status NAME"
  [[ "$NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "NAME must be [A-Za-z0-9_.-]+"
  RUN="$DATA/bench/debezium/$NAME"
  PIDF="$RUN/connect.pid"
}

# worker_pid: the PID `start` recorded, if that process is still our worker.
worker_pid() {
  local pid
  [ -f "$PIDF" ] || return 1
  pid="$(cat "$PIDF" 2>/dev/null || true)"
  if pid_cmdline_has "$pid" "ConnectStandalone $RUN/worker.properties"; then echo "$pid"; return 0; fi
  return 1
}

rest() { curl -fsS --max-time 5 "http://127.0.0.1:$REST_PORT$1"; }

cmd_start() {
  need_name
  : "${DBZ_SLOT:?DBZ_SLOT is required}" "${DBZ_PUBLICATION:?DBZ_PUBLICATION is required}"
  : "${DBZ_TABLES:?DBZ_TABLES is required}" "${DBZ_TOPIC_PREFIX:?DBZ_TOPIC_PREFIX is required}"
  REST_PORT="${DBZ_REST_PORT:-18083}"
  ensure_java
  cmd_fetch
  LIBS="$(libs_dir)"
  if pid="$(worker_pid)"; then die "already running (pid $pid); stop it first"; fi
  tcp_open "$REST_PORT" && die "port $REST_PORT is in use: set DBZ_REST_PORT"
  mkdir -p "$RUN"
  cat >"$RUN/worker.properties" <<EOF
# Written by deploy/bench/debezium/connect.sh start $NAME
bootstrap.servers=$KAFKA_BROKERS
# JSON without schemas: Confluent's AvroConverter is not on Maven Central, and Apicurio's
# needs a registry server this machine does not run.
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
offset.storage.file.filename=$RUN/offsets.dat
offset.flush.interval.ms=10000
plugin.path=$LIBS/plugins
plugin.discovery=only_scan
listeners=http://127.0.0.1:$REST_PORT
EOF
  cat >"$RUN/connector.properties" <<EOF
# Written by deploy/bench/debezium/connect.sh start $NAME
name=$NAME
connector.class=io.debezium.connector.postgresql.PostgresConnector
tasks.max=1
plugin.name=pgoutput
database.hostname=127.0.0.1
database.port=$PG_PORT
database.user=$PG_USER
database.password=$PG_PASSWORD
database.dbname=$PG_DB
topic.prefix=$DBZ_TOPIC_PREFIX
slot.name=$DBZ_SLOT
publication.name=$DBZ_PUBLICATION
publication.autocreate.mode=disabled
table.include.list=$DBZ_TABLES
snapshot.mode=${DBZ_SNAPSHOT_MODE:-no_data}
# Logical decoding messages (pg_logical_emit_message, non-transactional ones from any session of
# the database) would go to <prefix>.message; with topic auto-creation off the producer blocks on
# that missing topic forever and the connector stalls. Nothing here needs them.
message.prefix.exclude.list=.*
# numeric as a decimal string: the default (precise) is base64 bytes, unreadable without schemas.
decimal.handling.mode=string
${DBZ_EXTRA:-}
EOF
  : >"$RUN/connect.out"
  log "starting Kafka Connect standalone ($NAME, REST 127.0.0.1:$REST_PORT, log $RUN/connect.log)"
  # setsid + exec: the PID file names the JVM itself; it must not inherit our lock descriptors.
  # shellcheck disable=SC2086,SC2016
  (cd "$RUN" && exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDF" \
    "$JAVA" $CONNECT_HEAP_OPTS $CONNECT_JVM_OPTS \
    -Dlog4j2.configurationFile="$BENCH_DIR/log4j2.xml" -Dconnect.logs.dir="$RUN" \
    -cp "$LIBS/worker/*" org.apache.kafka.connect.cli.ConnectStandalone \
    "$RUN/worker.properties" "$RUN/connector.properties" \
    </dev/null >>"$RUN/connect.out" 2>&1 7>&- 8>&- 9>&-) &
  local deadline=$((SECONDS + START_TIMEOUT)) pid="" st=""
  while [ $SECONDS -lt $deadline ]; do
    pid="$(cat "$PIDF" 2>/dev/null || true)"
    pid_cmdline_has "$pid" "ConnectStandalone" && break
    sleep 0.1
  done
  # Ready when the connector and its one task report RUNNING.
  while :; do
    if ! pid_alive "$pid"; then
      tail_log "$RUN/connect.out"; tail_log "$RUN/connect.log"
      die "Kafka Connect exited while starting; see $RUN/connect.log"
    fi
    st="$(rest "/connectors/$NAME/status" 2>/dev/null || true)"
    if [ -n "$st" ]; then
      case "$(jq -r '[.connector.state, (.tasks[0].state // "NONE")] | join(" ")' <<<"$st")" in
        "RUNNING RUNNING") break ;;
        *FAILED*)
          jq -r '.tasks[0].trace // .connector.trace // empty' <<<"$st" | head -30 >&2
          kill -TERM "$pid" 2>/dev/null || true
          die "connector $NAME failed; see $RUN/connect.log" ;;
      esac
    fi
    if [ $SECONDS -ge $deadline ]; then
      kill -TERM "$pid" 2>/dev/null || true
      tail_log "$RUN/connect.log"
      die "connector $NAME not RUNNING after ${START_TIMEOUT}s; see $RUN/connect.log"
    fi
    sleep 0.5
  done
  log "running: pid $pid"
  echo "$pid"
}

cmd_stop() {
  need_name
  local pid
  if ! pid="$(worker_pid)"; then
    rm -f "$PIDF"
    log "not running"
    return 0
  fi
  log "stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while pid_alive "$pid"; do
    if [ $SECONDS -ge $deadline ]; then
      warn "pid $pid did not exit ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.2
  done
  pid_alive "$pid" && die "pid $pid is still alive"
  rm -f "$PIDF"
  log "stopped"
}

cmd_status() {
  need_name
  local pid
  if pid="$(worker_pid)"; then echo "running $pid"; else echo "stopped"; fi
}

NAME="${2:-}"
case "${1:-}" in
  fetch) ensure_java; cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 fetch | start NAME | stop NAME | status NAME" >&2; exit 2 ;;
esac
