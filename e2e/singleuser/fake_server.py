"""A stand-in for a single-user notebook server, spawned by a real JupyterHub in e2e/custody.test.mjs.

JupyterHub (SimpleLocalProcessSpawner, `c.Spawner.cmd = [python, this file]`) starts it with the
usual single-user environment: JUPYTERHUB_SERVICE_URL (where to listen), JUPYTERHUB_API_TOKEN (this
server's own hub token), JUPYTERHUB_USER, ... plus what the test puts in `c.Spawner.environment`:

    HUBAUTH_ISSUER, HUBAUTH_CLIENT_ID   read by `hubauth token` itself
    HUBAUTH_BIN                         the hubauth binary under test
    E2E_CONNECTOR                       the connector whose upstream token to ask for
    E2E_OUT_DIR                         where to write {user}-token.json and {user}.pid

On start-up it does what a notebook would: runs `hubauth token --connector $E2E_CONNECTOR` (which
exchanges JUPYTERHUB_API_TOKEN at hubauth, RFC 8693) and writes the outcome to
$E2E_OUT_DIR/{user}-token.json (mode 0600): {"api_token", "exit_code", "upstream_token", "stderr"}.
Then it serves HTTP: 200 to everything, with X-JupyterHub-Version, which is all the hub's readiness
check (GET {server url}api) needs. jupyterhub-singleuser would need jupyter_server; this does not.

It never prints a token (its output lands in the hub's log, which the test greps for secrets),
and exits when the hub that started it goes away (parent changes) or on SIGINT/SIGTERM.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

try:
    from jupyterhub import __version__ as HUB_VERSION
except Exception:  # noqa: BLE001 - any python works; the header is only informative
    HUB_VERSION = None


def say(msg):
    print(f"[fake-singleuser] {msg}", file=sys.stderr, flush=True)


def write_private(path, text):
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def hubauth_token():
    """`hubauth token --connector X` with this server's environment (JUPYTERHUB_API_TOKEN included)."""
    cmd = [os.environ["HUBAUTH_BIN"], "token", "--connector", os.environ["E2E_CONNECTOR"]]
    env = {k: v for k, v in os.environ.items() if k != "HUBAUTH_CLIENT_SECRET"}
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        return done.returncode, done.stdout.strip(), done.stderr
    except subprocess.TimeoutExpired as e:
        return -1, "", f"hubauth token timed out: {e}"


class Handler(BaseHTTPRequestHandler):
    def _answer(self):
        body = json.dumps({"fake": "singleuser", "user": os.environ.get("JUPYTERHUB_USER")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if HUB_VERSION:
            self.send_header("X-JupyterHub-Version", HUB_VERSION)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, fmt, *args):
        # the path only: never a query string (it could carry a token)
        say(f"{self.command} {urlparse(self.path).path}")


def watch_parent(parent):
    while True:
        if os.getppid() != parent:
            say("the hub went away; exiting")
            os._exit(0)
        time.sleep(0.5)


def main():
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    host, port = url.hostname or "127.0.0.1", url.port
    user = os.environ["JUPYTERHUB_USER"]
    out_dir = os.environ["E2E_OUT_DIR"]
    write_private(os.path.join(out_dir, f"{user}.pid"), str(os.getpid()))
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    code, token, stderr = hubauth_token()
    say(f"hubauth token exited {code} ({'a token' if token else 'no token'})")
    write_private(
        os.path.join(out_dir, f"{user}-token.json"),
        json.dumps(
            {
                "api_token": os.environ["JUPYTERHUB_API_TOKEN"],
                "exit_code": code,
                "upstream_token": token,
                "stderr": stderr,
            }
        ),
    )

    server = ThreadingHTTPServer((host, port), Handler)
    say(f"serving {user} on {host}:{port}")
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    say("stopped")


if __name__ == "__main__":
    main()
