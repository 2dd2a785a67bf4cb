#!/usr/bin/env bash
# Run hubauth's end-to-end tests (node's built-in test runner).
#
#   scripts/e2e.sh                 # all e2e tests against target/debug/hubauth
#   HUBAUTH_BIN=target/release/hubauth scripts/e2e.sh
#   scripts/e2e.sh e2e/rp.test.mjs # only some files
#
# Env: HUBAUTH_BIN (default target/debug/hubauth), E2E_SKIP_INSTALL=1 (don't run
# scripts/install-test-deps.sh first), E2E_KEEP_TMP=1 (keep hubauth data dirs),
# HUBAUTH_E2E_ALLOW_NO_POSTGRES=1 (replicas.test.mjs skips instead of failing without PostgreSQL).
# Screenshots and logs land in e2e/artifacts/ (gitignored). Exits non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export HUBAUTH_BIN="${HUBAUTH_BIN:-target/debug/hubauth}"
case "$HUBAUTH_BIN" in /*) ;; *) HUBAUTH_BIN="$ROOT/$HUBAUTH_BIN" ;; esac

if [ ! -x "$HUBAUTH_BIN" ]; then
  echo "e2e: hubauth binary not found at $HUBAUTH_BIN (run: cargo build --bin hubauth)" >&2
  exit 1
fi

if [ "${E2E_SKIP_INSTALL:-0}" != "1" ]; then
  bash "$ROOT/scripts/install-test-deps.sh"
fi

rm -rf "$ROOT/e2e/artifacts"
mkdir -p "$ROOT/e2e/artifacts"

if [ "$#" -gt 0 ]; then
  files=()
  for f in "$@"; do
    case "$f" in /*) files+=("$f") ;; *) files+=("$ROOT/$f") ;; esac
  done
else
  files=("$ROOT/e2e/rp.test.mjs" "$ROOT/e2e/authlib.test.mjs" "$ROOT/e2e/jupyterhub.test.mjs"
         "$ROOT/e2e/upstream-oidc.test.mjs" "$ROOT/e2e/jupyterhub-upstream.test.mjs"
         "$ROOT/e2e/jupyterhub-access.test.mjs" "$ROOT/e2e/custody.test.mjs"
         "$ROOT/e2e/replicas.test.mjs" "$ROOT/e2e/metrics.test.mjs" "$ROOT/e2e/report.test.mjs"
         "$ROOT/e2e/openapi.test.mjs" "$ROOT/e2e/systemd.test.mjs" "$ROOT/e2e/console.test.mjs"
         "$ROOT/e2e/console-users.test.mjs" "$ROOT/e2e/readme.test.mjs"
         "$ROOT/e2e/container.test.mjs")
fi

cd "$ROOT/e2e"
# One file at a time (2-core machines); each file starts and kills its own servers.
set +e
node --test --test-concurrency=1 --test-timeout=600000 "${files[@]}"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "e2e: FAILED (exit $rc); logs and screenshots in e2e/artifacts/" >&2
else
  echo "e2e: all passed; logs and screenshots in e2e/artifacts/" >&2
fi
exit "$rc"
