#!/usr/bin/env bash
# hubauth throughput benchmark, side by side with oidc-provider (npm, v9).
#
#   bench/run.sh                 # full run (~4-6 min once things are built)
#   BENCH_SECS=2 bench/run.sh    # quicker, noisier
#
# Measures authorization_code exchange, refresh_token grant (rotating chain
# per client) and userinfo, at 1/16/64 concurrent keep-alive clients, for
#   hubauth RS256, hubauth ES256 (SQLite), the same two on PostgreSQL, oidc-provider RS256,
# prints a Markdown table and writes bench/RESULTS.md. On PostgreSQL it then counts, in a
# short extra pass, statements, transactions and round trips per grant.
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
#   BENCH_POSTGRES=1      also hubauth on PostgreSQL (default 1 when a PostgreSQL server is
#                         installed in /usr/lib/postgresql; 0 = SQLite and the peer only)
#   BENCH_PG_DIR=/tmp/hubauth-pg-bench  data dir of the bench's own PostgreSQL (scripts/postgres.sh;
#                         started if not running, stopped afterwards only if this run started it)
#   BENCH_PG_PORT=55532   its port (default: the running server's, else the first free from 55532)
#   BENCH_PG_DURABLE=1    fsync + synchronous_commit on (each commit waits for its WAL on disk);
#                         0 = the test settings (fsync off, synchronous_commit off)
#   BENCH_PG_SSLMODE=verify-full   hubauth's TLS to PostgreSQL (disable|require|verify-full)
#   BENCH_PG_POOL=10      [storage] pool_size of the PostgreSQL hubauth
#   BENCH_PG_COUNT=1      count statements / transactions / round trips per grant (0 = skip)
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
say() { printf '\n== %s\n' "$*" >&2; }
source "$BENCH/lib.sh"
HUB_PORT="${HUB_PORT:-$(free_port 5556)}"
PEER_PORT="${PEER_PORT:-$(free_port $((HUB_PORT + 1)))}"
PASSWORD="bench-password"
export SECRET="bench-secret-0123456789"

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
wait_idle
BUSY_BEFORE=$(busy_pct)
LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ PostgreSQL
PG_ON="${BENCH_POSTGRES:-}"
if [ -z "$PG_ON" ]; then
  if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then PG_ON=1; else PG_ON=0; fi
fi
[ -n "${SKIP_HUBAUTH:-}" ] && PG_ON=0
PG_SSLMODE="${BENCH_PG_SSLMODE:-verify-full}"
PG_POOL="${BENCH_PG_POOL:-10}"
if [ "$PG_ON" = 1 ]; then
  trap 'cleanup; pg_cleanup' EXIT INT TERM
  pg_start "hubauth_bench_$$"
  PG_URL="$PG_URL?sslmode=$PG_SSLMODE"
fi

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
  hub_config() { # port storage-toml > config
  cat <<EOF
issuer = "http://127.0.0.1:$1"
listen = "127.0.0.1:$1"

[storage]
$2

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
  }
  hub_config "$HUB_PORT" "url = \"sqlite://$WORK/hubauth.db\"" > "$WORK/hubauth.toml"
  "${PIN_SERVER[@]}" "$HUBAUTH" serve --config "$WORK/hubauth.toml" \
    > "$WORK/hubauth.log" 2>&1 &
  HUB_PID=$!; PIDS+=("$HUB_PID")
  wait_http "http://127.0.0.1:$HUB_PORT/.well-known/openid-configuration" "$HUB_PID" hubauth
  if [ "$PG_ON" = 1 ]; then
    PGHUB_PORT="${PGHUB_PORT:-$(free_port $((HUB_PORT + 2)))}"
    say "starting hubauth on PostgreSQL on 127.0.0.1:$PGHUB_PORT (cpu $SERVER_CPU)"
    hub_config "$PGHUB_PORT" "url = \"$PG_URL\"
ssl_root_cert = \"$PG_CA\"
pool_size = $PG_POOL" > "$WORK/hubauth-pg.toml"
    "${PIN_SERVER[@]}" "$HUBAUTH" serve --config "$WORK/hubauth-pg.toml" \
      > "$WORK/hubauth-pg.log" 2>&1 &
    PGHUB_PID=$!; PIDS+=("$PGHUB_PID")
    wait_http "http://127.0.0.1:$PGHUB_PORT/.well-known/openid-configuration" "$PGHUB_PID" hubauth-pg
  fi
fi

