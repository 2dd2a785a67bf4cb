#!/usr/bin/env bash
# Profile a running hubauth during one pass of refresh / userinfo / code
# exchange (16 clients) and print a Markdown summary on stdout.
# Called by run.sh:  profile.sh PID HUBAUTH_BIN BASE_URL LOADGEN WORKDIR "PIN CMD" PASSWORD
#
# perf is used when it can sample here: hardware cycles if
# `perf stat -e instructions true` counts, otherwise the cpu-clock software
# timer (VMs without a PMU). Without perf, a second hubauth runs under
# valgrind --tool=callgrind for a short single-client pass.
set -euo pipefail
PID="$1"; HUBAUTH="$2"; BASE="$3"; LOADGEN="$4"; WORK="$5"; PIN="$6"; PASSWORD="$7"
SECS="${PROFILE_SECS:-3}"
SECRET="${SECRET:-bench-secret-0123456789}"
LOG="$WORK/profile.log"
: > "$LOG"

EVENT=""
if command -v perf >/dev/null 2>&1; then
  if perf stat -x, -e instructions true 2>&1 | grep -q '^[0-9]'; then
    EVENT=cycles
  elif perf record -q -e cpu-clock -o "$WORK/perf-probe.data" true >>"$LOG" 2>&1; then
    EVENT=cpu-clock
  fi
fi
[ -n "${BENCH_PROFILER:-}" ] && [ "$BENCH_PROFILER" = callgrind ] && EVENT=""

# Bucket "overhead dso sym" lines (perf) into coarse areas.
BUCKETS='
function bucket(dso, sym,   s) {
  s = dso " " sym
  if (dso ~ /kernel|\[k\]|vdso/) return "kernel (syscalls, loopback TCP, scheduling)"
  if (s ~ /argon2|[Bb]lake2/) return "argon2 (login only)"
  if (s ~ /aws_lc|[Bb][Nn]_|RSA|rsa_|rsaz|ossl_|mont|sqr8x|mul4x|mulx|ecp_nistz|p256|ecdsa|EC_|ec_GFp|fiat_|sha256|SHA256|sha512|beeu|[Cc]onstant[Tt]ime|bignum|libcrypto/) return "crypto (aws-lc: signing, hashing)"
  if (s ~ /sqlite|sqlx/) return "SQLite (+ its Rust binding)"
  if (s ~ /malloc|free|realloc|calloc|memcpy|memmove|memset|memcmp|_int_|tcache|arena|strlen/) return "allocation / memcpy (libc)"
  if (s ~ /hyper|tokio|axum|tower|mio::|h2::|::http::|http::header|futures|parking_lot|crossbeam|pthread|sched_|epoll|__libc_send|__libc_recv|syscall/) return "HTTP stack + async runtime (hyper, axum, tokio)"
  if (s ~ /serde|json|base64|minijinja|toml|url::|percent_encoding|form_urlencoded|uuid|ryu|itoa|fmt::/) return "serialization (JSON, base64, forms, formatting)"
  if (s ~ /tracing/) return "tracing"
  if (s ~ /hubauth/) return "hubauth code (handlers, token logic)"
  return "other (" dso ")"
}'

if [ -n "$EVENT" ]; then
  echo "perf event: $EVENT" >>"$LOG"
  STAT_EVENTS="context-switches"
  SYSCALLS="futex pwrite64 pread64 fcntl fsync fdatasync write writev sendto recvfrom read epoll_wait"
  if perf stat -e syscalls:sys_enter_futex true >/dev/null 2>&1; then
    for sc in $SYSCALLS; do STAT_EVENTS="$STAT_EVENTS,syscalls:sys_enter_$sc"; done
  fi
  # Run over each measured phase: a sampling profile and syscall/context-switch counts.
  cat > "$WORK/hook.sh" <<EOF
