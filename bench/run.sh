#!/usr/bin/env bash
# hubauth throughput benchmark, side by side with oidc-provider (npm, v9).
#
#   bench/run.sh                 # full run (~4-6 min once things are built)
#   BENCH_SECS=2 bench/run.sh    # quicker, noisier
#
# Measures authorization_code exchange, refresh_token grant (rotating chain
# per client) and userinfo, at 1/16/64 concurrent keep-alive clients, for
#   hubauth RS256, hubauth ES256, oidc-provider RS256,
# prints a Markdown table and writes bench/RESULTS.md.
#
# Knobs (environment):
#   BENCH_SECS=5          measured seconds per phase (plus BENCH_WARMUP=1 s)
#   BENCH_CONCURRENCY=1,16,64
#   SERVER_CPU=1 LOADGEN_CPU=0   taskset cores (server side / load generator)
#   BENCH_PROFILE=1       profile hubauth with perf (or callgrind) afterwards
#   SKIP_HUBAUTH=1        only the peer (for testing the harness)
#   SKIP_BUILD=1          use existing binaries
#   BENCH_WAIT_IDLE=600   first wait up to this many seconds for the machine to be idle
#   HUBAUTH_BIN=path      benchmark this hubauth binary instead of building one
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
WORK="$BENCH/work"
SECS="${BENCH_SECS:-5}"
WARMUP="${BENCH_WARMUP:-1}"
CONC="${BENCH_CONCURRENCY:-1,16,64}"
# Servers may use every core (hubauth is multi-threaded, oidc-provider runs on one Node thread);
# the load generator is pinned to core 0 and its share is subtracted from the signing bound.
SERVER_CPU="${SERVER_CPU:-0-$(( $(nproc) - 1 ))}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"
PROFILE="${BENCH_PROFILE:-1}"
free_port() { # first port >= $1 that nothing listens on
  local p=$1
  while ss -Hltn "sport = :$p" 2>/dev/null | grep -q . ; do p=$((p + 1)); done
  echo "$p"
}
HUB_PORT="${HUB_PORT:-$(free_port 5556)}"
PEER_PORT="${PEER_PORT:-$(free_port $((HUB_PORT + 1)))}"
PASSWORD="bench-password"
export SECRET="bench-secret-0123456789"

say() { printf '\n== %s\n' "$*" >&2; }

if [ "$(nproc)" -lt 2 ]; then
  echo "warning: fewer than 2 cores; server and load generator share a core" >&2
  SERVER_CPU=0; LOADGEN_CPU=0
