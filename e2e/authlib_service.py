"""A strict third-party client for hubauth's service accounts: Authlib (PyPI) with client_credentials
(RFC 6749 §4.4), introspection (RFC 7662) and revocation (RFC 7009). Driven by e2e/custody.test.mjs.

Usage: python authlib_service.py ISSUER CLIENT_ID CLIENT_SECRET
The client must be configured with grant_types = ["client_credentials"] and
[clients.service_account] scopes = ["service-account", "jobs:read"].

Exits non-zero on the first failed check. Prints one line `SEEN <json list>` with every token it
was given, so the test can make sure none of them appears in hubauth's logs.
"""

import json
import sys
import time

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError

ISSUER, CLIENT_ID, SECRET = sys.argv[1], sys.argv[2], sys.argv[3]
SCOPES = ["service-account", "jobs:read"]
LIFETIME = 300  # [tokens] service_token_lifetime default
checks = 0
seen = []


def check(cond, what):
    global checks
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    checks += 1
    print(f"ok - {what}", flush=True)


meta = requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=10).json()
check(meta["issuer"] == ISSUER, "discovery issuer is exactly the issuer")
check("client_credentials" in meta.get("grant_types_supported", []), "discovery lists the client_credentials grant")
for key in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
    check(meta.get(key, "").startswith(ISSUER + "/"), f"discovery has {key}")


def session(method, scope):
    return OAuth2Session(
        CLIENT_ID,
        SECRET,
        scope=scope,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
    )


def introspect(client, token):
    res = client.introspect_token(meta["introspection_endpoint"], token=token)
    check(res.status_code == 200, f"introspection answers 200 (got {res.status_code})")
    check("no-store" in res.headers.get("cache-control", ""), "introspection answers are not cached")
    return res.json()


for method in ("client_secret_basic", "client_secret_post"):
    # A narrower scope than the account has.
    client = session(method, "jobs:read")
    before = int(time.time())
    token = client.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    after = int(time.time())
    seen.append(token["access_token"])
    check(token["token_type"].lower() == "bearer", f"{method}: token_type Bearer")
    check(token.get("scope") == "jobs:read", f"{method}: the granted scope is the one asked for")
    check(token.get("expires_in") == LIFETIME, f"{method}: expires_in {LIFETIME}")
    check("refresh_token" not in token and "id_token" not in token, f"{method}: no refresh token, no ID token")

    info = introspect(client, token["access_token"])
    check(info.get("active") is True, f"{method}: introspection says active")
    check(info.get("sub") == CLIENT_ID and info.get("client_id") == CLIENT_ID, f"{method}: sub and client_id are the service account")
    check(info.get("scope") == "jobs:read", f"{method}: introspected scope jobs:read")
    check(info.get("iss") == ISSUER, f"{method}: introspected iss is hubauth")
    exp = info.get("exp")
    check(isinstance(exp, int) and before + LIFETIME - 2 <= exp <= after + LIFETIME + 2, f"{method}: exp is about now + {LIFETIME} (got {exp}, now {after})")
    check(isinstance(info.get("iat"), int) and info["iat"] <= exp, f"{method}: iat before exp")
    check("username" not in info, f"{method}: no person behind a service token")

    # A service token is not a person's: userinfo refuses it.
    ui = requests.get(meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10)
    check(ui.status_code == 401, f"{method}: userinfo refuses a service token (401)")

    # Without a scope parameter: everything the account has.
    full = session(method, None).fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    seen.append(full["access_token"])
    check(sorted(full["scope"].split()) == sorted(SCOPES), f"{method}: no scope asked → all of the account's scopes")

    # A wider scope is refused.
    try:
        wider = session(method, "jobs:read jobs:write").fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        seen.append(wider.get("access_token", ""))
        check(False, f"{method}: a wider scope must be refused (got a token with scope {wider.get('scope')!r})")
    except OAuthError as e:
        check(e.error == "invalid_scope", f"{method}: a wider scope is refused with invalid_scope (got {e.error}: {e.description})")

    # Revocation, then introspection says inactive.
    res = client.revoke_token(meta["revocation_endpoint"], token=token["access_token"], token_type_hint="access_token")
    check(res.status_code == 200, f"{method}: revocation answers 200")
    check(introspect(client, token["access_token"]) == {"active": False}, f"{method}: after revocation introspection says only active=false")
    # The other token is untouched.
    check(introspect(client, full["access_token"]).get("active") is True, f"{method}: revoking one token leaves the other active")

# A wrong secret gets no token.
try:
    OAuth2Session(CLIENT_ID, SECRET + "x", token_endpoint_auth_method="client_secret_basic").fetch_token(
        meta["token_endpoint"], grant_type="client_credentials"
    )
    check(False, "a wrong client secret must be refused")
except OAuthError as e:
    check(e.error == "invalid_client", f"a wrong client secret is refused with invalid_client (got {e.error})")

# Someone else's token is not revealed: introspection by an unauthenticated caller fails.
res = requests.post(meta["introspection_endpoint"], data={"token": seen[0], "client_id": CLIENT_ID}, timeout=10)
check(res.status_code == 401 and res.json().get("error") == "invalid_client", "introspection without the client secret is refused (401 invalid_client)")

print("SEEN " + json.dumps(seen))
print(f"authlib service client: {checks} checks passed")
