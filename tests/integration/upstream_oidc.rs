//! The `oidc` and `google` connectors against a stand-in OpenID provider served by the test:
//! discovery, JWKS (with rotation), PKCE- and client-authenticated code exchange, userinfo,
//! refresh. Every check of the ID token (signature, kid, alg, iss, aud, exp, nonce) is tried
//! with a token that breaks exactly that rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hubauth::connectors::{ConnectorError, ConnectorKind, UpstreamTokens};
use hubauth::crypto::keys::SigningKey;
use hubauth::crypto::SigningAlgorithm;
use hubauth::web::upstream::token_context;
use serde_json::{json, Value};

use crate::harness::*;

pub const UPSTREAM_SECRET: &str = "upstream-secret-0123456789";

/// What the provider puts in (or does to) the next ID token.
#[derive(Clone, Default)]
pub struct Twist {
    pub claims: Value,
    /// Sign with a key the provider does not publish (a new one each time).
    pub unpublished_key: bool,
    /// Sign with the provider's one stray key: unpublished, and the same every time.
    pub stray_key: bool,
    /// Replace the signature algorithm (e.g. "none", "HS256").
    pub alg: Option<&'static str>,
}

struct Approved {
    claims: Value,
    nonce: String,
    challenge: String,
    redirect_uri: String,
    twist: Twist,
}

#[derive(Default)]
struct FakeState {
    issuer: String,
    /// The published keys; the first signs.
    keys: Vec<Arc<SigningKey>>,
    codes: HashMap<String, Approved>,
    access: HashMap<String, Value>,
    refresh: HashMap<String, Value>,
    jwks_fetches: usize,
    token_requests: Vec<HashMap<String, String>>,
    basic_auth_seen: Vec<Option<String>>,
    /// When set, userinfo answers with this `sub` (a mismatch test).
    userinfo_sub: Option<String>,
    discovery_issuer: Option<String>,
    /// The person's claims as they are now upstream (changed by the test), by `sub`.
    current: HashMap<String, Value>,
    refresh_grants: usize,
    /// Answer token requests with this status (an outage).
    token_outage: Option<StatusCode>,
    /// Token requests wait for a read guard: a test holding the write guard stalls them.
    token_gate: Arc<tokio::sync::RwLock<()>>,
    /// Every request to the token endpoint, answered or not.
    token_calls: usize,
    /// Fields of the discovery document replaced by these.
    discovery_overrides: Value,
    /// The token endpoint answers every request with this OAuth error (400).
    token_error: Option<Value>,
    /// The token endpoint answers only after this long.
    token_delay: Option<std::time::Duration>,
    /// An unpublished key the provider signs with when told (`Twist::stray_key`).
    stray_key: Option<Arc<SigningKey>>,
    /// Signs ID tokens with this key instead of the first published one (a withdrawn key).
    signer_override: Option<Arc<SigningKey>>,
    /// Fields merged into every published JWK (`alg`, `use`).
    jwk_extra: Value,
    /// The JWKS answer's `Cache-Control` header.
    jwks_cache_control: Option<String>,
}

#[derive(Clone)]
pub struct FakeOidc {
    pub issuer: String,
    state: Arc<Mutex<FakeState>>,
}

fn key(alg: SigningAlgorithm) -> Arc<SigningKey> {
    Arc::new(SigningKey::generate(alg).unwrap().0)
}