#!/usr/bin/env bash
perf record -q -e $EVENT -F 999 -p $PID -o $WORK/perf-\$BENCH_PHASE.data 2>>$LOG &
r=\$!
perf stat -x, -e $STAT_EVENTS -p $PID -o $WORK/stat-\$BENCH_PHASE.csv 2>>$LOG &
s=\$!
trap 'kill -INT \$r \$s 2>/dev/null; wait \$r \$s; exit 0' INT TERM
wait
EOF
  chmod +x "$WORK/hook.sh"
  $PIN "$LOADGEN" run --base "$BASE" --label "hubauth RS256 (under perf)" --client-id bench-rs \
    --secret "$SECRET" --username bench --password "$PASSWORD" --expect-alg RS256 \
    --secs "$SECS" --warmup 1 --concurrency 16 --out "$WORK/profile.jsonl" \
    --server-pid "$PID" --around-phase "bash $WORK/hook.sh" >>"$LOG" 2>&1
  if [ "$EVENT" = cycles ]; then
    echo "Sampled with \`perf record -e cycles\` on the hubauth process (RS256 client, 16 clients, ${SECS} s per grant), flat profile (self time)."
  else
    echo "Sampled with \`perf record -e cpu-clock\` (this VM exposes no hardware counters: \`perf stat -e instructions\` reports <not supported>, so the software timer is used) on the hubauth process, RS256 client, 16 clients, ${SECS} s per grant; flat profile (self time), symbols from the release binary."
  fi
  echo
  echo "| area | code exchange | refresh | userinfo |"
  echo "|---|--:|--:|--:|"
  for ph in code refresh userinfo; do
    perf report -i "$WORK/perf-$ph.data" --stdio --no-children --sort dso,sym --percent-limit 0 2>>"$LOG" \
      | awk -v ph="$ph" "$BUCKETS"'
        /^ *[0-9.]+%/ { pct=$1; sub("%","",pct); dso=$2; $1=""; $2=""; $3=""; b=bucket(dso, $0); t[b]+=pct; all+=pct }
        END { for (b in t) printf "%s\t%s\t%.1f\n", b, ph, (all > 0 ? 100*t[b]/all : 0) }'
  done > "$WORK/buckets.tsv"
  awk -F'\t' '{ v[$1, $2]=$3; tot[$1]+=$3; names[$1]=1 }
    END { for (n in names) printf "%08.1f\t%s\t%s\t%s\t%s\n", tot[n], n, (v[n,"code"]==""?"0.0":v[n,"code"]), (v[n,"refresh"]==""?"0.0":v[n,"refresh"]), (v[n,"userinfo"]==""?"0.0":v[n,"userinfo"]) }' \
    "$WORK/buckets.tsv" | sort -r | awk -F'\t' '{ printf "| %s | %s %% | %s %% | %s %% |\n", $2, $3, $4, $5 }'
  echo
  if [ -s "$WORK/profile.jsonl" ]; then
    echo "Throughput while being profiled (16 clients): $(awk -F'"rps":' '/"phase":"(code|refresh|userinfo)"/ { split($2,a,","); match($0, /"phase":"[a-z]+"/); p=substr($0, RSTART+9, RLENGTH-10); printf "%s %.0f/s, ", p, a[1] }' "$WORK/profile.jsonl" | sed 's/, $//')."
    echo
  fi
  HAVE_STAT=""
  if ls "$WORK"/stat-*.csv >/dev/null 2>&1; then
    HAVE_STAT=1
    echo "Kernel crossings per request (perf stat on the hubauth process over each phase, warm-up included):"
    echo
    echo "| per request | code exchange | refresh | userinfo |"
    echo "|---|--:|--:|--:|"
    for ph in code refresh userinfo; do
      n=$(grep "\"phase\":\"$ph\"" "$WORK/profile.jsonl" | grep -o '"total_requests":[0-9]*' | cut -d: -f2)
      awk -F, -v ph="$ph" -v n="${n:-0}" '$1 ~ /^[0-9]+$/ && n > 0 { ev=$3; sub("syscalls:sys_enter_", "", ev); r=$1/n; printf "%s\t%s\t%s\n", ev, ph, (r < 1 ? sprintf("%.2f", r) : sprintf("%.1f", r)) }' "$WORK/stat-$ph.csv"
    done > "$WORK/stat.tsv"
    awk -F'\t' '{ v[$1, $2]=$3; if (!($1 in seen)) { seen[$1]=1; order[++k]=$1 } }
      END { for (i=1; i<=k; i++) { e=order[i]; if (v[e,"code"]+v[e,"refresh"]+v[e,"userinfo"] == 0) continue;
            printf "| %s | %s | %s | %s |\n", (e=="context-switches" ? "context switches" : e "()"), v[e,"code"], v[e,"refresh"], v[e,"userinfo"] } }' "$WORK/stat.tsv"
    echo
  fi
  b() { awk -F'\t' -v k="$1" -v p="$2" 'index($1, k) == 1 && $2 == p { print $3 }' "$WORK/buckets.tsv" | head -1; }
  c() { [ -s "$WORK/stat.tsv" ] && awk -F'\t' -v k="$1" -v p="$2" '$1 == k && $2 == p { print $3 }' "$WORK/stat.tsv" | head -1; }
  reading="Reading: in refresh grants aws-lc (the ID token signature, plus hashing) takes $(b crypto refresh) % of hubauth's CPU samples, the kernel $(b kernel refresh) %, SQLite $(b SQLite refresh) %, hyper/axum/tokio $(b HTTP refresh) %, allocation $(b allocation refresh) %, hubauth's own code $(b hubauth refresh) %; in userinfo the kernel takes $(b kernel userinfo) % and SQLite $(b SQLite userinfo) %."
  if [ -n "$HAVE_STAT" ]; then
    cs=$(c context-switches refresh)
    reading="$reading The HTTP exchange itself is one recvfrom and one writev per request; the other kernel crossings per refresh grant are $(c pread64 refresh) pread64 and $(c pwrite64 refresh) pwrite64 (SQLite page reads and WAL frame writes), $(c fcntl refresh) fcntl (SQLite file locks), $(c fsync refresh) fsync (WAL checkpoints, which stall the writer while the disk syncs) and $cs context switches."
    if awk -v x="${cs:-0}" 'BEGIN { exit !(x > 3) }'; then
      reading="$reading That many context switches means threads handing work to each other (e.g. the async runtime and a SQLite worker thread): on this single server core each hand-off costs a futex wake and a switch."
    fi
  fi
  echo "$reading"
  echo
  for ph in refresh userinfo; do
    echo "Top symbols, $ph:"
    echo
    echo '```'
    perf report -i "$WORK/perf-$ph.data" --stdio --no-children --sort dso,sym --percent-limit 0.7 2>>"$LOG" \
      | grep -E '^ *[0-9.]+%' | head -15 | cut -c1-150 || true
    echo '```'
    echo
  done