say "starting oidc-provider on 127.0.0.1:$PEER_PORT (cpu $SERVER_CPU)"
NODE_ENV=production "${PIN_SERVER[@]}" node "$BENCH/peer/server.mjs" --listen "127.0.0.1:$PEER_PORT" \
  > "$WORK/peer.log" 2>&1 &
PEER_PID=$!; PIDS+=("$PEER_PID")
wait_http "http://127.0.0.1:$PEER_PORT/.well-known/openid-configuration" "$PEER_PID" peer

# ------------------------------------------------------------------ load
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
load() { # base label client alg server-pid [extra loadgen args]
  "${PIN_LOAD[@]}" "$LOADGEN" run --base "$1" --label "$2" --client-id "$3" --secret "$SECRET" \
    --username bench --password "$PASSWORD" --expect-alg "$4" --server-pid "$5" \
    --secs "$SECS" --warmup "$WARMUP" --concurrency "$CONC" --out "$RESULTS" "${@:6}"
}
LABELS=()
if [ -z "${SKIP_HUBAUTH:-}" ]; then
  say "load: hubauth RS256"
  load "http://127.0.0.1:$HUB_PORT" "hubauth RS256" bench-rs RS256 "$HUB_PID"; LABELS+=("hubauth RS256")
  say "load: hubauth ES256"
  load "http://127.0.0.1:$HUB_PORT" "hubauth ES256" bench-es ES256 "$HUB_PID"; LABELS+=("hubauth ES256")
fi
VS=""
if [ "$PG_ON" = 1 ]; then
  # The database's CPU (postmaster + backends) is metered apart, not as "other load".
  say "load: hubauth RS256 on PostgreSQL"
  load "http://127.0.0.1:$PGHUB_PORT" "hubauth RS256 pg" bench-rs RS256 "$PGHUB_PID" --db-pid "$PG_PID"
  LABELS+=("hubauth RS256 pg")
  say "load: hubauth ES256 on PostgreSQL"
  load "http://127.0.0.1:$PGHUB_PORT" "hubauth ES256 pg" bench-es ES256 "$PGHUB_PID" --db-pid "$PG_PID"
  LABELS+=("hubauth ES256 pg")
  VS="hubauth RS256 pg=hubauth RS256,hubauth ES256 pg=hubauth ES256"
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

# ------------------------------------------------------------------ PostgreSQL: where the time goes
# A short extra pass (not in the table above): every statement logged (log_statement = all, with
# the virtual transaction id in the prefix) and the segments hubauth sent to PostgreSQL counted
# (ss: data_segs_out of its sockets; one segment per round trip, as sqlx writes a whole
# Bind/Execute/Sync or a ping in one go), between the start and the end of each phase.
PGCOUNT_MD="$WORK/pgcount.md"
: > "$PGCOUNT_MD"
if [ "$PG_ON" = 1 ] && [ "${BENCH_PG_COUNT:-1}" = 1 ]; then
  say "PostgreSQL: statements, transactions and round trips per grant"
  PG_LOG="$PG_DIR/server.log"
  cat > "$WORK/pgcount-hook.sh" <<EOF
#!/usr/bin/env bash
# around-phase hook (loadgen): log offset and hubauth's segments to PostgreSQL at start and end.
snap() { echo "\$(stat -c %s '$PG_LOG') \$(ss -Htni 'dport = :$PG_PORT' | grep -o 'data_segs_out:[0-9]*' | awk -F: '{s += \$2} END {print s + 0}')"; }
snap > "$WORK/pgcount-\$BENCH_PHASE.start"
trap 'snap > "$WORK/pgcount-\$BENCH_PHASE.end"; exit 0' INT
while :; do sleep 0.05; done
EOF
  pg -c "ALTER SYSTEM SET log_statement = 'all'" -c "ALTER SYSTEM SET log_parameter_max_length = 0" \
    -c "ALTER SYSTEM SET log_line_prefix = '%m [%p] vxid=%v '" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 1
  "${PIN_LOAD[@]}" "$LOADGEN" run --base "http://127.0.0.1:$PGHUB_PORT" --label count --client-id bench-es \
    --secret "$SECRET" --username bench --password "$PASSWORD" --secs 2 --warmup 0 --concurrency 4 \
    --retries 0 --around-phase "bash $WORK/pgcount-hook.sh" --out "$WORK/pgcount.jsonl" >&2 || true
  pg -c "ALTER SYSTEM RESET log_statement" -c "ALTER SYSTEM RESET log_parameter_max_length" \
    -c "ALTER SYSTEM RESET log_line_prefix" -c "SELECT pg_reload_conf()" >/dev/null
  python3 - "$WORK" "$PG_LOG" > "$PGCOUNT_MD" <<'EOF' || echo "(statement count failed)" > "$PGCOUNT_MD"
