#!/usr/bin/env bash
# hubauth login storm: 1,000 sign-ins at once (the whole browser flow through the `oidc` connector
# against a fake upstream at 50 ms per round trip, and the code exchange) on (a) one hubauth on
# SQLite and (b) two hubauth replicas on one PostgreSQL, each behind HAProxy (round-robin, no
# stickiness). Prints the table and rewrites bench/storm/RESULTS.md.
#
#   bench/storm/run.sh                        # ~1 min once hubauth is built
#   STORM_LOGINS=300 bench/storm/run.sh       # another storm size (default 1000)
#   RTT_MS=100 bench/storm/run.sh             # another upstream round-trip time (default 50 ms)
#   STORM_MODES=pg bench/storm/run.sh         # only one setup (sqlite, pg; default both)
#   HUBAUTH_BIN=target/release/hubauth HUBAUTH_REV=abc1234 bench/storm/run.sh   # a given binary, no build
#   BENCH_WAIT_IDLE=300 bench/storm/run.sh    # first wait (up to 300 s) until the CPU is mostly idle
#   STORM_WARMUP=20                           # warm-up sign-ins per setup (4 at a time)
#   BENCH_PG_DIR=/tmp/hubauth-pg-bench        # the bench's own PostgreSQL (scripts/postgres.sh;
#   BENCH_PG_PORT=55532                       #   started if not running, stopped afterwards only
#                                             #   if this run started it; default port: the running
#                                             #   server's, else the first free from 55532)
#   BENCH_PG_DURABLE=1                        # fsync + synchronous_commit on (0 = test settings)
#   HAPROXY=/usr/sbin/haproxy
#
# Needs Node >= 20 (built-ins only), HAProxy and, for (b), PostgreSQL from Debian; unless
# HUBAUTH_BIN is given, cargo (hubauth is built with `cargo build --release` when stale).
# Scratch output (configs, logs, storm-*.jsonl) goes to bench/storm/work/ (git-ignored).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
say() { printf '\n== %s\n' "$*" >&2; }
source "$ROOT/bench/lib.sh"

need_node20 storm
export HAPROXY="${HAPROXY:-/usr/sbin/haproxy}"
[ -x "$HAPROXY" ] || { echo "no HAProxy at $HAPROXY (Debian package haproxy)" >&2; exit 1; }

hubauth_release
MODES="${STORM_MODES:-sqlite,pg}"
WORK="$HERE/work"
mkdir -p "$WORK"

wait_idle
trap pg_cleanup EXIT INT TERM
case ",$MODES," in
  *,pg,*)
    pg_start "hubauth_storm_$$"
    export STORM_PG_URL="$PG_URL?sslmode=verify-full" STORM_PG_CA="$PG_CA" STORM_PG_PID="$PG_PID"
    export STORM_PG_INFO="PostgreSQL $PG_VERSION (Debian, its own server: scripts/postgres.sh, loopback TCP + TLS verify-full; $PG_SETTINGS)"
    ;;
esac

export BUSY_BEFORE="$(busy_pct)" LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)" WAITED
say "login storm (${STORM_LOGINS:-1000} sign-ins at once; setups: $MODES)"
HUBAUTH_BIN="$HUBAUTH" HUBAUTH_REV="$HUBAUTH_REV" HUBAUTH_BUILD="$BUILD" STORM_MODES="$MODES" \
  WORK="$WORK" OUT="$HERE/RESULTS.md" node "$HERE/storm.mjs"
