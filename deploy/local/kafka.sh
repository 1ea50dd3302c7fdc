#!/usr/bin/env bash
# Local Apache Kafka (>= 4.1, KRaft, one combined broker+controller node) for development and
# tests: broker on 127.0.0.1:19092 (PLAINTEXT), 127.0.0.1:19094 (SASL_SSL: SCRAM-SHA-512 or -256,
# user starstream / starstream-secret, certificate from the local CA of tls.sh), controller on
# 127.0.0.1:19093, data under <repo>/.data/kafka. $DATA/kafka/client-sasl.properties configures
# Kafka's own tools for the SASL_SSL listener (--command-config).
# Jars come from Maven Central through deploy/local/kafka/pom.xml into <repo>/.cache.
#
#   deploy/local/kafka.sh up|down|status|fetch
#
# Idempotent: `up` on a running broker only checks it; a PID file whose process is gone (or
# belongs to another program) is stale and replaced; `down` stops only the PID `up` recorded.
set -euo pipefail
SVC=kafka
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=deploy/local/tls.sh
. "$LOCAL_DIR/tls.sh"

KAFKA_HOME_DIR="$LOCAL_DIR/kafka"          # committed: pom.xml, log4j2 configs, bin/
KDIR="$DATA/kafka"                         # runtime: config, pid, logs, data
KDATA="$KDIR/data"
KCONF="$KDIR/server.properties"
KPID="$KDIR/kafka.pid"
KLOG="$KDIR/kafka.log"                     # log4j2 (see deploy/local/kafka/log4j2.xml)
KOUT="$KDIR/kafka.out"                     # JVM stdout/stderr (crashes, OOM, bad flags)
KCLIENT="$KDIR/client-sasl.properties"    # for kafka-* --command-config on the SASL_SSL listener
KSCRAM_MARK="$KDIR/.scram-user"            # cluster id + user whose SCRAM credentials exist
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"

# kafka_libs: the jar cache for the current pom.xml (see kafka_libs_dir in kafka/bin/kafka-run-class).
kafka_libs() {
  echo "$CACHE/kafka-libs/$(sha256sum "$KAFKA_HOME_DIR/pom.xml" | cut -c1-12)"
}

java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}' | cut -d. -f1
}

ensure_java() {
  local j="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  if ! command -v "$j" >/dev/null 2>&1; then
    apt_install openjdk-17-jre-headless
    j=java
  fi
  local v
  v="$(java_major "$j")"
  if [ -z "$v" ] || [ "$v" -lt 17 ]; then
    die "Kafka 4 needs Java 17 or newer; $(command -v "$j") is Java ${v:-unknown}"
  fi
  JAVA="$j"
}

# cmd_fetch: resolve the jars once into the cache (atomic: a half-finished download is redone).
cmd_fetch() {
  LIBS="$(kafka_libs)"
  [ -f "$LIBS/.complete" ] && return 0
  mkdir -p "$CACHE/kafka-libs"
  exec 8>"$CACHE/kafka-libs/.lock"
  flock -w 900 8 || die "timed out waiting for $CACHE/kafka-libs/.lock"
  [ -f "$LIBS/.complete" ] && return 0
  command -v mvn >/dev/null 2>&1 || apt_install maven
  local ver tmp
  ver="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_HOME_DIR/pom.xml")"
  log "resolving Kafka $ver jars from Maven Central into $LIBS (one time)"
  tmp="$LIBS.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_HOME_DIR/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" >"$CACHE/kafka-libs/mvn.log" 2>&1; then
    tail_log "$CACHE/kafka-libs/mvn.log"
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed (full output: $CACHE/kafka-libs/mvn.log)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $tmp after mvn"
  echo "$ver" >"$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  # Drop caches of older pom.xml versions.
  find "$CACHE/kafka-libs" -mindepth 1 -maxdepth 1 -type d ! -path "$LIBS" -exec rm -rf {} +
}