import collections, json, re, sys
work, log = sys.argv[1], sys.argv[2]
total = {}
for line in open(f"{work}/pgcount.jsonl"):
    r = json.loads(line)
    if r.get("phase") in ("refresh", "userinfo", "code"):
        total[r["phase"]] = r["total_requests"]
stmt = re.compile(r" vxid=(\S*) LOG:  (?:statement|execute [^:]*): (.*)$")
rows, detail = [], []
for phase, name in (("refresh", "refresh_token"), ("code", "authorization_code"), ("userinfo", "userinfo")):
    (o0, s0), (o1, s1) = (map(int, open(f"{work}/pgcount-{phase}.{k}").read().split()) for k in ("start", "end"))
    n = total.get(phase, 0)
    if n == 0:
        continue
    with open(log, "rb") as f:
        f.seek(o0)
        text = f.read(o1 - o0).decode("utf-8", "replace")
    calls, xacts = collections.Counter(), set()
    for l in text.splitlines():
        m = stmt.search(l)
        if m:
            calls[m.group(2).strip()] += 1
            xacts.add(m.group(1))
    st = sum(calls.values())
    rows.append(f"| {name} | {n} | {st / n:.2f} | {len(xacts) / n:.2f} | {(s1 - s0) / n:.2f} | {((s1 - s0) - st) / n:.2f} |")
    detail.append(f"{name} (per request):\n")
    for q, c in sorted(calls.items(), key=lambda kv: -kv[1]):
        if c / n >= 0.01:
            detail.append(f"  {c / n:5.2f}  {q[:150]}{'…' if len(q) > 150 else ''}")
    detail.append("")
print("| operation | requests counted | statements | transactions | round trips | of which not statements (pool pings) |")
print("|---|--:|--:|--:|--:|--:|")
print("\n".join(rows))
print()
print("```")
print("\n".join(detail).rstrip())
print("```")
EOF
  cat "$PGCOUNT_MD" >&2
