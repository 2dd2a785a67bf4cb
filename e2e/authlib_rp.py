"""A second strict relying party: Authlib (PyPI) runs the code flow against `hubauth demo`.

Usage: python authlib_rp.py ISSUER CLIENT_SECRET
Exits non-zero on the first failed check. The "browser" is a requests.Session (it keeps
cookies); Authlib does PKCE, state, the token request, ID-token validation against the JWKS
(signature, iss, aud, exp, nonce, at_hash), userinfo, refresh, revocation and introspection.
"""

import html
import re
import secrets
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken

ISSUER, SECRET = sys.argv[1], sys.argv[2]
CLIENT_ID = "jupyterhub"
REDIRECT = "http://127.0.0.1:8000/hub/oauth_callback"
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    checks += 1
    print(f"ok - {what}")


meta = requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=10).json()
check(meta["issuer"] == ISSUER, "discovery issuer is exactly the issuer")
jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())


def login(client, username, password):
    """Authorization request -> hubauth login form -> redirect back; returns (callback URL, verifier, nonce)."""
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, _state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    browser = requests.Session()
    page = browser.get(url, timeout=10)
    check(page.status_code == 200 and "<form" in page.text, "the authorization request leads to the login form")
    action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1))
    fields = {name: html.unescape(value) for name, value in re.findall(r'name="(request|csrf)" value="([^"]*)"', page.text)}
    done = browser.post(action, data={**fields, "username": username, "password": password}, allow_redirects=False, timeout=10)
    check(done.status_code == 303, "the login form answers 303")
    location = done.headers["location"]
    check(location.startswith(REDIRECT + "?"), "the browser is sent back to the registered redirect_uri")
    check(f"iss={requests.utils.quote(ISSUER, safe='')}" in location, "the authorization response carries iss (RFC 9207)")
    return location, verifier, nonce


def validate_id_token(token, nonce):
    claims = jwt.decode(
        token["id_token"],
        jwks,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": ISSUER}},
        claims_params={"nonce": nonce, "client_id": CLIENT_ID, "access_token": token["access_token"]},
    )
    claims.validate()
    return claims


for auth_method in ("client_secret_basic", "client_secret_post"):
    client = OAuth2Session(
        CLIENT_ID,
        SECRET,
        scope="openid profile email groups offline_access",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
    )
    callback, verifier, nonce = login(client, "sam", "sam-demo")
    token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    check(token["token_type"].lower() == "bearer", f"{auth_method}: token_type Bearer")
    claims = validate_id_token(token, nonce)
    check(claims["preferred_username"] == "sam" and claims["groups"] == ["students"], f"{auth_method}: ID token verified (signature, iss, aud, exp, nonce, at_hash) with sam's groups")

    info = client.get(meta["userinfo_endpoint"], timeout=10).json()
    check(info["sub"] == claims["sub"] and info["groups"] == ["students"], f"{auth_method}: userinfo matches the ID token")

    old_refresh = token["refresh_token"]
    refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
    check(refreshed["refresh_token"] != old_refresh, f"{auth_method}: refresh rotates the refresh token")
    refreshed_claims = validate_id_token(refreshed, None)
    check(refreshed_claims["sub"] == claims["sub"] and refreshed_claims["auth_time"] == claims["auth_time"], f"{auth_method}: the refreshed ID token verifies, same sub and auth_time")

    active = client.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
    check(active["active"] is True and active["username"] == "sam", f"{auth_method}: introspection shows the new access token active")

    # Once its successor has been used, the rotated-out token is no lost-answer retry (the reuse
    # grace does not apply): it is refused and revokes the family.
    newest = client.refresh_token(meta["token_endpoint"], refresh_token=refreshed["refresh_token"])
    reuse = requests.post(
        meta["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": old_refresh},
        auth=(CLIENT_ID, SECRET),
        timeout=10,
    )
    check(reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant", f"{auth_method}: the rotated-out refresh token is refused")
    after = client.introspect_token(meta["introspection_endpoint"], token=newest["access_token"]).json()
    check(after["active"] is False, f"{auth_method}: reuse revoked the whole family")

# Revocation (RFC 7009) through Authlib, on a fresh login.
client = OAuth2Session(CLIENT_ID, SECRET, scope="openid profile groups", redirect_uri=REDIRECT, code_challenge_method="S256")
callback, verifier, nonce = login(client, "ada", "ada-demo")
token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
check(validate_id_token(token, nonce)["groups"] == ["admins"], "ada's ID token carries groups [admins]")
revoked = client.revoke_token(meta["revocation_endpoint"], token=token["access_token"], token_type_hint="access_token")
check(revoked.status_code == 200, "revocation answers 200")
denied = requests.get(meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10)
check(denied.status_code == 401 and "invalid_token" in denied.headers.get("www-authenticate", ""), "a revoked access token gets 401 invalid_token")

print(f"authlib RP: {checks} checks passed")
