#!/usr/bin/env bash
# Local PostgreSQL for development and tests: its own cluster under <repo>/.data/postgres,
# wal_level=logical, port 15432 on 127.0.0.1, role/database starstream (password starstream,
# superuser, plaintext allowed) and the least-privilege role starstream_capture (password
# capture-secret; LOGIN REPLICATION, no superuser; TLS only: ssl=on with the local CA of
# tls.sh, pg_hba hostssl + scram-sha-256).
#
#   deploy/local/postgres.sh up|down|status
#
# Idempotent: `up` on a running cluster only checks it; a stale postmaster.pid left by a crash
# is removed; `down` stops the cluster in this repo's .data and nothing else.
set -euo pipefail
SVC=postgres
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=deploy/local/tls.sh
. "$LOCAL_DIR/tls.sh"

PG_ROOT="$DATA/postgres"
PGDATA_DIR="$PG_ROOT/data"
PG_LOG="$PG_ROOT/postgres.log"
PG_SOCKDIR="$PG_ROOT/run"
# A unix socket path is limited to 107 bytes: a repo in a deep directory falls back to /tmp.
if [ $(( ${#PG_SOCKDIR} + 16 )) -gt 100 ]; then
  PG_SOCKDIR="/tmp/starstream-pg-$(printf '%s' "$ROOT" | md5sum | cut -c1-10)"
fi

# The server must not run as root (initdb refuses): as root we run it as the `postgres` OS
# user; as any other user, as that user.
if is_root; then PG_OS_USER=postgres; else PG_OS_USER="$(id -un)"; fi

# as_pg CMD...: run a command as the server's OS user, from a directory it can read, without
# our lock file descriptors (a postmaster inheriting them would hold the lock forever).
as_pg() {
  if is_root; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@" 8>&- 9>&-)
  else
    (cd / && "$@" 8>&- 9>&-)
  fi
}

# find_pg_bin: newest installed PostgreSQL server binaries (Debian layout), or $PG_BINDIR.
find_pg_bin() {
  local d
  if [ -n "${PG_BINDIR:-}" ]; then
    [ -x "$PG_BINDIR/initdb" ] && [ -x "$PG_BINDIR/postgres" ] && { echo "$PG_BINDIR"; return 0; }
    return 1
  fi
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  if command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir)"
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  fi
  d="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"
  [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  return 1
}

ensure_pg_bin() {
  if ! PGBIN="$(find_pg_bin)"; then
    apt_install postgresql
    PGBIN="$(find_pg_bin)" || die "postgresql installed but initdb/postgres not found under /usr/lib/postgresql/*/bin"
  fi
}

ensure_os_user() {
  is_root || return 0
  id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
  log "creating system user $PG_OS_USER"
  if command -v useradd >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
      --shell /bin/bash "$PG_OS_USER"
  else
    adduser --system --group --home /var/lib/postgresql --no-create-home --shell /bin/bash "$PG_OS_USER"
  fi
}

# ensure_dirs: .data/postgres owned by the server user, and reachable by it even when the repo
# lives under a root-only path (then only the traverse bit is added to the blocking ancestors).
ensure_dirs() {
  mkdir -p "$PG_ROOT"
  if is_root; then
    chown "$PG_OS_USER:" "$PG_ROOT"
    chmod 0755 "$PG_ROOT"
    if ! as_pg test -x "$PG_ROOT" 2>/dev/null; then
      local d="" part
      IFS=/ read -r -a parts <<<"${PG_ROOT#/}"
      for part in "${parts[@]}"; do
        d="$d/$part"
        if ! as_pg test -x "$d" 2>/dev/null; then
          log "granting traverse permission (o+x) on $d so user $PG_OS_USER can reach $PG_ROOT"
          chmod o+x "$d"
        fi
      done
      as_pg test -x "$PG_ROOT" || die "user $PG_OS_USER still cannot reach $PG_ROOT"
    fi
  fi
  as_pg mkdir -p "$PG_SOCKDIR"
  as_pg chmod 0700 "$PG_SOCKDIR"
  as_pg touch "$PG_LOG"
}

# postmaster_pid: PID of the postmaster serving our data dir, if one is running.
# Prints nothing and returns 1 otherwise. A postmaster.pid whose process is gone, or whose
# PID now belongs to some other program, is stale.
postmaster_pid() {
  local pid
  [ -f "$PGDATA_DIR/postmaster.pid" ] || return 1
  pid="$(head -n1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true)"
  if pid_cmdline_has "$pid" "$PGDATA_DIR"; then echo "$pid"; return 0; fi
  return 1
}

# remove_stale_locks: after a crash (kill -9, OOM, reboot) postmaster.pid and the socket lock
# file name a PID that is gone, or is a zombie (PID 1 in containers often does not reap), or now
# belongs to another program. PostgreSQL itself only checks kill(pid, 0), which succeeds for a
# zombie or a foreign process, and then refuses to start: remove them ourselves.
remove_stale_locks() {
  local f pid
  for f in "$PGDATA_DIR/postmaster.pid" "$PG_SOCKDIR/.s.PGSQL.$PG_PORT.lock"; do
    [ -f "$f" ] || continue
    pid="$(head -n1 "$f" 2>/dev/null || true)"
    if ! pid_cmdline_has "$pid" "$PGDATA_DIR"; then
      log "removing stale $f (pid ${pid:-?} is not this cluster's postmaster)"
      rm -f "$f"
      [ "${f%.lock}" != "$f" ] && rm -f "${f%.lock}"
    fi
  done
}

init_cluster() {
  if [ -f "$PGDATA_DIR/PG_VERSION" ]; then return 0; fi
  if [ -d "$PGDATA_DIR" ]; then
    warn "$PGDATA_DIR exists but was never fully initialised; re-creating it"
    rm -rf "$PGDATA_DIR"
  fi
  log "initdb $PGDATA_DIR ($("$PGBIN/postgres" --version))"
  if ! as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$PG_ROOT/initdb.log" 2>&1; then
    tail_log "$PG_ROOT/initdb.log"
    rm -rf "$PGDATA_DIR"
    die "initdb failed (full output: $PG_ROOT/initdb.log)"
  fi
  echo "include_if_exists = 'starstream.conf'   # written by deploy/local/postgres.sh" |
    as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
}

# write_if_changed FILE: stdin replaces FILE (as the server user) when different.
# Returns 0 when the file changed.
write_if_changed() {
  local f="$1" tmp
  tmp="$(mktemp)"
  cat >"$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  as_pg tee "$f" <"$tmp" >/dev/null
  as_pg chmod 0600 "$f"
  rm -f "$tmp"
  return 0
}

write_config() {
  local changed=1
  # The server reads its certificate and key from its data directory (owned by it, key 0600).
  write_if_changed "$PGDATA_DIR/server.crt" <"$TLS_DIR/server.crt" && changed=0
  write_if_changed "$PGDATA_DIR/server.key" <"$TLS_DIR/server.key" && changed=0
  write_if_changed "$PGDATA_DIR/ca.crt" <"$TLS_DIR/ca.crt" && changed=0
  write_if_changed "$PGDATA_DIR/starstream.conf" <<EOF && changed=0
# Managed by deploy/local/postgres.sh: edits are overwritten by the next \`make up\`.
# A dev/test cluster: durability traded for speed (fsync off).
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKDIR'
unix_socket_permissions = 0700
max_connections = 200
password_encryption = scram-sha-256
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'ca.crt'
ssl_min_protocol_version = 'TLSv1.2'

wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
wal_sender_timeout = 60s

fsync = off
full_page_writes = off
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 15min

timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_checkpoints = off
EOF
  write_if_changed "$PGDATA_DIR/pg_hba.conf" <<EOF && changed=0
# Managed by deploy/local/postgres.sh: edits are overwritten by the next \`make up\`.
# $CAPTURE_ROLE connects over TLS only (hostssl); the superuser $PG_USER keeps plaintext for the
# tests that use sslmode=disable. First matching line wins.
# TYPE     DATABASE     USER               ADDRESS        METHOD
local      all          postgres                          peer map=admin
local      all          all                               scram-sha-256
hostssl    all          $CAPTURE_ROLE  127.0.0.1/32   scram-sha-256
hostssl    all          $CAPTURE_ROLE  ::1/128        scram-sha-256
hostssl    replication  $CAPTURE_ROLE  127.0.0.1/32   scram-sha-256
hostssl    replication  $CAPTURE_ROLE  ::1/128        scram-sha-256
hostnossl  all          $CAPTURE_ROLE  127.0.0.1/32   reject
hostnossl  all          $CAPTURE_ROLE  ::1/128        reject
hostnossl  replication  $CAPTURE_ROLE  127.0.0.1/32   reject
hostnossl  replication  $CAPTURE_ROLE  ::1/128        reject
host       all          all                127.0.0.1/32   scram-sha-256
host       all          all                ::1/128        scram-sha-256
host       replication  all                127.0.0.1/32   scram-sha-256
host       replication  all                ::1/128        scram-sha-256
EOF
  write_if_changed "$PGDATA_DIR/pg_ident.conf" <<EOF && changed=0
# Managed by deploy/local/postgres.sh: OS users allowed to connect as the postgres role
# through the private unix socket.
# MAPNAME  SYSTEM-USERNAME  PG-USERNAME
admin      $PG_OS_USER      postgres
admin      root             postgres
EOF
  return $changed
}

# reload_config: a running server picks up pg_hba.conf, the TLS files and most settings on
# reload; the few that need a restart (port, wal_level, ...) are named.
reload_config() {
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -s reload || die "pg_ctl reload failed; see $PG_LOG"
  sleep 1
  local pending
  pending="$(as_pg "$PGBIN/psql" -X -A -t -q -h "$PG_SOCKDIR" -p "$PG_PORT" -U postgres -d postgres \
    -c "SELECT string_agg(name, ', ') FROM pg_settings WHERE pending_restart" 2>/dev/null || true)"
  if [ -n "$pending" ]; then
    warn "configuration changed; reloaded, but $pending keep their old values until 'make down && make up'"
  else
    log "configuration changed; reloaded (TLS, pg_hba and settings are live)"
  fi
}

# pg_ready: the server accepts TCP connections on 127.0.0.1:PG_PORT.
pg_ready() {
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1
}

wait_ready() {
  local deadline=$((SECONDS + UP_TIMEOUT)) pid
  until pg_ready; do
    if ! pid="$(postmaster_pid)"; then
      tail_log "$PG_LOG"
      die "server exited while starting; see $PG_LOG"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail_log "$PG_LOG"
      die "pid $pid is running but not accepting connections on 127.0.0.1:$PG_PORT after ${UP_TIMEOUT}s; see $PG_LOG (try 'make down && make up')"
    fi
    sleep 0.5
  done
}

start_server() {
  local attempt
  for attempt in 1 2 3; do
    log "starting on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    if as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$UP_TIMEOUT" -s start; then
      return 0
    fi
    # After a kill -9 of the postmaster its orphaned backends may hold the old shared memory
    # for a moment: wait for them and retry.
    if [ $attempt -lt 3 ] && tail -n 20 "$PG_LOG" | grep -q 'pre-existing shared memory block'; then
      log "old backends still hold shared memory; retrying in 3s"
      sleep 3
      continue
    fi
    break
  done
  tail_log "$PG_LOG"
  die "pg_ctl start failed; see $PG_LOG"
}

bootstrap_roles() {
  as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKDIR" -p "$PG_PORT" -U postgres \
    -d postgres >/dev/null <<EOF || die "could not create role/database $PG_USER (see output above)"
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER;
  END IF;
END
\$\$;
ALTER ROLE $PG_USER WITH LOGIN SUPERUSER REPLICATION PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB')\gexec
EOF
  # The least-privilege capture role: it may log in, replicate, read what it captures and write
  # its own tables (state, progress, signal), nothing else. The admin ($PG_USER) owns the captured
  # tables, so it creates capture's own ones (owned by the role) and the publication
  # (CREATE PUBLICATION needs table ownership) beforehand.
  as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKDIR" -p "$PG_PORT" -U postgres \
    -d "$PG_DB" >/dev/null <<EOF || die "could not create role $CAPTURE_ROLE (see output above)"
SET client_min_messages = warning;
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$CAPTURE_ROLE') THEN
    CREATE ROLE $CAPTURE_ROLE;
  END IF;
END
\$\$;
ALTER ROLE $CAPTURE_ROLE WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
  PASSWORD '$CAPTURE_PASSWORD';
GRANT CONNECT ON DATABASE $PG_DB TO $CAPTURE_ROLE;
-- Capture's state table (capture/slot.go creates the same when it may; keep them in sync).
CREATE TABLE IF NOT EXISTS public.starstream_capture_state (
  slot_name        text PRIMARY KEY,
  publication      text NOT NULL,
  consistent_lsn   pg_lsn,
  snapshot_done    boolean NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL DEFAULT now(),
  snapshot_done_at timestamptz
);
-- Snapshot/backfill progress and the DBLog signal table (capture/progress.go). The capture role
-- owns its three bookkeeping tables, so it adds the columns a newer starstream needs itself.
CREATE TABLE IF NOT EXISTS public.starstream_capture_state_progress (
  slot_name     text NOT NULL,
  job           text NOT NULL,
  table_name    text NOT NULL,
  snapshot_lsn  pg_lsn,
  seq_base      int8 NOT NULL DEFAULT 0,
  rows_done     int8 NOT NULL DEFAULT 0,
  exported_rows int8 NOT NULL DEFAULT 0,
  pending_lsn   pg_lsn,
  last_key      text[],
  done          boolean NOT NULL DEFAULT false,
  error         text,
  started_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (slot_name, job, table_name)
);
CREATE TABLE IF NOT EXISTS public.starstream_signal (
  id         bigserial PRIMARY KEY,
  slot_name  text NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('backfill', 'low', 'high')),
  table_name text,
  chunk      text,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.starstream_capture_state OWNER TO $CAPTURE_ROLE;
ALTER TABLE public.starstream_capture_state_progress OWNER TO $CAPTURE_ROLE;
ALTER TABLE public.starstream_signal OWNER TO $CAPTURE_ROLE;
-- Dev-stack convenience: what $PG_USER creates later (the shop schema that 'starstream seed'
-- makes, test schemas) is readable by capture. In production grant SELECT per captured table.
ALTER DEFAULT PRIVILEGES FOR ROLE $PG_USER GRANT USAGE ON SCHEMAS TO $CAPTURE_ROLE;
ALTER DEFAULT PRIVILEGES FOR ROLE $PG_USER GRANT SELECT ON TABLES TO $CAPTURE_ROLE;
EOF
}

check_dsn() {
  local out
  out="$("$PGBIN/psql" -X -A -t -c 'SHOW wal_level' "$PG_DSN" 2>&1)" ||
    die "cannot connect with $PG_DSN: $out (log: $PG_LOG)"
  [ "$out" = logical ] || die "wal_level is '$out', expected 'logical'; restart with 'make down && make up'"
  out="$("$PGBIN/psql" -X -A -t -c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' \
    "$PG_CAPTURE_DSN" 2>&1)" || die "cannot connect over TLS as $CAPTURE_ROLE: $out (log: $PG_LOG)"
  [ "$out" = t ] || die "the $CAPTURE_ROLE connection is not encrypted; restart with 'make down && make up'"
}

cmd_up() {
  with_lock postgres
  ensure_pg_bin
  ensure_os_user
  ensure_dirs
  local pid started=0
  ensure_tls
  if pid="$(postmaster_pid)"; then
    local running_port
    running_port="$(sed -n 4p "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true)"
    if [ -n "$running_port" ] && [ "$running_port" != "$PG_PORT" ]; then
      die "the cluster in $PGDATA_DIR runs on port $running_port, not $PG_PORT (the port changes only at a restart): run 'make down && make up'"
    fi
    if write_config; then
      reload_config
    fi
    if pg_ready; then
      log "already running (pid $pid, 127.0.0.1:$PG_PORT)"
    else
      log "pid $pid is running but not accepting connections yet; waiting up to ${UP_TIMEOUT}s"
      wait_ready
    fi
  else
    remove_stale_locks
    require_free_port "$PG_PORT" "this repo's cluster in $PGDATA_DIR"
    init_cluster
    write_config || true
    start_server
    wait_ready
    started=1
  fi
  bootstrap_roles
  check_dsn
  pid="$(postmaster_pid || echo '?')"
  if [ $started = 1 ]; then
    log "ready: pid $pid, ${PG_DSN/:${PG_PASSWORD}@/:***@}; TLS: ${PG_CAPTURE_DSN/:${CAPTURE_PASSWORD}@/:***@} (passwords: deploy/local/env.sh)"
  fi
}

cmd_down() {
  with_lock postgres
  local pid
  if ! [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    log "not running"
    return 0
  fi
  if ! pid="$(postmaster_pid)"; then
    remove_stale_locks
    log "not running"
    return 0
  fi
  ensure_pg_bin
  log "stopping (pid $pid)"
  if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t "$DOWN_TIMEOUT" -s stop; then
    warn "fast shutdown did not finish in ${DOWN_TIMEOUT}s; using immediate shutdown"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 30 -s stop ||
      die "could not stop pid $pid; see $PG_LOG"
  fi
  # pg_ctl returns once postmaster.pid is gone; make sure the process is too.
  local deadline=$((SECONDS + 10))
  while pid_alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  log "stopped"
}

cmd_status() {
  local pid state
  PGBIN="$(find_pg_bin || true)"
  if pid="$(postmaster_pid)"; then
    if [ -n "$PGBIN" ] && pg_ready; then state="running"; else state="running (not accepting connections)"; fi
    printf '%-10s %-38s %-6s %-8s %s\n' postgres "$state" "$PG_PORT" "$pid" "$PG_LOG"
  elif [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    printf '%-10s %-38s %-6s %-8s %s\n' postgres "stopped (stale pid file)" "$PG_PORT" "-" "$PG_LOG"
  else
    printf '%-10s %-38s %-6s %-8s %s\n' postgres "stopped" "$PG_PORT" "-" "$PG_LOG"
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
