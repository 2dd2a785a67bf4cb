#!/usr/bin/env bash
# A throw-away PostgreSQL server for hubauth's tests (Debian's binaries, no systemd, no cluster
# manager; never touches the distribution's default cluster 15/main).
#
#   eval "$(bash scripts/postgres.sh start)"   # idempotent; prints only `export` lines on stdout:
#        HUBAUTH_TEST_POSTGRES_URL  postgres://hubauth:hubauth-test@127.0.0.1:PORT/postgres
#        HUBAUTH_TEST_POSTGRES_CA   PEM CA that signed the server certificate (CN=localhost,
#                                   SAN DNS:localhost, IP:127.0.0.1), for sslmode=verify-full
#        HUBAUTH_PG_STARTED         1 if this call started the server, 0 if it reused a running one
#   bash scripts/postgres.sh stop              # fast shutdown if running; keeps the data dir
#   bash scripts/postgres.sh psql [ARGS...]    # psql as the superuser `postgres` over the socket
#
# Env: HUBAUTH_PG_DIR (data dir, default /tmp/hubauth-pg; also holds tls/, server.log and the
# unix socket), HUBAUTH_PG_PORT (default 55432; listens on 127.0.0.1 only).
# Role `hubauth` / password `hubauth-test` (LOGIN CREATEDB: tests create a database each),
# scram-sha-256 over TCP. Durability is off (fsync etc.): the data is disposable.
# HUBAUTH_PG_DURABLE=1 keeps PostgreSQL's durable defaults instead (fsync, synchronous_commit,
# full_page_writes on: a commit returns once its WAL is on disk), for benchmarks (bench/run.sh).
# It is written into the config on every start: start again without it and durability is off.
# Works as root (the server then runs as the `postgres` system user) and as a normal user.
set -euo pipefail

DIR="${HUBAUTH_PG_DIR:-/tmp/hubauth-pg}"
PORT="${HUBAUTH_PG_PORT:-55432}"
ROLE=hubauth
PASSWORD=hubauth-test
MARKER=".hubauth-test-cluster"   # proves a directory is ours before we ever delete it

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { printf '[postgres] error: %s\n' "$*" >&2; exit 1; }