else
  echo "perf unavailable: using callgrind" >>"$LOG"
  if ! command -v valgrind >/dev/null 2>&1; then
    echo "Neither perf nor valgrind can run here, so there is no profile. (Install Debian's linux-perf or valgrind.)"
    exit 0
  fi
  PORT=5599
  while ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . ; do PORT=$((PORT + 1)); done
  sed -e "s#127.0.0.1:[0-9]*\"#127.0.0.1:$PORT\"#g" -e "s#hubauth.db#hubauth-callgrind.db#" "$WORK/hubauth.toml" > "$WORK/callgrind.toml"
  # Collect only during the measured phases (login, key generation and warm-up excluded).
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
    "$HUBAUTH" serve --config "$WORK/callgrind.toml" >>"$LOG" 2>&1 &
  VPID=$!
  for _ in $(seq 1 600); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/.well-known/openid-configuration" 2>/dev/null && break; sleep 0.2; done
  cat > "$WORK/hook.sh" <<EOF
#!/usr/bin/env bash
callgrind_control -i on $VPID >/dev/null 2>&1
trap 'callgrind_control -i off $VPID >/dev/null 2>&1; exit 0' INT TERM
while :; do sleep 0.1; done
EOF
  $PIN "$LOADGEN" run --base "http://127.0.0.1:$PORT" --label "hubauth RS256 (callgrind)" --client-id bench-rs \
    --secret "$SECRET" --username bench --password "$PASSWORD" --expect-alg RS256 \
    --secs 2 --warmup 0 --concurrency 4 --out "$WORK/profile.jsonl" \
    --around-phase "bash $WORK/hook.sh" >>"$LOG" 2>&1 || true
  kill -INT "$VPID" 2>/dev/null || true; wait "$VPID" 2>/dev/null || true
  echo "valgrind --tool=callgrind on a second hubauth instance (perf cannot sample here), 4 clients, collecting only during the measured refresh, userinfo and code-exchange phases; instructions by function (self):"
  echo
  echo '```'
  callgrind_annotate --inclusive=no "$WORK/callgrind.out" 2>>"$LOG" | grep -E '^ *[0-9,]+ ' | head -25 | cut -c1-150 || true
  echo '```'
fi
