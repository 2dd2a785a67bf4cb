# Shell helpers shared by bench/run.sh, bench/login/run.sh and bench/storm/run.sh (sourced; needs
# ROOT set to the repository and a `say` function).

need_node20() { # $1: which benchmark
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
    || { echo "bench/$1 needs Node >= 20 (fetch, getSetCookie)" >&2; exit 1; }
}

free_port() { # first port >= $1 that nothing listens on
  local p=$1
  while ss -Hltn "sport = :$p" 2>/dev/null | grep -q . ; do p=$((p + 1)); done
  echo "$p"
}

busy_pct() { # % of all CPU time busy over one second
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# BENCH_WAIT_IDLE=N: wait up to N s until the CPU is at most 15 % busy. Sets WAITED (a note for
# the results: how long it waited, and whether it gave up).
wait_idle() {
  WAITED=""
  [ "${BENCH_WAIT_IDLE:-0}" -gt 0 ] || return 0
  say "waiting up to ${BENCH_WAIT_IDLE}s for the machine to be idle"
  local t0=$SECONDS end=$(( SECONDS + BENCH_WAIT_IDLE )) busy
  while busy=$(busy_pct) && [ "$busy" -gt 15 ] && [ "$SECONDS" -lt "$end" ]; do sleep 4; done
  if [ "$busy" -gt 15 ]; then
    WAITED="; waited the whole ${BENCH_WAIT_IDLE} s (BENCH_WAIT_IDLE) for an idle machine and ran anyway: ${busy} % busy then"
  else
    WAITED="; waited $(( SECONDS - t0 )) s (BENCH_WAIT_IDLE, at most ${BENCH_WAIT_IDLE} s) for an idle machine"
  fi
}

# hubauth for bench/login and bench/storm: HUBAUTH_BIN, or target/release/hubauth built when
# older than the sources. Sets HUBAUTH, BUILD (a label) and HUBAUTH_REV.
hubauth_release() {
  if [ -n "${HUBAUTH_BIN:-}" ]; then
    HUBAUTH="$(cd "$ROOT" && realpath "$HUBAUTH_BIN")"
    local kind
    case "$HUBAUTH" in */release/*) kind="release build" ;; */debug/*) kind="debug build" ;; *) kind="binary" ;; esac
    BUILD="$kind $(realpath --relative-to="$ROOT" "$HUBAUTH" 2>/dev/null || echo "$HUBAUTH"), given by HUBAUTH_BIN"
  else
    HUBAUTH="${CARGO_TARGET_DIR:-$ROOT/target}/release/hubauth"
    if [ ! -x "$HUBAUTH" ] || [ -n "$(find "$ROOT/src" "$ROOT/migrations" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" \
          -newer "$HUBAUTH" -print -quit 2>/dev/null)" ]; then
      say "cargo build --release (hubauth)"
      (cd "$ROOT" && cargo build --release -q) >&2
    fi
    BUILD="release build"
  fi
  [ -x "$HUBAUTH" ] || { echo "no hubauth binary at $HUBAUTH" >&2; exit 1; }
  HUBAUTH_REV="${HUBAUTH_REV:-$(cd "$ROOT" && git describe --always --dirty --exclude '*' 2>/dev/null || echo uncommitted)}"
}

# The bench's own PostgreSQL (scripts/postgres.sh) with a fresh database named $1:
#   BENCH_PG_DIR (default /tmp/hubauth-pg-bench), BENCH_PG_PORT (default: the running server's,
#   else the first free port from 55532), BENCH_PG_DURABLE (default 1: fsync and
#   synchronous_commit on). Sets PG_DIR PG_PORT PG_DB PG_DURABLE PG_STARTED PG_CA PG_PID
#   PG_VERSION PG_SETTINGS and PG_URL (without sslmode). pg_cleanup drops the database and stops
#   the server if this run started it.
pg() { HUBAUTH_PG_DIR="$PG_DIR" bash "$ROOT/scripts/postgres.sh" psql -X -q -v ON_ERROR_STOP=1 "$@"; }
pg_start() {
  PG_DB="$1"
  PG_DIR="${BENCH_PG_DIR:-/tmp/hubauth-pg-bench}"
  PG_DURABLE="${BENCH_PG_DURABLE:-1}"
  if [ -n "${BENCH_PG_PORT:-}" ]; then PG_PORT="$BENCH_PG_PORT"
  elif [ -f "$PG_DIR/postmaster.pid" ] && PG_PORT=$(sed -n 4p "$PG_DIR/postmaster.pid") && [ -n "$PG_PORT" ]; then :
  else PG_PORT=$(free_port 55532); fi
  say "PostgreSQL ($PG_DIR, port $PG_PORT, durable=$PG_DURABLE)"
  local env
  env=$(HUBAUTH_PG_DIR="$PG_DIR" HUBAUTH_PG_PORT="$PG_PORT" HUBAUTH_PG_DURABLE="$PG_DURABLE" \
    bash "$ROOT/scripts/postgres.sh" start)
  eval "$env"
  PG_STARTED="$HUBAUTH_PG_STARTED"
  PG_CA="$HUBAUTH_TEST_POSTGRES_CA"
  pg -c "CREATE DATABASE $PG_DB OWNER hubauth"
  PG_SETTINGS=$(pg -At -c "select string_agg(name || '=' || setting, ', ' order by name) from pg_settings where name in ('fsync','synchronous_commit','full_page_writes','wal_sync_method','shared_buffers','max_connections')")
  PG_VERSION=$(pg -At -c "show server_version" | cut -d' ' -f1)
  PG_PID=$(sed -n 1p "$PG_DIR/postmaster.pid")
  PG_URL="postgres://hubauth:hubauth-test@127.0.0.1:$PG_PORT/$PG_DB"
}
pg_cleanup() {
  [ -n "${PG_DB:-}" ] || return 0
  pg -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" 2>/dev/null || true
  if [ "${PG_STARTED:-0}" = 1 ]; then HUBAUTH_PG_DIR="$PG_DIR" bash "$ROOT/scripts/postgres.sh" stop || true; fi
}