impl FakeOidc {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(FakeState {
            issuer: issuer.clone(),
            keys: vec![key(SigningAlgorithm::RS256)],
            stray_key: Some(key(SigningAlgorithm::RS256)),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { issuer, state }
    }

    /// The `[[connectors]]` entry for this provider.
    pub fn connector_toml(&self, id: &str, extra: &str) -> String {
        format!(
            r#"
[[connectors]]
type = "oidc"
id = "{id}"
name = "University login"
issuer = "{}"
client_id = "hubauth"
client_secret = "{UPSTREAM_SECRET}"
scope = ["openid", "profile", "email", "offline_access"]
{extra}
"#,
            self.issuer
        )
    }

    /// The person approves the authorization request at `authorize_url`; returns the code.
    pub fn approve(&self, authorize_url: &url::Url, claims: Value, twist: Twist) -> String {
        let q: HashMap<String, String> = authorize_url.query_pairs().into_owned().collect();
        assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
        assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"), "PKCE S256 is sent");
        let code = hubauth::crypto::random::random_value();
        self.state.lock().unwrap().codes.insert(
            code.clone(),
            Approved {
                claims,
                // Plain OAuth2 connectors send none.
                nonce: q.get("nonce").cloned().unwrap_or_default(),
                challenge: q["code_challenge"].clone(),
                redirect_uri: q["redirect_uri"].clone(),
                twist,
            },
        );
        code
    }

    pub fn rotate_keys(&self) {
        let mut s = self.state.lock().unwrap();
        let new = key(SigningAlgorithm::ES256);
        s.keys.insert(0, new);
        s.keys.truncate(1);
    }

    /// The provider stops publishing the key it signs with (it was compromised, say), but an
    /// attacker holding it keeps signing: the published set gets a new key only.
    pub fn withdraw_signing_key(&self) {
        let mut s = self.state.lock().unwrap();
        s.signer_override = Some(s.keys[0].clone());
        s.keys = vec![key(SigningAlgorithm::RS256)];
    }

    /// Every published JWK gets these fields too (e.g. `{"alg": "RS384"}`, `{"use": "enc"}`).
    pub fn set_jwk_extra(&self, extra: Value) {
        self.state.lock().unwrap().jwk_extra = extra;
    }

    pub fn set_jwks_cache_control(&self, value: &str) {
        self.state.lock().unwrap().jwks_cache_control = Some(value.into());
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    pub fn set_userinfo_sub(&self, sub: &str) {
        self.state.lock().unwrap().userinfo_sub = Some(sub.into());
    }

    /// The discovery document says `value` for `field`.
    pub fn set_discovery_field(&self, field: &str, value: &str) {
        let mut s = self.state.lock().unwrap();
        if s.discovery_overrides.is_null() {
            s.discovery_overrides = json!({});
        }
        s.discovery_overrides[field] = json!(value);
    }

    pub fn set_discovery_issuer(&self, issuer: &str) {
        self.state.lock().unwrap().discovery_issuer = Some(issuer.into());
    }

    /// The person's upstream data changes (e.g. removed from a group).
    pub fn set_claims(&self, claims: Value) {
        let sub = claims["sub"].as_str().unwrap().to_string();
        self.state.lock().unwrap().current.insert(sub, claims);
    }

    pub fn refresh_grants(&self) -> usize {
        self.state.lock().unwrap().refresh_grants
    }

    /// The token endpoint refuses everything with this error body (`{"error": …}`).
    pub fn set_token_error(&self, body: Value) {
        self.state.lock().unwrap().token_error = Some(body);
    }

    pub fn set_token_delay(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().token_delay = Some(delay);
    }

    pub fn token_calls(&self) -> usize {
        self.state.lock().unwrap().token_calls
    }

    pub fn outage(&self, status: Option<StatusCode>) {
        self.state.lock().unwrap().token_outage = status;
    }

    /// Stalls the token endpoint (a slow provider) until the guard is dropped.
    pub async fn hold_token_endpoint(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        let gate = self.state.lock().unwrap().token_gate.clone();
        gate.write_owned().await
    }

    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh.clear();
    }

    pub fn last_token_request(&self) -> (HashMap<String, String>, Option<String>) {
        let s = self.state.lock().unwrap();
        (s.token_requests.last().cloned().unwrap(), s.basic_auth_seen.last().cloned().unwrap())
    }
}

async fn discovery(State(s): State<Arc<Mutex<FakeState>>>) -> Json<Value> {
    let s = s.lock().unwrap();
    let i = &s.issuer;
    let mut doc = json!({
        "issuer": s.discovery_issuer.clone().unwrap_or_else(|| i.clone()),
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    });
    for (field, value) in s.discovery_overrides.as_object().into_iter().flatten() {
        doc[field] = value.clone();
    }
    Json(doc)
}

async fn jwks(State(s): State<Arc<Mutex<FakeState>>>) -> Response {
    let mut s = s.lock().unwrap();
    s.jwks_fetches += 1;
    let keys: Vec<Value> = s
        .keys
        .iter()
        .map(|k| {
            let mut jwk = k.public_jwk();
            for (name, value) in s.jwk_extra.as_object().into_iter().flatten() {
                match value {
                    Value::Null => drop(jwk.as_object_mut().unwrap().remove(name)),
                    _ => jwk[name] = value.clone(),
                }
            }
            jwk
        })
        .collect();
    let mut res = Json(json!({ "keys": keys })).into_response();
    if let Some(cc) = &s.jwks_cache_control {
        res.headers_mut().insert("cache-control", cc.parse().unwrap());
    }
    res
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn id_token(s: &FakeState, claims: &Value, nonce: Option<&str>, twist: &Twist) -> String {
    let mut body = json!({
        "iss": s.issuer, "aud": "hubauth", "iat": START, "exp": START + 300,
    });
    if let Some(n) = nonce {
        body["nonce"] = json!(n);
    }
    for (k, v) in claims.as_object().unwrap() {
        body[k] = v.clone();
    }
    for (k, v) in twist.claims.as_object().map(|o| o.iter()).into_iter().flatten() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    let signer = match (&s.signer_override, twist.unpublished_key, &s.stray_key) {
        (_, true, _) => key(SigningAlgorithm::RS256),
        (_, false, Some(stray)) if twist.stray_key => stray.clone(),
        (Some(withdrawn), false, _) => withdrawn.clone(),
        _ => s.keys[0].clone(),
    };
    let jwt = signer.sign_jwt(&body).unwrap();
    match twist.alg {
        None => jwt,
        Some(alg) => {
            let header = URL_SAFE_NO_PAD.encode(json!({ "alg": alg, "kid": signer.kid }).to_string());
            let rest = jwt.split_once('.').unwrap().1;
            let (payload, _) = rest.split_once('.').unwrap();
            if alg == "none" {
                format!("{header}.{payload}.")
            } else {
                format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(b"forged"))
            }
        }
    }
}

fn issue(s: &mut FakeState, claims: &Value, nonce: Option<&str>, twist: &Twist) -> Value {
    let access = hubauth::crypto::random::random_value();
    let refresh = hubauth::crypto::random::random_value();
    s.access.insert(access.clone(), claims.clone());
    s.refresh.insert(refresh.clone(), claims.clone());
    json!({
        "access_token": access, "token_type": "Bearer", "expires_in": 60,
        "refresh_token": refresh, "id_token": id_token(s, claims, nonce, twist),
        "scope": "openid profile email offline_access",
    })
}

async fn token(
    State(s): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (gate, delay) = {
        let mut s = s.lock().unwrap();
        s.token_calls += 1;
        (s.token_gate.clone(), s.token_delay)
    };
    let _pass = gate.read().await;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut s = s.lock().unwrap();
    if let Some(status) = s.token_outage {
        return (status, "upstream is down").into_response();
    }
    if let Some(error) = &s.token_error {
        return (StatusCode::BAD_REQUEST, Json(error.clone())).into_response();
    }
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    s.token_requests.push(form.clone());
    s.basic_auth_seen.push(basic.clone());
    let expected = format!("Basic {}", STANDARD.encode(format!("hubauth:{UPSTREAM_SECRET}")));
    let body_auth = form.get("client_id").map(String::as_str) == Some("hubauth")
        && form.get("client_secret").map(String::as_str) == Some(UPSTREAM_SECRET);
    if basic.as_deref() != Some(expected.as_str()) && !body_auth {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(approved) = form.get("code").and_then(|c| s.codes.remove(c)) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let challenge = URL_SAFE_NO_PAD.encode(hubauth::crypto::random::sha256(verifier.as_bytes()));
            if challenge != approved.challenge || form.get("redirect_uri") != Some(&approved.redirect_uri) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let nonce = Some(approved.nonce.as_str()).filter(|n| !n.is_empty());
            Json(issue(&mut s, &approved.claims, nonce, &approved.twist)).into_response()
        }
        Some("refresh_token") => {
            // Rotating refresh tokens: the old one is spent.
            let Some(claims) = form.get("refresh_token").and_then(|r| s.refresh.remove(r)) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            s.refresh_grants += 1;
            let sub = claims["sub"].as_str().unwrap_or_default().to_string();
            let claims = s.current.get(&sub).cloned().unwrap_or(claims);
            Json(issue(&mut s, &claims, None, &Twist::default())).into_response()
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

async fn userinfo(State(s): State<Arc<Mutex<FakeState>>>, headers: HeaderMap) -> Response {
    let s = s.lock().unwrap();
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| s.access.get(t)) {
        Some(claims) => {
            let mut c = claims.clone();
            c["userinfo_only"] = json!("from userinfo");
            if let Some(sub) = &s.userinfo_sub {
                c["sub"] = json!(sub);
            }
            Json(c).into_response()
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

pub fn alice() -> Value {
    json!({
        "sub": "a1b2", "preferred_username": "alice", "name": "Alice Liddell", "email": "alice@uni.example",
        "email_verified": true, "realm_access": { "roles": ["physics", "hpc-users"] },
    })
}

pub async fn setup(extra: &str) -> (TestApp, FakeOidc) {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&fake.connector_toml("uni", extra)).await;
    (app, fake)
}

const KEYCLOAK_GROUPS: &str = r#"groups_claim = "realm_access.roles""#;

/// Logs in through the provider with `claims`/`twist`; the callback's response.
pub async fn upstream_login(app: &TestApp, fake: &FakeOidc, claims: Value, twist: Twist) -> (TestResponse, Pkce) {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let code = fake.approve(&up, claims, twist);
    (browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await, pkce)
}

#[tokio::test]
async fn a_login_through_an_oidc_provider_carries_its_identity_and_groups_to_the_client() {
    let (app, fake) = setup(KEYCLOAK_GROUPS).await;
    let (res, pkce) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let code = res.query()["code"].clone();
    let tokens = app.exchange(&code, &pkce).await.json();
    let id = verify_jwt(&app, tokens["id_token"].as_str().unwrap(), "hub").await;
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["groups"], json!(["uni:physics", "uni:hpc-users"]), "the provider's groups, in its namespace");
    assert_eq!(id["email"], "alice@uni.example");
    let info = app.userinfo(tokens["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["groups"], json!(["uni:physics", "uni:hpc-users"]));

    // hubauth authenticated with client_secret_basic and proved PKCE.
    let (form, basic) = fake.last_token_request();
    assert!(basic.is_some_and(|b| b.starts_with("Basic ")));
    assert!(!form.contains_key("client_secret"));
    assert!(form.contains_key("code_verifier"));

    // The upstream tokens are kept, sealed and bound to this identity.
    let stored = app.store.upstream_of("uni", "a1b2").await.unwrap().expect("identity stored");
    let sealed = stored.tokens_sealed.unwrap();
    let sealer = test_sealer();
    let opened = sealer.open(&token_context("uni", "a1b2"), &sealed).unwrap();
    let kept = UpstreamTokens::from_payload(&opened).unwrap();
    assert!(!sealed.contains(kept.access_token.expose()));
    assert!(kept.refresh_token.is_some());
    assert_eq!(stored.tokens_expire_at, Some(START + 60));
    assert!(sealer.open(&token_context("uni", "someone-else"), &sealed).is_err());
    let memberships: Value = serde_json::from_str(&stored.memberships_json).unwrap();
    assert_eq!(memberships[0], json!({"kind": "claim", "value": "physics"}));
}

#[tokio::test]
async fn userinfo_claims_are_merged_and_must_be_about_the_same_account() {
    let (app, fake) = setup(r#"groups_claim = "userinfo_only""#).await;
    let (res, pkce) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    let tokens = app.exchange(&res.query()["code"], &pkce).await.json();
    let info = app.userinfo(tokens["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["groups"], json!(["uni:from userinfo"]), "a claim only userinfo has was merged");

    fake.set_userinfo_sub("someone-else");
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert!(res.text().contains("another account"), "{}", res.text());
}

/// Each broken rule: the login fails with a page naming the provider, and no account appears.
#[tokio::test]
async fn id_tokens_that_break_a_rule_are_refused() {
    let cases: Vec<(&str, Twist)> = vec![
        ("wrong audience", Twist { claims: json!({"aud": "another-client"}), ..Default::default() }),
        ("wrong issuer", Twist { claims: json!({"iss": "https://evil.example"}), ..Default::default() }),
        ("wrong nonce", Twist { claims: json!({"nonce": "replayed"}), ..Default::default() }),
        ("no nonce", Twist { claims: json!({"nonce": null}), ..Default::default() }),
        ("expired", Twist { claims: json!({"exp": START - 600}), ..Default::default() }),
        ("issued in the future", Twist { claims: json!({"iat": START + 3600}), ..Default::default() }),
        ("unpublished key", Twist { unpublished_key: true, ..Default::default() }),
        ("alg none", Twist { alg: Some("none"), ..Default::default() }),
        ("alg HS256", Twist { alg: Some("HS256"), ..Default::default() }),
    ];
    let (app, fake) = setup(KEYCLOAK_GROUPS).await;
    for (what, twist) in cases {
        let (res, _) = upstream_login(&app, &fake, alice(), twist).await;
        assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{what}: {}", res.text());
        let page = res.text();
        assert!(page.contains("University login"), "{what}: the page names the provider");
        assert!(page.contains("ID token"), "{what}: {page}");
        assert!(app.store.user_by_username("alice").await.unwrap().is_none(), "{what}: no user created");
    }
    // And a clean token still works afterwards.
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
}

#[tokio::test]
async fn a_provider_key_rotation_is_followed_by_fetching_its_keys_again() {
    let (app, fake) = setup("").await;
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 1, "known keys are cached");
    fake.rotate_keys();
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(fake.jwks_fetches(), 2, "an unknown kid triggered one fetch");
}

#[tokio::test]
async fn the_provider_state_works_once_and_only_in_the_browser_that_started_it() {
    let fake = FakeOidc::start().await;
    let two = format!("{}{}", fake.connector_toml("uni", ""), fake.connector_toml("other", ""));
    let app = TestApp::with_extra_toml(&two).await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    assert_eq!(up.query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1, format!("{ISSUER}/callback/uni"));

    // Another browser (no binding cookie) holding a leaked state cannot finish this login, nor
    // cancel it: the attempt is checked before it is spent.
    let code = fake.approve(&up, alice(), Twist::default());
    let mut other = app.browser();
    let res = other.upstream_callback("uni", &[("code", &code), ("state", &state)]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("another browser"), "{}", res.text());
    // Nor through another connector's callback.
    let res = browser.upstream_callback("other", &[("code", &code), ("state", &state)]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());
    let res = browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "the real browser still signs in: {}", res.text());
    let res = browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "the state works once");

    // Unknown, missing and replayed states are refused with a clear page.
    let res = browser.upstream_callback("uni", &[("code", "x"), ("state", "made-up")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("expired or was already used"));
    let res = browser.upstream_callback("uni", &[("code", "x")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_refusal_at_the_provider_is_explained_and_no_code_is_issued() {
    let (app, _fake) = setup("").await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let res = browser
        .upstream_callback(
            "uni",
            &[("error", "access_denied"), ("error_description", "End-User aborted interaction"), ("state", &state)],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let page = res.text();
    assert!(page.contains("Sign-in with University login did not go through"), "{page}");
    assert!(page.contains("Try again"), "a way back is offered");
    assert!(res.headers.get("location").is_none());
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let (app, fake) = setup("").await;
    fake.set_discovery_issuer("https://impostor.example");
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let res = browser.get(&AuthParams::hub(&pkce).set("connector", "uni").uri()).await;
    let res = browser.get(&format!("/login?{}", res.location().query().unwrap())).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    assert!(res.text().contains("impostor.example"));
}

#[tokio::test]
async fn client_secret_post_sends_the_secret_in_the_body() {
    let (app, fake) = setup(r#"token_endpoint_auth = "client_secret_post""#).await;
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let (form, basic) = fake.last_token_request();
    assert_eq!(form.get("client_secret").map(String::as_str), Some(UPSTREAM_SECRET));
    assert!(basic.is_none());
}

fn redirect_connector(app: &TestApp, id: &str) -> Arc<dyn hubauth::connectors::RedirectConnector> {
    match &app.state.connectors.get(id).unwrap().kind {
        ConnectorKind::Redirect(c) => c.clone(),
        _ => panic!("not a redirect connector"),
    }
}

fn stored_tokens(sealed: &str, id: &str, subject: &str) -> UpstreamTokens {
    UpstreamTokens::from_payload(&test_sealer().open(&token_context(id, subject), sealed).unwrap()).unwrap()
}

#[tokio::test]
async fn refresh_rotates_upstream_tokens_and_reports_an_ended_session() {
    let (app, fake) = setup(KEYCLOAK_GROUPS).await;
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let stored = app.store.upstream_of("uni", "a1b2").await.unwrap().unwrap();
    let tokens = stored_tokens(stored.tokens_sealed.as_deref().unwrap(), "uni", "a1b2");
    let connector = redirect_connector(&app, "uni");

    let refreshed = connector.refresh(&tokens, "a1b2", START + 30).await.unwrap();
    assert_ne!(refreshed.tokens.access_token.expose(), tokens.access_token.expose());
    assert_ne!(
        refreshed.tokens.refresh_token.as_ref().unwrap().expose(),
        tokens.refresh_token.as_ref().unwrap().expose()
    );
    assert_eq!(refreshed.identity.groups, vec!["physics", "hpc-users"]);

    // The spent refresh token is refused upstream: the session is over, said as such.
    match connector.refresh(&tokens, "a1b2", START + 40).await {
        Err(ConnectorError::SessionEnded(_)) => {}
        other => panic!("expected SessionEnded, got {:?}", other.map(|l| l.identity)),
    }
    // A refresh that comes back for another account is refused.
    assert!(connector.refresh(&refreshed.tokens, "not-alice", START + 50).await.is_err());
}

fn google_toml(fake: &FakeOidc, domains: &str) -> String {
    format!(
        r#"
[[connectors]]
type = "google"
id = "google"
issuer = "{}"
client_id = "hubauth"
client_secret = "{UPSTREAM_SECRET}"
hosted_domain = [{domains}]
"#,
        fake.issuer
    )
}

#[tokio::test]
async fn google_admits_only_verified_accounts_of_the_hosted_domains_by_the_id_token() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&google_toml(&fake, r#""uni.example""#)).await;
    let login = |claims: Value| {
        let (app, fake) = (&app, &fake);
        async move {
            let pkce = Pkce::new();
            let mut browser = app.browser();
            let up = browser.start_upstream(&AuthParams::hub(&pkce), "google").await;
            assert_eq!(
                up.query_pairs().find(|(k, _)| k == "hd").map(|(_, v)| v.into_owned()).as_deref(),
                Some("uni.example")
            );
            let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
            let code = fake.approve(&up, claims, Twist::default());
            browser.upstream_callback("google", &[("code", &code), ("state", &state)]).await
        }
    };
    let person = |hd: Option<&str>, verified: bool| {
        let mut c = json!({"sub": "g-1", "email": "bob@uni.example", "email_verified": verified, "name": "Bob"});
        if let Some(hd) = hd {
            c["hd"] = json!(hd);
        }
        c
    };
    let res = login(person(None, true)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "a personal account");
    assert!(res.text().contains("personal Google accounts cannot sign in here"));
    let res = login(person(Some("other.example"), true)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.text().contains("other.example"));
    let res = login(person(Some("uni.example"), false)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "unverified e-mail");
    let res = login(person(Some("uni.example"), true)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert!(
        app.store.user_by_username("bob@uni.example").await.unwrap().is_some(),
        "username is the e-mail by default"
    );
}

#[tokio::test]
async fn an_unknown_connector_in_the_request_goes_back_to_the_client_as_an_error() {
    let (app, _fake) = setup("").await;
    let pkce = Pkce::new();
    let res = app.get(&AuthParams::hub(&pkce).set("connector", "nope").uri()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.query()["error"], "invalid_request");
}

#[tokio::test]
async fn the_chooser_lists_every_connector_by_name() {
    let (app, _fake) = setup("").await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let res = browser.get(&AuthParams::hub(&pkce).uri()).await;
    let page = browser.get(&format!("/login?{}", res.location().query().unwrap())).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("Continue with Demo accounts"), "{html}");
    assert!(html.contains("Continue with University login"));
    assert!(html.contains("connector=uni"));
}

#[tokio::test]
async fn without_a_crypt_key_the_server_refuses_to_start_when_connectors_keep_tokens() {
    let fake = FakeOidc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubauth.db");
    let toml = format!("{}\n{}", config_toml(db.to_str().unwrap()), fake.connector_toml("uni", ""));
    let config = hubauth::config::Config::parse(&toml, &dir.path().join("hubauth.toml")).unwrap();
    let store: Arc<dyn hubauth::store::Store> =
        Arc::new(hubauth::store::SqliteStore::open(&config.storage.url).await.unwrap());
    let clock = Arc::new(hubauth::clock::MockClock::new(START));
    let err = hubauth::app::AppState::new(config, store, clock, None).await.err().expect("refused");
    assert!(err.to_string().contains("HUBAUTH_CRYPT_KEY is not set"), "{err}");
}

#[tokio::test]
async fn group_rules_rename_and_filter_the_providers_groups() {
    let rules = r#"groups_claim = "realm_access.roles"
[[connectors.groups]]
from = "claim"
name = "kc:{value}"
only = ["physics"]
"#;
    let (app, fake) = setup(rules).await;
    let (res, pkce) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    let tokens = app.exchange(&res.query()["code"], &pkce).await.json();
    let info = app.userinfo(tokens["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["groups"], json!(["uni:kc:physics"]), "the template, under the connector's prefix");
    // The raw memberships are kept whole, for policies and later recomputation.
    let stored = app.store.upstream_of("uni", "a1b2").await.unwrap().unwrap();
    assert!(stored.memberships_json.contains("hpc-users"));
}

#[test]
fn bad_group_templates_and_presets_are_named_in_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = config_toml("hubauth.db");
    for (extra, key, why) in [
        (
            "[[connectors.groups]]\nfrom = \"claim\"\nname = \"{org}\"\n",
            "connectors[0].groups[0].name",
            "{org} is not a field of claim",
        ),
        ("groups_preset = \"berkeley\"\n", "connectors[0].groups_preset", "canvasauthenticator"),
        (
            "[[connectors.groups]]\nfrom = \"gitlab_group\"\nname = \"x\"\n",
            "connectors[0].groups[0].from",
            "unknown variant",
        ),
    ] {
        // Appended to the dev connector, which is the last table in the base config... so place
        // it right after `id = "dev"`.
        let toml = base.replace("type = \"dev\"\nid = \"dev\"\n", &format!("type = \"dev\"\nid = \"dev\"\n{extra}"));
        let err = hubauth::config::Config::parse(&toml, &dir.path().join("h.toml")).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(why), "{err}");
    }
}
