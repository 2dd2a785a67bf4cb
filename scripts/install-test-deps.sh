#!/usr/bin/env bash
# Install everything the end-to-end tests need (idempotent; fast when already done).
#   - Debian's chromium (/usr/bin/chromium) for headless browser tests
#   - e2e/.venv: JupyterHub + OAuthenticator (pinned in e2e/requirements.txt)
#   - e2e/node_modules: openid-client, configurable-http-proxy, playwright-core, oidc-provider
#     (from e2e/package-lock.json via `npm ci`; no browser is ever downloaded)
#   - PostgreSQL server binaries (scripts/postgres.sh runs its own throw-away server from them),
#     openssl (its test certificates) and HAProxy (end-to-end tests)
#   - Prometheus (Debian's `prometheus`; e2e/metrics.test.mjs runs its own on a free port)
#   - systemd-analyze (Debian's `systemd`; e2e/systemd.test.mjs checks contrib/systemd/hubauth.service)
# Works unattended as root on a fresh Debian 12 machine (CI=true, no stdin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E="$ROOT/e2e"
export DEBIAN_FRONTEND=noninteractive
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi

APT_UPDATED=0
apt_install() {
  # apt_install PKG... : install Debian packages, running `apt-get update` at most once.
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -q >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# Is a Debian package installed (and fully configured)?
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# ---------------------------------------------------------------- system packages
need=()
if [ ! -x /usr/bin/chromium ]; then need+=(chromium); fi
# fonts so that screenshots show text (chromium recommends them; we use --no-install-recommends)
if ! have_pkg fonts-liberation; then need+=(fonts-liberation); fi
if ! command -v python3 >/dev/null 2>&1; then need+=(python3); fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then need+=(nodejs npm); fi
if ! command -v curl >/dev/null 2>&1; then need+=(curl); fi
# Only the binaries matter: the package's default cluster (15/main, port 5432) may or may not be
# created and started (systemd vs. container); scripts/postgres.sh never uses it.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then need+=(postgresql); fi
if ! command -v openssl >/dev/null 2>&1; then need+=(openssl); fi
if ! have_pkg haproxy; then need+=(haproxy); fi
if ! command -v prometheus >/dev/null 2>&1; then need+=(prometheus); fi
# systemd-analyze (verify, security) for e2e/systemd.test.mjs; systemd need not be running.
if [ ! -x /usr/bin/systemd-analyze ]; then need+=(systemd); fi
# The container image test (e2e/container.sh): podman builds it, Debian's runc runs it (crun
# cannot set rlimits here), and the base images come from debootstrap (no image registry needed).
for p in podman runc debootstrap; do
  if ! have_pkg "$p"; then need+=("$p"); fi
done
if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi

# ---------------------------------------------------------------- python venv
VENV="$E2E/.venv"
REQ="$E2E/requirements.txt"
req_sum="$(sha256sum "$REQ" | cut -d' ' -f1)"
stamp="$VENV/.hubauth-requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$req_sum" ] \
   && "$VENV/bin/python" -c 'import jupyterhub, oauthenticator, prometheus_client, jupyterlab' 2>/dev/null; then
  log "python venv up to date ($VENV)"
else
  PY="$(command -v python3)"
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' 2>/dev/null; then
      apt_install python3-venv
    fi
    log "creating venv $VENV"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" || { apt_install python3-venv; rm -rf "$VENV"; "$PY" -m venv "$VENV"; }
  fi
  log "pip install -r e2e/requirements.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$REQ"
  "$VENV/bin/python" -c 'import jupyterhub, oauthenticator; print("jupyterhub", jupyterhub.__version__, "oauthenticator", oauthenticator.__version__)' >&2
  echo "$req_sum" > "$stamp"
fi

# ---------------------------------------------------------------- node modules
lock_sum="$(cat "$E2E/package.json" "$E2E/package-lock.json" | sha256sum | cut -d' ' -f1)"
nstamp="$E2E/node_modules/.hubauth-lock.sha256"
if [ -f "$nstamp" ] && [ "$(cat "$nstamp")" = "$lock_sum" ] \
   && [ -x "$E2E/node_modules/.bin/configurable-http-proxy" ]; then
  log "node_modules up to date"
else
  log "npm ci (e2e/)"
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > "$nstamp"
fi

pg_server="$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)"
log "done: chromium=$(/usr/bin/chromium --version 2>/dev/null || echo '?'), node=$(node --version)," \
  "postgres=$("$pg_server" --version 2>/dev/null || echo '?'), haproxy=$(/usr/sbin/haproxy -v 2>/dev/null | head -n 1 || echo '?')"