# broker_pid: PID of the broker `up` started from this repo's .data, if it is running.
broker_pid() {
  local pid
  [ -f "$KPID" ] || return 1
  pid="$(cat "$KPID" 2>/dev/null || true)"
  if pid_cmdline_has "$pid" "kafka.Kafka $KCONF"; then echo "$pid"; return 0; fi
  return 1
}

write_config() {
  mkdir -p "$KDIR"
  cat >"$KCONF.tmp" <<EOF
# Managed by deploy/local/kafka.sh: edits are overwritten by the next \`make up\`.
# Single node, KRaft, combined broker + controller, static quorum.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL

# SASL_SSL: SCRAM users live in the cluster metadata (kafka-storage format --add-scram, or
# kafka-configs --alter --entity-type users); the certificate comes from $TLS_DIR.
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/server.p12
listener.name.sasl_ssl.ssl.keystore.password=$TLS_STORE_PASSWORD
listener.name.sasl_ssl.ssl.key.password=$TLS_STORE_PASSWORD
ssl.enabled.protocols=TLSv1.3,TLSv1.2
log.dirs=$KDATA

# Topics are created explicitly by the services and tests.
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
delete.topic.enable=true

# Internal topics on a single node.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# After a crash (kill -9) the restarted broker waits for its old registration's session to
# expire before it is unfenced: 9 s by default, 4 s here.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000

log.retention.hours=168
log.segment.bytes=1073741824
EOF
  # Kafka's own tools on the SASL_SSL listener: --command-config $KCLIENT.
  cat >"$KCLIENT.tmp" <<EOF
# Managed by deploy/local/kafka.sh: kafka-topics --bootstrap-server $KAFKA_SASL_BROKERS --command-config $KCLIENT --list
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_SASL_USER" password="$KAFKA_SASL_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.crt
EOF
  chmod 0600 "$KCLIENT.tmp"
  mv "$KCLIENT.tmp" "$KCLIENT"
  if [ -f "$KCONF" ] && cmp -s "$KCONF.tmp" "$KCONF"; then rm -f "$KCONF.tmp"; return 1; fi
  mv "$KCONF.tmp" "$KCONF"
  return 0
}

# scram_arg MECHANISM: the credential of the SASL user for kafka-storage / kafka-configs.
scram_arg() { printf '%s=[name=%s,password=%s]' "$1" "$KAFKA_SASL_USER" "$KAFKA_SASL_PASSWORD"; }

cluster_id() { sed -n 's/^cluster.id=//p' "$KDATA/meta.properties" 2>/dev/null; }

# scram_mark: what $KSCRAM_MARK holds once the user exists in this cluster's metadata (a new
# format, user or password changes it).
scram_mark() { printf '%s %s %s\n' "$(cluster_id)" "$KAFKA_SASL_USER" "$(printf '%s' "$KAFKA_SASL_PASSWORD" | sha256sum | cut -c1-16)"; }

# ensure_scram_user: a data dir formatted before the SASL listener existed (or with another
# password) gets the SCRAM user through the running broker; idempotent (alter replaces it).
ensure_scram_user() {
  [ -f "$KSCRAM_MARK" ] && [ "$(cat "$KSCRAM_MARK")" = "$(scram_mark)" ] && return 0
  log "adding SCRAM user $KAFKA_SASL_USER (SCRAM-SHA-512, SCRAM-SHA-256)"
  local mech
  for mech in SCRAM-SHA-512 SCRAM-SHA-256; do # one credential per request
    if ! timeout 120 "$KAFKA_HOME_DIR/bin/kafka-configs" --bootstrap-server "$KAFKA_BROKERS" --alter \
          --entity-type users --entity-name "$KAFKA_SASL_USER" \
          --add-config "$mech=[password=$KAFKA_SASL_PASSWORD]" >"$KDIR/scram.log" 2>&1 8>&- 9>&-; then
      tail_log "$KDIR/scram.log"
      die "could not add SCRAM user $KAFKA_SASL_USER (full output: $KDIR/scram.log)"
    fi
  done
  scram_mark >"$KSCRAM_MARK"
}