fi

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
TABLE=$("$LOADGEN" report --in "$RESULTS" --labels "$LABEL_LIST" --peer "oidc-provider RS256" --vs "$VS" \
  --rs-label "$([ -z "${SKIP_HUBAUTH:-}" ] && echo 'hubauth RS256')" \
  --es-label "$([ -z "${SKIP_HUBAUTH:-}" ] && echo 'hubauth ES256')" \
  --rsa-signs-per-sec "${RSA_SIGNS:-0}" --ec-signs-per-sec "${EC_SIGNS:-0}" \
  --server-cores "$SERVER_CORES" --loadgen-shares-core "$LOADGEN_SHARES")

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
HUB_REV="${HUBAUTH_REV:-$(cd "$ROOT" && git describe --always --dirty --exclude '*' 2>/dev/null || echo "uncommitted")}"
PEER_VER=$(node -p "require('$BENCH/node_modules/oidc-provider/package.json').version")
# The footprint section (bench/footprint/run.sh) is kept as it is.
FOOTPRINT_MD=$(sed -n '/^<!-- footprint:/,/^<!-- \/footprint -->/p' "$BENCH/RESULTS.md" 2>/dev/null || true)
{
  echo "# hubauth benchmark results"
  echo
  echo "Written by \`bench/run.sh\` — rerun it to refresh this file."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) cores ($CPU_MODEL), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
  echo "- hubauth: \`$HUB_REV\` (release build; \`hubauth RS256\` / \`ES256\` on SQLite (WAL, synchronous=NORMAL)$([ "$PG_ON" = 1 ] && echo ", \`… pg\` on PostgreSQL")); peer: oidc-provider $PEER_VER on Node $(node --version) (NODE_ENV=production, in-memory adapter)"
  echo "- pinning: each server \`taskset -c $SERVER_CPU\` ($SERVER_CORES core(s); both servers are up for the whole run but are loaded one at a time; oidc-provider is one Node thread, hubauth uses a worker per core), load generator \`taskset -c $LOADGEN_CPU\` (bench/loadgen, Rust, one thread, one keep-alive HTTP/1.1 connection per client, closed loop)"
  if [ "$PG_ON" = 1 ]; then
    echo "- PostgreSQL: $PG_VERSION (Debian), its own server for the bench (scripts/postgres.sh, data in $PG_DIR on the same disk, loopback TCP + TLS sslmode=$PG_SSLMODE, pool_size $PG_POOL), not pinned (shares the server cores); settings: $PG_SETTINGS"
    if [ "$PG_DURABLE" = 1 ]; then
      echo "- durability: PostgreSQL waits at each commit until its WAL is flushed to disk (synchronous_commit=on), so an acknowledged grant survives a power cut; SQLite in WAL mode with synchronous=NORMAL syncs only at checkpoints, so it survives a crash of hubauth but may lose its last commits on a power cut or kernel crash: PostgreSQL here does strictly more per commit"
    else
      echo "- durability: **off** for this run (BENCH_PG_DURABLE=0: fsync=off, synchronous_commit=off), so PostgreSQL's commits do not wait for the disk at all (less durable than SQLite's synchronous=NORMAL)"
    fi
  fi
  echo "- other load: CPU ${BUSY_BEFORE} % busy just before the run${WAITED}; load average before / after: $LOAD_BEFORE / $LOAD_AFTER (other helpers may have been compiling on this machine during the run; anything else running on these 2 cores skews the numbers; the CPU table below shows how busy each side was)"
  echo "- run-to-run spread on this VM is roughly ±15 % per cell (more for oidc-provider at 64 clients); compare ratios within one run"
  echo "- each cell: ${SECS} s measured after ${WARMUP} s warm-up (refresh, userinfo); code exchange: codes pre-minted just before the phase, about ${SECS} s worth, all exchanged, rate = codes / wall time; a cell during which other processes used more than 25 % of a core is measured again (up to twice) and the cleanest attempt kept"
  echo "- signing speed of one core (\`openssl speed rsa2048 / ecdsap256\`, single-threaded, better of a run before and after the load): RS256 ${RSA_SIGNS:-?} signs/s, ES256 ${EC_SIGNS:-?} signs/s; every code and refresh grant signs one ID token, so each server core can do at most that many such grants per second"
  echo
  echo "$TABLE"
  echo
  echo "What each request does: \`authorization_code\` = POST /token with client_secret_basic + PKCE verifier, returns access, refresh and ID token; \`refresh_token\` = POST /token with the client's current refresh token, returns a new (rotated) refresh token, access token and ID token; \`userinfo\` = GET /userinfo with the Bearer access token. Scopes \`openid profile groups offline_access\`, the same user claims (sub, name, preferred_username, groups) in the ID token and from /userinfo in both servers. hubauth persists everything in SQLite (WAL), or in PostgreSQL for the \`pg\` columns (the same binary, another \`[storage] url\`); oidc-provider keeps it in process memory (bench/peer/server.mjs)."
  echo
  if [ -s "$PGCOUNT_MD" ]; then
    echo "## PostgreSQL: statements, transactions and round trips per request"
    echo
    echo "Counted in a short extra pass (4 clients, 2 s per grant, ES256 client, not part of the table above) with \`log_statement = all\` (statements, and transactions as distinct virtual transaction ids in the log prefix) and \`ss\` (round trips = TCP segments hubauth sent to PostgreSQL: sqlx writes each statement's Bind/Execute/Sync, and each ping, in one write). *Not statements* = round trips that carry no SQL: pings of a connection taken from the pool after 1 s idle, or handed back after a cancelled call or a connection error (src/store/postgres/pool.rs; sqlx's own pool pinged every connection on its way back, until 66f0fc9). *Transactions* counts single statements outside BEGIN … COMMIT as one each: a refresh of someone checked within \`recheck_after\` is one statement (\`rotate_fresh_refresh_token\`), otherwise the token is read, the person re-checked, and the rotation claims it; a code exchange reads the code (\`authorization_code\`, in the handler), then spends it and records the grant in one statement."
    echo
    cat "$PGCOUNT_MD"
    echo
  fi
  if [ -s "$PROFILE_MD" ]; then
    echo "## Where hubauth's time goes"
    echo
    cat "$PROFILE_MD"
  fi
  if [ -n "$FOOTPRINT_MD" ]; then
    echo
    echo "$FOOTPRINT_MD"
  fi
} > "$BENCH/RESULTS.md"

say "results"
echo "$TABLE"
echo
echo "wrote $BENCH/RESULTS.md (raw data: $RESULTS)"