fi
PIN_SERVER=(taskset -c "$SERVER_CPU")
SERVER_CORES=$(taskset -c "$SERVER_CPU" nproc)
LOADGEN_SHARES=$(taskset -c "$SERVER_CPU" true && python3 -c "
def cpus(spec):
    out=set()
    for part in spec.split(','):
        a,_,b=part.partition('-'); out.update(range(int(a), int(b or a)+1))
    return out
print(1 if cpus('$LOADGEN_CPU') & cpus('$SERVER_CPU') else 0)")
PIN_LOAD=(taskset -c "$LOADGEN_CPU")

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK"
rm -rf "$WORK"/*

# ------------------------------------------------------------------ builds
if [ -z "${SKIP_BUILD:-}" ]; then
  say "npm ci (oidc-provider)"
  (cd "$BENCH" && npm ci --no-audit --no-fund --loglevel=error) >&2
  say "cargo build --release (loadgen)"
  (cd "$BENCH/loadgen" && CARGO_TARGET_DIR="$BENCH/target" cargo build --release --locked -q)
  if [ -z "${SKIP_HUBAUTH:-}" ] && [ -z "${HUBAUTH_BIN:-}" ]; then
    say "cargo build --release (hubauth)"
    (cd "$ROOT" && cargo build --release -q) >&2
  fi
fi
LOADGEN="$BENCH/target/release/hubauth-loadgen"
HUBAUTH="${HUBAUTH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/hubauth}"

wait_http() { # url pid name
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then
      sleep 0.2
      # Still alive: it is our process answering, not something else on the port.
      if kill -0 "$2" 2>/dev/null; then return 0; fi
    fi
    if ! kill -0 "$2" 2>/dev/null; then echo "$3 exited; log:" >&2; cat "$WORK/$3.log" >&2; return 1; fi
    sleep 0.1
  done
  echo "$3 did not come up at $1; log:" >&2; cat "$WORK/$3.log" >&2; return 1
}

# ------------------------------------------------------------------ quiet machine
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
BUSY_BEFORE=$(busy_pct)
LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ signing bound
say "openssl speed on the server core ($SERVER_CPU)"
sign_rate() { # alg-name -> signs/s on SERVER_CPU
  "${PIN_SERVER[@]}" openssl speed -seconds 3 "$1" 2>/dev/null | awk -v a="$2" '$0 ~ a {print $(NF-1); exit}'
}
RSA_SIGNS=$(sign_rate rsa2048 '^rsa 2048 bits')
EC_SIGNS=$(sign_rate ecdsap256 'ecdsa \\(nistp256\\)')
echo "rsa2048 ${RSA_SIGNS} signs/s, ecdsap256 ${EC_SIGNS} signs/s" >&2

# ------------------------------------------------------------------ servers
if [ -z "${SKIP_HUBAUTH:-}" ]; then
  say "starting hubauth on 127.0.0.1:$HUB_PORT (cpu $SERVER_CPU)"
  HASH=$("$HUBAUTH" hash-password --password "$PASSWORD" | grep -o '\$argon2[^[:space:]"]*' | head -1)
  [ -n "$HASH" ] || { echo "hubauth hash-password printed no argon2 PHC string" >&2; exit 1; }
  cat > "$WORK/hubauth.toml" <<EOF
issuer = "http://127.0.0.1:$HUB_PORT"
listen = "127.0.0.1:$HUB_PORT"

[storage]
url = "sqlite://$WORK/hubauth.db"

[[clients]]
id = "bench-rs"
secret = "$SECRET"
redirect_uris = ["http://127.0.0.1:9/cb"]
id_token_signed_response_alg = "RS256"

[[clients]]
id = "bench-es"
secret = "$SECRET"
redirect_uris = ["http://127.0.0.1:9/cb"]
id_token_signed_response_alg = "ES256"

[[connectors]]
id = "dev"
type = "dev"
name = "Bench users"

[[connectors.users]]
username = "bench"
name = "Bench User"
password_hash = "$HASH"
groups = ["students"]
EOF
  "${PIN_SERVER[@]}" "$HUBAUTH" serve --config "$WORK/hubauth.toml" \
    > "$WORK/hubauth.log" 2>&1 &
  HUB_PID=$!; PIDS+=("$HUB_PID")
  wait_http "http://127.0.0.1:$HUB_PORT/.well-known/openid-configuration" "$HUB_PID" hubauth
fi

say "starting oidc-provider on 127.0.0.1:$PEER_PORT (cpu $SERVER_CPU)"
NODE_ENV=production "${PIN_SERVER[@]}" node "$BENCH/peer/server.mjs" --listen "127.0.0.1:$PEER_PORT" \
  > "$WORK/peer.log" 2>&1 &
PEER_PID=$!; PIDS+=("$PEER_PID")
wait_http "http://127.0.0.1:$PEER_PORT/.well-known/openid-configuration" "$PEER_PID" peer

# ------------------------------------------------------------------ load
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
load() { # base label client alg server-pid
  "${PIN_LOAD[@]}" "$LOADGEN" run --base "$1" --label "$2" --client-id "$3" --secret "$SECRET" \
    --username bench --password "$PASSWORD" --expect-alg "$4" --server-pid "$5" \
    --secs "$SECS" --warmup "$WARMUP" --concurrency "$CONC" --out "$RESULTS"
}
LABELS=()
if [ -z "${SKIP_HUBAUTH:-}" ]; then
  say "load: hubauth RS256"
  load "http://127.0.0.1:$HUB_PORT" "hubauth RS256" bench-rs RS256 "$HUB_PID"; LABELS+=("hubauth RS256")
  say "load: hubauth ES256"
  load "http://127.0.0.1:$HUB_PORT" "hubauth ES256" bench-es ES256 "$HUB_PID"; LABELS+=("hubauth ES256")
fi
say "load: oidc-provider RS256"
load "http://127.0.0.1:$PEER_PORT" "oidc-provider RS256" bench-rs RS256 "$PEER_PID"; LABELS+=("oidc-provider RS256")
kill "$PEER_PID" 2>/dev/null || true

# Signing speed again, now that the servers are idle; keep the better of the
# two (other work on the machine can only make it slower).
RSA2=$(sign_rate rsa2048 '^rsa 2048 bits'); EC2=$(sign_rate ecdsap256 'ecdsa \\(nistp256\\)')
echo "openssl speed again: rsa2048 ${RSA2} signs/s, ecdsap256 ${EC2} signs/s" >&2
RSA_SIGNS=$(awk -v a="${RSA_SIGNS:-0}" -v b="${RSA2:-0}" 'BEGIN { print (a > b ? a : b) }')
EC_SIGNS=$(awk -v a="${EC_SIGNS:-0}" -v b="${EC2:-0}" 'BEGIN { print (a > b ? a : b) }')

# ------------------------------------------------------------------ profile
PROFILE_MD="$WORK/profile.md"
: > "$PROFILE_MD"
if [ -z "${SKIP_HUBAUTH:-}" ] && [ "$PROFILE" = 1 ]; then
  say "profiling hubauth (RS256 refresh + userinfo + code, 16 clients)"
  "$BENCH/profile.sh" "$HUB_PID" "$HUBAUTH" "http://127.0.0.1:$HUB_PORT" "$LOADGEN" "$WORK" \
    "${PIN_LOAD[*]}" "$PASSWORD" > "$PROFILE_MD" || echo "(profiling failed; see $WORK/profile.log)" >> "$PROFILE_MD"
fi

# ------------------------------------------------------------------ report
IFS=,; LABEL_LIST="${LABELS[*]}"; unset IFS
TABLE=$("$LOADGEN" report --in "$RESULTS" --labels "$LABEL_LIST" --peer "oidc-provider RS256" \
  --rs-label "$([ -z "${SKIP_HUBAUTH:-}" ] && echo 'hubauth RS256')" \
  --es-label "$([ -z "${SKIP_HUBAUTH:-}" ] && echo 'hubauth ES256')" \
  --rsa-signs-per-sec "${RSA_SIGNS:-0}" --ec-signs-per-sec "${EC_SIGNS:-0}" \
  --server-cores "$SERVER_CORES" --loadgen-shares-core "$LOADGEN_SHARES")

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
HUB_REV="${HUBAUTH_REV:-$(cd "$ROOT" && git describe --always --dirty --exclude '*' 2>/dev/null || echo "uncommitted")}"
PEER_VER=$(node -p "require('$BENCH/node_modules/oidc-provider/package.json').version")
{
  echo "# hubauth benchmark results"
  echo
  echo "Written by \`bench/run.sh\` — rerun it to refresh this file."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) cores ($CPU_MODEL), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
  echo "- hubauth: \`$HUB_REV\` (release build, sqlite storage); peer: oidc-provider $PEER_VER on Node $(node --version) (NODE_ENV=production, in-memory adapter)"
  echo "- pinning: each server \`taskset -c $SERVER_CPU\` ($SERVER_CORES core(s); both servers are up for the whole run but are loaded one at a time; oidc-provider is one Node thread, hubauth uses a worker per core), load generator \`taskset -c $LOADGEN_CPU\` (bench/loadgen, Rust, one thread, one keep-alive HTTP/1.1 connection per client, closed loop)"
  echo "- other load: CPU ${BUSY_BEFORE} % busy just before the run; load average before / after: $LOAD_BEFORE / $LOAD_AFTER (anything else running on these 2 cores skews the numbers; the CPU table below shows how busy each side was)"
  echo "- run-to-run spread on this VM is roughly ±15 % per cell (more for oidc-provider at 64 clients); compare ratios within one run"
  echo "- each cell: ${SECS} s measured after ${WARMUP} s warm-up (refresh, userinfo); code exchange: codes pre-minted just before the phase, about ${SECS} s worth, all exchanged, rate = codes / wall time; a cell during which other processes used more than 25 % of a core is measured again (up to twice) and the cleanest attempt kept"
  echo "- signing speed of one core (\`openssl speed rsa2048 / ecdsap256\`, single-threaded, better of a run before and after the load): RS256 ${RSA_SIGNS:-?} signs/s, ES256 ${EC_SIGNS:-?} signs/s; every code and refresh grant signs one ID token, so each server core can do at most that many such grants per second"
  echo
  echo "$TABLE"
  echo
  echo "What each request does: \`authorization_code\` = POST /token with client_secret_basic + PKCE verifier, returns access, refresh and ID token; \`refresh_token\` = POST /token with the client's current refresh token, returns a new (rotated) refresh token, access token and ID token; \`userinfo\` = GET /userinfo with the Bearer access token. Scopes \`openid profile groups offline_access\`, the same user claims (sub, name, preferred_username, groups) in the ID token and from /userinfo in both servers. hubauth persists everything in SQLite (WAL); oidc-provider keeps it in process memory (bench/peer/server.mjs)."
  echo
  if [ -s "$PROFILE_MD" ]; then
    echo "## Where hubauth's time goes"
    echo
    cat "$PROFILE_MD"
  fi
} > "$BENCH/RESULTS.md"

say "results"
echo "$TABLE"
echo
echo "wrote $BENCH/RESULTS.md (raw data: $RESULTS)"