# check_sasl: Kafka's own client logs in over SASL_SSL (SCRAM-SHA-512) and lists topics. A
# user just added with kafka-configs reaches the broker through the metadata log a moment
# later, so a refusal is retried for a while. A refusal that lasts gets the user's credentials
# written again, once: Kafka 4.1.2 was seen to lose the SCRAM-SHA-512 credential of the user
# `kafka-storage format --add-scram` created when, after a restart, it replayed the deletion
# of another user's credential (TestSecurityEndToEndAndPlantedSecrets used to delete its own).
check_sasl() {
  local deadline=$((SECONDS + 30)) rewritten=0
  until timeout 60 "$KAFKA_HOME_DIR/bin/kafka-topics" --bootstrap-server "$KAFKA_SASL_BROKERS" \
        --command-config "$KCLIENT" --list >/dev/null 2>"$KDIR/sasl-check.err" 8>&- 9>&-; do
    if [ $rewritten = 0 ] && [ $SECONDS -ge $((deadline - 20)) ] && grep -q "invalid credentials" "$KDIR/sasl-check.err"; then
      warn "user $KAFKA_SASL_USER is refused over SASL_SSL; writing its SCRAM credentials again"
      rm -f "$KSCRAM_MARK"
      ensure_scram_user
      rewritten=1
      deadline=$((SECONDS + 30))
      continue
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail_log "$KDIR/sasl-check.err"
      die "the SASL_SSL listener $KAFKA_SASL_BROKERS does not accept user $KAFKA_SASL_USER; see $KLOG (try 'make down && make up')"
    fi
    sleep 2
  done
}

