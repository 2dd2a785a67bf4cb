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
source "$ROOT/bench/lib.sh"

need_node20 login

hubauth_release
wait_idle

say "logins through each connector (fake upstreams, ${RTT_MS:-50} ms RTT)"
HUBAUTH_BIN="$HUBAUTH" HUBAUTH_REV="$HUBAUTH_REV" HUBAUTH_BUILD="$BUILD" \
  WORK="$HERE/work" OUT="$HERE/RESULTS.md" node "$HERE/login.mjs"
