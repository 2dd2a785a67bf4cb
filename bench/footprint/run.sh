#!/usr/bin/env bash
# Start-up time and memory of `hubauth serve` and `hubauth demo`, and RSS under the refresh
# benchmark: the figures docs/deployment.md ("Sizing") quotes.
#
#   bench/footprint/run.sh                 # ~1 min once built; prints the table, rewrites its section of bench/RESULTS.md
#   RUNS=15 bench/footprint/run.sh         # more starts per case (default 9; min / median / max are reported)
#   CASES=serve,demo bench/footprint/run.sh   # only the restarts (also: serve-first, demo-first)
#   LOAD=0 bench/footprint/run.sh          # no load phase (no bench/loadgen build)
#   HUBAUTH_BIN=target/release/hubauth HUBAUTH_REV=abc1234 bench/footprint/run.sh   # a given binary, no build
#   BENCH_WAIT_IDLE=300 bench/footprint/run.sh   # first wait (up to 300 s) until the CPU is mostly idle
#
# Needs Node >= 20 (built-ins only) and cargo (hubauth release build when older than the sources;
# bench/loadgen for the load phase). Start-up times are short: other processes on the machine
# show in them, so the load average before and after the run is recorded with the results.
# Scratch output (configs, databases, logs) goes to bench/footprint/work/ (git-ignored).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
say() { printf '\n== %s\n' "$*" >&2; }
source "$ROOT/bench/lib.sh"

need_node20 footprint
hubauth_release

LOADGEN=""
if [ "${LOAD:-1}" = 1 ]; then
  LOADGEN="$ROOT/bench/target/release/hubauth-loadgen"
  if [ -z "${SKIP_BUILD:-}" ]; then
    say "cargo build --release (loadgen)"
    (cd "$ROOT/bench/loadgen" && CARGO_TARGET_DIR="$ROOT/bench/target" cargo build --release --locked -q)
  fi
fi

wait_idle
LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
BUSY_BEFORE=$(busy_pct)
say "starts and idle memory (${RUNS:-9} runs per case)"
SECTION=$(HUBAUTH_BIN="$HUBAUTH" HUBAUTH_REV="$HUBAUTH_REV" HUBAUTH_BUILD="$BUILD" LOADGEN="$LOADGEN" \
  WORK="$HERE/work" NOTE="other load: CPU ${BUSY_BEFORE} % busy just before the run, load average before: ${LOAD_BEFORE}${WAITED} (other processes on these cores lengthen start-up times)" \
  node "$HERE/footprint.mjs")
LOAD_AFTER=$(cut -d" " -f1-3 /proc/loadavg)
SECTION=$(printf '%s\n' "$SECTION" | sed "s|^- other load: \(.*\)$|- other load: \1; load average after: ${LOAD_AFTER}|")
printf '%s\n' "$SECTION"

# bench/RESULTS.md: this section replaced (or appended); bench/run.sh keeps it when it rewrites the rest.
OUT="$ROOT/bench/RESULTS.md"
SECTION="$SECTION" OUT="$OUT" node -e '
const fs = require("fs");
const out = process.env.OUT, section = process.env.SECTION.replace(/\n*$/, "\n");
const old = fs.existsSync(out) ? fs.readFileSync(out, "utf8") : "";
const re = /<!-- footprint:[\s\S]*?<!-- \/footprint -->\n?/;
fs.writeFileSync(out, re.test(old) ? old.replace(re, section) : old.replace(/\n*$/, "\n\n") + section);
'
echo "wrote $OUT (section \"Footprint\")" >&2