format_storage() {
  [ -f "$KDATA/meta.properties" ] && return 0
  if [ -d "$KDATA" ] && [ -n "$(ls -A "$KDATA" 2>/dev/null)" ]; then
    warn "$KDATA has no meta.properties (never fully formatted); re-creating it"
    rm -rf "$KDATA"
  fi
  mkdir -p "$KDATA"
  # A cluster id is a base64url UUID (22 chars); one starting with '-' would read as a flag.
  local id
  id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  while [ "${id:0:1}" = "-" ]; do id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"; done
  log "formatting storage $KDATA (cluster id $id)"
  if ! "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dlog4j2.configurationFile="$KAFKA_HOME_DIR/tools-log4j2.xml" \
        -cp "$LIBS/*" kafka.tools.StorageTool format -t "$id" -c "$KCONF" \
        --add-scram "$(scram_arg SCRAM-SHA-512)" --add-scram "$(scram_arg SCRAM-SHA-256)" \
        >"$KDIR/format.log" 2>&1; then
    tail_log "$KDIR/format.log"
    rm -rf "$KDATA"
    die "storage format failed (full output: $KDIR/format.log)"
  fi
  scram_mark >"$KSCRAM_MARK"
}

# api_ok: the broker answers a Kafka ApiVersions request (v0) on 127.0.0.1:KAFKA_PORT within
# 3 s: a cheap protocol-level liveness check (a hung or SIGSTOPped JVM still accepts TCP
# connections in the kernel, but does not answer). Request: size 12, api key 18, version 0,
# correlation id 0x53535353, client id "ss"; response: size, correlation id, error code 0.
api_ok() {
  local out
  # shellcheck disable=SC2016  # $1 expands in the inner shell
  out="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x0c\x00\x12\x00\x00\x53\x53\x53\x53\x00\x02ss" >&3
    head -c 10 <&3' _ "$KAFKA_PORT" 2>/dev/null | od -An -tx1 | tr -d ' \n')" || true
  [ "${out:8:12}" = "535353530000" ]
}

# answers: the broker serves metadata (a topic list) on 127.0.0.1:KAFKA_PORT.
answers() {
  timeout 60 "$KAFKA_HOME_DIR/bin/kafka-topics" --bootstrap-server "$KAFKA_BROKERS" --list \
    >/dev/null 2>"$KDIR/readiness.err" 8>&- 9>&-
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + UP_TIMEOUT))
  # 1) the broker answers ApiVersions, 2) a metadata request (topic list) succeeds.
  until api_ok; do
    if ! pid_alive "$pid"; then
      tail_log "$KOUT"; tail_log "$KLOG"
      rm -f "$KPID"
      die "broker exited while starting; see $KLOG and $KOUT"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail_log "$KLOG"
      die "pid $pid is running but does not answer on 127.0.0.1:$KAFKA_PORT after ${UP_TIMEOUT}s; see $KLOG (try 'make down && make up')"
    fi
    sleep 0.5
  done
  until answers; do
    if ! pid_alive "$pid"; then
      tail_log "$KOUT"; tail_log "$KLOG"
      rm -f "$KPID"
      die "broker exited while starting; see $KLOG and $KOUT"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail_log "$KDIR/readiness.err"; tail_log "$KLOG"
      die "pid $pid accepts connections but does not answer metadata requests after ${UP_TIMEOUT}s; see $KLOG (try 'make down && make up')"
    fi
    sleep 1
  done
}

start_broker() {
  log "starting Kafka $(cat "$LIBS/.complete") on $KAFKA_BROKERS (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, log: $KLOG)"
  : >"$KOUT"
  # setsid: the broker must outlive the shell (and process group) that ran `make up`.
  # 8>&- 9>&-: it must not inherit our lock descriptors (it would hold the lock forever).
  # The inner shell records its own PID, then becomes java (exec), so the PID file names the
  # broker itself.
  # shellcheck disable=SC2086,SC2016  # word-split heap opts; $$/$1 expand in the inner shell
  (cd "$KDIR" && exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KPID" \
    "$JAVA" $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$KDIR" \
    -Djava.awt.headless=true -Dkafka.logs.dir="$KDIR" \
    -Dlog4j2.configurationFile="$KAFKA_HOME_DIR/log4j2.xml" \
    -cp "$LIBS/*" kafka.Kafka "$KCONF" \
    </dev/null >>"$KOUT" 2>&1 8>&- 9>&-) &
  local deadline=$((SECONDS + 10)) pid=""
  while [ $SECONDS -lt $deadline ]; do
    pid="$(cat "$KPID" 2>/dev/null || true)"
    pid_cmdline_has "$pid" "kafka.Kafka $KCONF" && break
    sleep 0.1
  done
  pid_alive "$pid" || { tail_log "$KOUT"; die "broker did not start; see $KOUT"; }
  STARTED_PID="$pid"
}

cmd_up() {
  with_lock kafka
  ensure_java
  cmd_fetch
  ensure_tls
  local pid
  if pid="$(broker_pid)"; then
    if write_config; then
      warn "configuration changed; the running broker keeps the old settings until 'make down && make up'"
    fi
    if api_ok; then
      log "already running (pid $pid, $KAFKA_BROKERS)"
    else
      log "pid $pid is running but not answering yet; waiting up to ${UP_TIMEOUT}s"
      wait_ready "$pid"
      log "ready: pid $pid, $KAFKA_BROKERS"
    fi
    ensure_scram_user
    if ! tcp_open "$KAFKA_SASL_PORT"; then
      warn "no SASL_SSL listener on $KAFKA_SASL_BROKERS: the broker was started with an older configuration; run 'make down && make up'"
    fi
    return 0
  fi
  if [ -f "$KPID" ]; then
    log "removing stale $KPID (pid $(cat "$KPID" 2>/dev/null) is not a running broker)"
    rm -f "$KPID"
  fi
  local p
  for p in "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_CONTROLLER_PORT"; do
    require_free_port "$p" "the broker of $KDIR"
  done
  write_config || true
  format_storage
  start_broker
  wait_ready "$STARTED_PID"
  ensure_scram_user
  check_sasl
  log "ready: pid $STARTED_PID, $KAFKA_BROKERS; SASL_SSL: $KAFKA_SASL_BROKERS"
}

cmd_down() {
  with_lock kafka
  stop_service "$KPID" "$KLOG" broker_pid
}

cmd_status() {
  status_row kafka "$KAFKA_PORT" "$KPID" "$KLOG" broker_pid api_ok
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  fetch) ensure_java; cmd_fetch ;;
  *) echo "usage: $0 up|down|status|fetch" >&2; exit 2 ;;
esac