case "$DIR" in /*) ;; *) DIR="$(pwd)/$DIR" ;; esac
DIR="${DIR%/}"
case "$PORT" in ''|*[!0-9]*) die "HUBAUTH_PG_PORT must be a port number, got '$PORT'" ;; esac

# Newest installed server version (sort -V: "9.6" < "15"); Debian puts them in /usr/lib/postgresql.
BIN="$(printf '%s\n' /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)"
BIN="${BIN%/pg_ctl}"
find_bins() {
  if [ ! -x "$BIN/initdb" ] || [ ! -x "$BIN/pg_ctl" ] || [ ! -x "$BIN/postgres" ]; then
    die "no PostgreSQL server in /usr/lib/postgresql/*/bin (install the Debian package \`postgresql\`: bash scripts/install-test-deps.sh)"
  fi
  VERSION="$(basename "$(dirname "$BIN")")"
}

# postgres refuses to run as root: as root, run server tools as the `postgres` system user.
if [ "$(id -u)" -eq 0 ]; then
  PGUSER_OS=postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  PGUSER_OS="$(id -un)"
  as_pg() { "$@"; }
fi
need_os_user() {
  id -u "$PGUSER_OS" >/dev/null 2>&1 \
    || die "no '$PGUSER_OS' system user (the Debian package \`postgresql\` creates it)"
}

# Single-quote for the shell (export lines) and for postgresql.conf.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
confq() { printf "'%s'" "${1//\'/\'\'}"; }

is_cluster() { [ -f "$DIR/PG_VERSION" ] && [ -f "$DIR/global/pg_control" ]; }
is_running() { is_cluster && as_pg "$BIN/pg_ctl" status -D "$DIR" >/dev/null 2>&1; }
running_port() { sed -n 4p "$DIR/postmaster.pid" 2>/dev/null; }
# A killed server can linger as a zombie until init reaps it; pg_ctl (and postgres' own lock
# check) would take it for alive. Give the reaper a few seconds.
wait_no_zombie() {
  local pid tries=20
  pid="$(sed -n 1p "$DIR/postmaster.pid" 2>/dev/null)" || return 0
  [ -n "$pid" ] || return 0
  while [ "$tries" -gt 0 ]; do
    tries=$((tries - 1))
    [ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = Z ] || return 0
    sleep 0.5
  done
}

# Superuser SQL over the unix socket (trust auth); $1 = port the server currently listens on.
su_psql() {
  local port="$1"; shift
  as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" -U postgres -d postgres "$@"
}

log_tail() {
  if [ -f "$DIR/server.log" ]; then
    log "last lines of $DIR/server.log:"
    tail -n 30 "$DIR/server.log" >&2 || true
  fi
}

# ---------------------------------------------------------------- cluster
init_cluster() {
  if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    # Not a (current-version) cluster: throw it away, but only if it is provably ours.
    if [ -e "$DIR/$MARKER" ] || [ "$DIR" = /tmp/hubauth-pg ]; then
      log "removing unusable data dir $DIR"
      rm -rf "$DIR"
    else
      die "$DIR exists, is not a PostgreSQL $VERSION cluster and not ours; remove it or set HUBAUTH_PG_DIR"
    fi
  fi
  mkdir -p "$DIR"
  if [ "$(id -u)" -eq 0 ]; then chown "$PGUSER_OS:" "$DIR"; fi
  chmod 700 "$DIR"
  # e.g. HUBAUTH_PG_DIR under /root: the postgres user cannot even reach it.
  as_pg test -w "$DIR" -a -x "$DIR" \
    || { rmdir "$DIR" 2>/dev/null || true; die "user '$PGUSER_OS' cannot write $DIR (every parent dir must be traversable); set HUBAUTH_PG_DIR"; }
  log "initdb $DIR (PostgreSQL $VERSION)"
  # Superuser is always `postgres`, whoever runs this; write_config then replaces pg_hba.conf.
  local out
  out="$(as_pg "$BIN/initdb" -D "$DIR" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 2>&1)" \
    || { printf '%s\n' "$out" >&2; die "initdb failed"; }
  as_pg touch "$DIR/$MARKER"
}

# ---------------------------------------------------------------- TLS
# Throw-away CA + server cert for CN=localhost (SAN DNS:localhost, IP:127.0.0.1), so clients can
# use sslmode=verify-full. Regenerated only when missing, broken or about to expire.
tls_ok() {
  local t="$DIR/tls"
  [ -s "$t/ca.crt" ] && [ -s "$t/server.crt" ] && [ -s "$t/server.key" ] || return 1
  openssl verify -purpose sslserver -CAfile "$t/ca.crt" "$t/server.crt" >/dev/null 2>&1 || return 1
  openssl x509 -checkend 86400 -noout -in "$t/server.crt" >/dev/null 2>&1 || return 1
  # key matches the certificate
  [ "$(openssl x509 -noout -pubkey -in "$t/server.crt" 2>/dev/null)" = \
    "$(openssl pkey -pubout -in "$t/server.key" 2>/dev/null)" ]
}

make_tls() {
  command -v openssl >/dev/null 2>&1 || die "openssl not found (install the Debian package \`openssl\`)"
  local t="$DIR/tls" tmp
  tmp="$(mktemp -d)"
  log "generating throw-away CA and server certificate in $t"
  openssl req -x509 -new -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -subj "/CN=hubauth test CA $(uname -n) $(date -u +%Y%m%dT%H%M%SZ)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
  cat >"$tmp/server.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
  openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 825 -sha256 -extfile "$tmp/server.ext" -out "$tmp/server.crt" 2>/dev/null
  rm -rf "$t"
  mkdir -p "$t"
  cp "$tmp/ca.crt" "$tmp/ca.key" "$tmp/server.crt" "$tmp/server.key" "$t/"
  rm -rf "$tmp"
  chmod 755 "$t"; chmod 644 "$t/ca.crt" "$t/server.crt"; chmod 600 "$t/ca.key" "$t/server.key"
  # postgres insists that the key is 0600 and owned by the server's user.
  if [ "$(id -u)" -eq 0 ]; then chown -R "$PGUSER_OS:" "$t"; fi
  tls_ok || die "generated TLS files do not verify (openssl problem?)"
}

# ---------------------------------------------------------------- config
# Rewritten on every start (so config changes reach existing clusters); postgresql.conf just
# includes it. Returns 0 if anything changed.
write_config() {
  local changed=1 conf hba durability
  if [ "${HUBAUTH_PG_DURABLE:-0}" = 1 ]; then
    durability="# HUBAUTH_PG_DURABLE=1: durable commits (the defaults)
fsync = on
synchronous_commit = on
full_page_writes = on
"
  else
    durability="# throw-away data: no durability
fsync = off
synchronous_commit = off
full_page_writes = off
"
  fi
  conf="# Written by scripts/postgres.sh on every start; edits are lost.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = $(confq "$DIR")
unix_socket_permissions = 0700
max_connections = 300
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = 'tls/server.crt'
ssl_key_file = 'tls/server.key'
$durability# everything on stderr, which pg_ctl -l sends to server.log
logging_collector = off
log_destination = 'stderr'
log_min_messages = warning
log_checkpoints = off
"
  hba="# Written by scripts/postgres.sh on every start; edits are lost.
# superuser over the unix socket (the socket dir is the 0700 data dir)
local all postgres trust
# everyone else: password over TCP (plain or TLS; tests use TLS)
host  all all 127.0.0.1/32 scram-sha-256
"
  if [ "$(cat "$DIR/hubauth.conf" 2>/dev/null)" != "${conf%$'\n'}" ]; then
    printf '%s' "$conf" | as_pg tee "$DIR/hubauth.conf" >/dev/null; changed=0
  fi
  if [ "$(cat "$DIR/pg_hba.conf" 2>/dev/null)" != "${hba%$'\n'}" ]; then
    printf '%s' "$hba" | as_pg tee "$DIR/pg_hba.conf" >/dev/null; changed=0
  fi
  if ! grep -qx "include 'hubauth.conf'" "$DIR/postgresql.conf"; then
    printf "\n# hubauth test settings (scripts/postgres.sh)\ninclude 'hubauth.conf'\n" \
      | as_pg tee -a "$DIR/postgresql.conf" >/dev/null
    changed=0
  fi
  return "$changed"
}

# pg_isready over TCP (what the tests use), for at most 30 s.
wait_ready() {
  local deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d postgres -t 2; then return 0; fi
    sleep 0.5
  done
  return 1
}

# ---------------------------------------------------------------- commands
# Runs with stdout sent to stderr (see the dispatch below); leaves the export lines in EXPORTS.
EXPORTS=""
cmd_start() {
  find_bins
  need_os_user
  command -v runuser >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ] || die "runuser not found (util-linux)"
  cd /   # the postgres user may not be allowed into the caller's cwd (e.g. /root)

  local started=0 tls_new=1
  wait_no_zombie
  if is_running; then
    log "reusing server on $DIR (port $(running_port))"
  else
    # Something else (another data dir?) already answers on our port: starting would only fail.
    local rc=0
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2 || rc=$?
    if [ "$rc" -le 1 ]; then   # 0 accepting, 1 starting up / rejecting, 2 nobody answers
      die "another PostgreSQL server already listens on 127.0.0.1:$PORT (not $DIR); stop it or set HUBAUTH_PG_PORT"
    fi
    if ! is_cluster || [ "$(cat "$DIR/PG_VERSION")" != "$VERSION" ]; then init_cluster; fi
  fi
  if ! tls_ok; then make_tls; tls_new=0; fi
  local cfg_new=1
  if write_config; then cfg_new=0; fi

  if is_running; then
    if [ "$cfg_new" -eq 0 ] || [ "$tls_new" -eq 0 ]; then
      log "config or TLS changed: reloading"
      as_pg "$BIN/pg_ctl" reload -D "$DIR" -s
      sleep 0.5
      # Some settings (port, max_connections, ...) only apply after a restart.
      if [ "$(su_psql "$(running_port)" -At -c 'select count(*) from pg_settings where pending_restart')" != 0 ]; then
        log "restarting to apply settings"
        as_pg "$BIN/pg_ctl" restart -D "$DIR" -m fast -w -t 30 -s -l "$DIR/server.log" \
          || { log_tail; die "restart failed"; }
      fi
    fi
  else
    log "starting PostgreSQL $VERSION on 127.0.0.1:$PORT (data $DIR, log $DIR/server.log)"
    # pg_ctl detaches the server (own session, output to the log) and waits until it is up.
    as_pg "$BIN/pg_ctl" start -D "$DIR" -l "$DIR/server.log" -w -t 30 -s \
      || { log_tail; die "PostgreSQL did not start (see log above)"; }
    started=1
  fi
  wait_ready || { log_tail; die "PostgreSQL is not accepting connections on 127.0.0.1:$PORT after 30 s"; }

  # The test role (idempotent: also resets password and attributes).
  su_psql "$PORT" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  ELSE
    ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
END \$\$;
SQL

  # Prove what the tests rely on: password login over verified TLS.
  local url="postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/postgres" ca="$DIR/tls/ca.crt" ssl
  ssl="$(PGPASSWORD="$PASSWORD" PGCONNECT_TIMEOUT=10 "$BIN/psql" -X -At \
          "postgres://$ROLE@127.0.0.1:$PORT/postgres?sslmode=verify-full&sslrootcert=$ca" \
          -c 'select ssl from pg_stat_ssl where pid = pg_backend_pid()' </dev/null 2>&1)" || true
  [ "$ssl" = t ] || { log_tail; die "self-test (TLS + scram login as $ROLE) failed: $ssl"; }
  log "ready: $url (TLS CA $ca)"

  EXPORTS="export HUBAUTH_TEST_POSTGRES_URL=$(shq "$url")
export HUBAUTH_TEST_POSTGRES_CA=$(shq "$ca")
export HUBAUTH_PG_STARTED=$started
"
}

cmd_stop() {
  find_bins
  need_os_user
  cd /
  if is_running; then
    log "stopping server on $DIR"
    as_pg "$BIN/pg_ctl" stop -D "$DIR" -m fast -w -t 30 -s
  else
    log "not running ($DIR)"
  fi
}

cmd_psql() {
  find_bins
  local port
  port="$(running_port)"; port="${port:-$PORT}"
  as_pg env PGHOST="$DIR" PGPORT="$port" PGUSER=postgres PGDATABASE=postgres "$BIN/psql" "$@"
}

case "${1:-}" in
  # Only the export lines may reach stdout (callers eval it). A plain redirection, not
  # `exec 3>&1`: bash keeps the saved stdout close-on-exec, so the detached server never holds
  # the caller's $(...) pipe open.
  start) cmd_start >&2; printf '%s' "$EXPORTS" ;;
  stop) cmd_stop ;;
  psql) shift; cmd_psql "$@" ;;
  *) printf 'usage: %s start|stop|psql [psql args...]\n' "$0" >&2; exit 2 ;;
esac
