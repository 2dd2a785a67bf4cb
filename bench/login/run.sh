#!/usr/bin/env bash
# hubauth full-login latency through each redirect connector, against fake upstreams with a fixed
# round-trip time (bench/login/fakes.mjs), and the upstream requests each login makes.
#
#   bench/login/run.sh                 # ~1 min once hubauth is built; prints the table, rewrites RESULTS.md
#   LOGINS=100 bench/login/run.sh      # more logins per connector (default 30, after 1 cold login)
#   RTT_MS=100 bench/login/run.sh      # another upstream round-trip time (default 50 ms)
#   CONNECTORS=github,canvas bench/login/run.sh
#   HUBAUTH_BIN=target/debug/hubauth HUBAUTH_REV=abc1234 bench/login/run.sh   # a given binary, no build
#   BENCH_WAIT_IDLE=300 bench/login/run.sh   # first wait (up to 300 s) until the CPU is mostly idle
#
# Needs Node >= 20 (only its built-ins) and, unless HUBAUTH_BIN is given, cargo: hubauth is built
# with `cargo build --release` when target/release/hubauth is older than the sources.
# Scratch output (config, hubauth log, logins.jsonl) goes to bench/login/work/ (git-ignored).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
say() { printf '\n== %s\n' "$*" >&2; }

node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || { echo "bench/login needs Node >= 20 (fetch, getSetCookie)" >&2; exit 1; }

if [ -n "${HUBAUTH_BIN:-}" ]; then
  HUBAUTH="$(cd "$ROOT" && realpath "$HUBAUTH_BIN")"
  case "$HUBAUTH" in */release/*) kind="release build" ;; */debug/*) kind="debug build" ;; *) kind="binary" ;; esac
  BUILD="$kind $(realpath --relative-to="$ROOT" "$HUBAUTH" 2>/dev/null || echo "$HUBAUTH"), given by HUBAUTH_BIN"
else
  HUBAUTH="${CARGO_TARGET_DIR:-$ROOT/target}/release/hubauth"
  stale=1
  if [ -x "$HUBAUTH" ] && [ -z "$(find "$ROOT/src" "$ROOT/migrations" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" \
        -newer "$HUBAUTH" -print -quit 2>/dev/null)" ]; then
    stale=0
  fi
  if [ "$stale" = 1 ]; then
    say "cargo build --release (hubauth)"
    (cd "$ROOT" && cargo build --release -q) >&2
  fi
  BUILD="release build"
fi
[ -x "$HUBAUTH" ] || { echo "no hubauth binary at $HUBAUTH" >&2; exit 1; }
HUBAUTH_REV="${HUBAUTH_REV:-$(cd "$ROOT" && git describe --always --dirty --exclude '*' 2>/dev/null || echo uncommitted)}"

busy_pct() { # % of all CPU time busy over one second
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
if [ "${BENCH_WAIT_IDLE:-0}" -gt 0 ]; then
  say "waiting up to ${BENCH_WAIT_IDLE}s for the machine to be idle"
  end=$(( SECONDS + BENCH_WAIT_IDLE ))
  while [ "$(busy_pct)" -gt 15 ] && [ "$SECONDS" -lt "$end" ]; do sleep 4; done
fi

say "logins through each connector (fake upstreams, ${RTT_MS:-50} ms RTT)"
HUBAUTH_BIN="$HUBAUTH" HUBAUTH_REV="$HUBAUTH_REV" HUBAUTH_BUILD="$BUILD" \
  WORK="$HERE/work" OUT="$HERE/RESULTS.md" node "$HERE/login.mjs"
