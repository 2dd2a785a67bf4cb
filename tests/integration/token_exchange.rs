//! Token custody: upstream tokens handed out by token exchange (RFC 8693), fresh, refreshed once
//! for many callers, refused when the upstream session ended or the hub stopped the server;
//! service accounts with client_credentials.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::harness::*;
use crate::upstream_oidc::{alice, FakeOidc, Twist};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const HUB_TOKEN: &str = "urn:hubauth:params:oauth:token-type:jupyterhub-api-token";

/// A confidential client that exchanges the hub's access tokens for `uni` tokens.
pub const SPAWNER_CLIENT: &str = r#"[[clients]]
id = "spawner"
secret = "spawner-secret-0123456789"
grant_types = ["token_exchange"]
redirect_uris = []
[clients.token_exchange]
audiences = ["uni"]
subject_token_types = ["access_token"]
subject_clients = ["hub"]"#;

fn extra(fake: &FakeOidc, hub_api: &str) -> String {
    format!(
        r#"
[tokens]
upstream_refresh_skew = "10s"
[jupyterhub]
api_url = "{hub_api}"
{SPAWNER_CLIENT}
{}
[[clients]]
id = "jobs"
secret = "jobs-secret-0123456789ab"
grant_types = ["client_credentials"]
redirect_uris = []
[clients.service_account]
scopes = ["service-account", "jobs:read"]
{}"#,
        notebook_client("notebooks", ""),
        fake.connector_toml("uni", r#"groups_claim = "realm_access.roles""#)
    )
}

/// A public client that exchanges JupyterHub tokens for `uni` tokens, with `rule` added to its rule.
fn notebook_client(id: &str, rule: &str) -> String {
    format!(
        "[[clients]]\nid = \"{id}\"\npublic = true\ngrant_types = [\"token_exchange\"]\nredirect_uris = []\n\
         [clients.token_exchange]\naudiences = [\"uni\"]\nsubject_token_types = [\"jupyterhub\"]\n{rule}"
    )
}

/// A stand-in for JupyterHub's REST API: `GET /hub/api/user` answers for known tokens.
async fn fake_hub(tokens: Vec<(&'static str, Value)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/hub/api", listener.local_addr().unwrap());
    let tokens = Arc::new(tokens);
    let app = Router::new().route(
        "/hub/api/user",
        get(move |headers: HeaderMap| {
            let tokens = tokens.clone();
            async move {
                let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                match tokens.iter().find(|(t, _)| presented == format!("token {t}")) {
                    Some((_, who)) => (StatusCode::OK, Json(who.clone())),
                    None => (StatusCode::FORBIDDEN, Json(json!({"status": 403, "message": "Forbidden"}))),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// What JupyterHub 6 answers at `GET /hub/api/user` for a token of user `name`; `session_id` is
/// set for OAuth tokens (issued through a browser session) only.
fn hub_user(name: &str, session_id: Option<&str>, scopes: &[&str]) -> Value {
    json!({"kind": "user", "name": name, "admin": false, "groups": [], "session_id": session_id,
           "token_id": "a1", "scopes": scopes})
}

/// alice's server's `JUPYTERHUB_API_TOKEN` with JupyterHub's default server scopes.
fn alice_server() -> Value {
    hub_user("alice", None, &["access:servers!server=alice/", "users:activity!user=alice"])
}

async fn setup() -> (TestApp, FakeOidc, Value) {
    setup_with(
        vec![
            ("alice-server-token", alice_server()),
            ("a-service-token", json!({"kind": "service", "name": "cull-idle", "scopes": []})),
        ],
        "",
    )
    .await
}

/// A hub answering for `hub_tokens`, hubauth with `more_toml` added, and alice signed in to
/// the `hub` client through the `uni` connector (its token response returned).
async fn setup_with(hub_tokens: Vec<(&'static str, Value)>, more_toml: &str) -> (TestApp, FakeOidc, Value) {
    let fake = FakeOidc::start().await;
    let hub = fake_hub(hub_tokens).await;
    let app = TestApp::with_extra_toml(&format!("{}\n{more_toml}", extra(&fake, &hub))).await;
    let pkce = Pkce::new();
    let code = sign_in_alice(&app, &fake, &AuthParams::hub(&pkce)).await;
    let tokens = app.exchange(&code, &pkce).await.json();
    (app, fake, tokens)
}

/// alice signs in at `uni` in a fresh browser for the client `params` name; returns hubauth's code.
pub async fn sign_in_alice(app: &TestApp, fake: &FakeOidc, params: &AuthParams) -> String {
    let mut browser = app.browser();
    let up = browser.start_upstream(params, "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let code = fake.approve(&up, alice(), Twist::default());
    let res = browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    res.query()["code"].clone()
}

/// A notebook's exchange of a JupyterHub token through the public client `client_id`.
async fn notebook_exchange(app: &TestApp, client_id: &str, subject: &str) -> TestResponse {
    let form = [
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", HUB_TOKEN),
        ("audience", "uni"),
        ("client_id", client_id),
    ];
    app.post_form("/token", &form, None).await
}

async fn exchange(app: &TestApp, subject: &str, subject_type: &str, audience: &str) -> TestResponse {
    let form = [
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", subject_type),
        ("audience", audience),
    ];
    app.post_form("/token", &form, Some(("spawner", "spawner-secret-0123456789"))).await
}

#[tokio::test]
async fn a_spawner_gets_the_users_fresh_upstream_token_and_it_is_refreshed_near_expiry() {
    let (app, fake, tokens) = setup().await;
    let hub_at = tokens["access_token"].as_str().unwrap();
    let res = exchange(&app, hub_at, AT, "uni").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let first = res.json();
    assert_eq!(first["issued_token_type"], AT);
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 60);
    assert!(first.get("refresh_token").is_none(), "upstream refresh tokens never leave hubauth");
    assert_eq!(fake.refresh_grants(), 0, "fresh enough: no upstream call");

    // 51 s later the token is within the 10 s skew of expiry: refreshed, rotated, handed out.
    app.clock.advance(51);
    let second = exchange(&app, hub_at, AT, "uni").await.json();
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(second["expires_in"], 60);
    assert_eq!(fake.refresh_grants(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_exchanges_cause_exactly_one_upstream_refresh() {
    let (app, fake, tokens) = setup().await;
    let hub_at = tokens["access_token"].as_str().unwrap().to_string();
    app.clock.advance(55);
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (app, hub_at) = (app.clone(), hub_at.clone());
            tokio::spawn(async move { exchange(&app, &hub_at, AT, "uni").await.json()["access_token"].clone() })
        })
        .collect();
    let mut handed_out = std::collections::HashSet::new();
    for t in tasks {
        let token = t.await.unwrap();
        assert!(token.is_string());
        handed_out.insert(token.to_string());
    }
    assert_eq!(fake.refresh_grants(), 1, "one refresh for a hundred callers (the provider rotates refresh tokens)");
    assert_eq!(handed_out.len(), 1, "everyone got the refreshed token");
}

#[tokio::test]
async fn when_the_upstream_session_ends_callers_are_told_to_sign_in_again_and_the_hub_session_ends() {
    let (app, fake, tokens) = setup().await;
    let hub_at = tokens["access_token"].as_str().unwrap();
    fake.revoke_refresh_tokens();
    app.clock.advance(55);
    let res = exchange(&app, hub_at, AT, "uni").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error(), "login_required");
    assert!(res.json()["error_description"].as_str().unwrap().contains("University login"));
    // The hub's own session ends too, so the person's next hub request leads to a new sign-in.
    assert_eq!(app.userinfo(hub_at).await.status, StatusCode::UNAUTHORIZED);
    let res = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!(res.error(), "invalid_grant");
    let audit = app.store.audit_events(10).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "upstream_session_ended"));
}

#[tokio::test]
async fn a_notebook_exchanges_its_jupyterhub_token_and_a_stopped_server_gets_nothing() {
    let (app, _fake, _tokens) = setup().await;
    let notebook = |subject: &'static str| {
        let app = &app;
        async move {
            let form = [
                ("grant_type", EXCHANGE),
                ("subject_token", subject),
                ("subject_token_type", HUB_TOKEN),
                ("audience", "uni"),
                ("client_id", "notebooks"),
            ];
            app.post_form("/token", &form, None).await
        }
    };
    let res = notebook("alice-server-token").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["issued_token_type"], AT);
    // The hub no longer knows the token (server stopped): refused at once.
    let res = notebook("stopped-server-token").await;
    assert_eq!(res.error(), "invalid_grant");
    // A service's hub token is not a user's.
    assert_eq!(notebook("a-service-token").await.error(), "invalid_grant");
    // The notebook client may not present hubauth access tokens, nor ask for other audiences.
    let form = [
        ("grant_type", EXCHANGE),
        ("subject_token", "x"),
        ("subject_token_type", AT),
        ("audience", "uni"),
        ("client_id", "notebooks"),
    ];
    assert_eq!(app.post_form("/token", &form, None).await.error(), "invalid_request");
}

#[tokio::test]
async fn a_jupyterhub_token_is_exchanged_only_when_it_is_the_users_own_server_token_or_carries_the_exchange_scope() {
    let identify = ["read:users:groups!user=alice", "read:users:name!user=alice"];
    let (app, _fake, _tokens) = setup_with(
        vec![
            ("alice-server-token", alice_server()),
            (
                "alice-named-server-token",
                hub_user("alice", None, &["access:servers!server=alice/gpu", "users:activity!user=alice"]),
            ),
            ("alice-granted-token", hub_user("alice", Some("s1"), &["custom:hubauth:exchange", identify[1]])),
            ("alice-granted-filtered", hub_user("alice", None, &["custom:hubauth:exchange!user=alice"])),
            // identify-only OAuth tokens the hub gave a service and bob's shared server when alice visited them
            (
                "service-oauth",
                hub_user("alice", Some("s1"), &["access:services!service=viewer", identify[0], identify[1]]),
            ),
            (
                "shared-server-oauth",
                hub_user("alice", Some("s1"), &["access:servers!server=bob/", identify[0], identify[1]]),
            ),
            // her own server's OAuth token (the browser's, not the server's API token)
            (
                "own-server-oauth",
                hub_user("alice", Some("s1"), &["access:servers!server=alice/", "users:activity!user=alice"]),
            ),
            ("personal-identify", hub_user("alice", None, &[identify[1]])),
            ("scope-for-bob", hub_user("alice", None, &["custom:hubauth:exchange!user=bob"])),
            (
                "bobs-server-named-alice",
                hub_user("alice", None, &["access:servers!server=bob/", "users:activity!user=bob"]),
            ),
            ("old-hub-no-scopes", json!({"kind": "user", "name": "alice"})),
            ("no-kind", json!({"name": "alice", "scopes": ["custom:hubauth:exchange"]})),
            ("a-service-token", json!({"kind": "service", "name": "cull-idle", "scopes": ["custom:hubauth:exchange"]})),
        ],
        "",
    )
    .await;
    for accepted in ["alice-server-token", "alice-named-server-token", "alice-granted-token", "alice-granted-filtered"]
    {
        let res = notebook_exchange(&app, "notebooks", accepted).await;
        assert_eq!(res.status, StatusCode::OK, "{accepted}: {}", res.text());
    }
    for refused in [
        "service-oauth",
        "shared-server-oauth",
        "own-server-oauth",
        "personal-identify",
        "scope-for-bob",
        "bobs-server-named-alice",
    ] {
        let res = notebook_exchange(&app, "notebooks", refused).await;
        assert_eq!(res.error(), "invalid_scope", "{refused}: {}", res.text());
        let why = res.json()["error_description"].as_str().unwrap().to_string();
        assert!(why.contains("own server token") && why.contains("custom:hubauth:exchange"), "{refused}: {why}");
    }
    for (refused, says) in [("old-hub-no-scopes", "scopes"), ("no-kind", "kind"), ("a-service-token", "not a user's")] {
        let res = notebook_exchange(&app, "notebooks", refused).await;
        assert_eq!(res.error(), "invalid_grant", "{refused}: {}", res.text());
        assert!(res.json()["error_description"].as_str().unwrap().contains(says), "{refused}: {}", res.text());
    }
}

#[tokio::test]
async fn an_operator_can_accept_only_tokens_with_an_exchange_scope_of_their_choosing() {
    let strict = notebook_client(
        "strict-notebooks",
        "jupyterhub_server_tokens = false\njupyterhub_scope = \"custom:lab:upstream\"\n",
    );
    let (app, _fake, _tokens) = setup_with(
        vec![
            ("alice-server-token", alice_server()),
            ("alice-lab-token", hub_user("alice", None, &["access:servers!server=alice/", "custom:lab:upstream"])),
            ("alice-default-scope", hub_user("alice", None, &["custom:hubauth:exchange"])),
        ],
        &strict,
    )
    .await;
    let res = notebook_exchange(&app, "strict-notebooks", "alice-lab-token").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    for refused in ["alice-server-token", "alice-default-scope"] {
        let res = notebook_exchange(&app, "strict-notebooks", refused).await;
        assert_eq!(res.error(), "invalid_scope", "{refused}: {}", res.text());
        assert!(res.text().contains("does not carry the scope custom:lab:upstream"), "{refused}: {}", res.text());
    }
    // The default rule still takes the server's token.
    assert_eq!(notebook_exchange(&app, "notebooks", "alice-server-token").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_hubauth_access_token_is_exchanged_only_when_issued_to_a_named_client_with_the_required_scope() {
    let (app, fake, tokens) = setup().await;
    let hub_at = tokens["access_token"].as_str().unwrap();
    assert_eq!(exchange(&app, hub_at, AT, "uni").await.status, StatusCode::OK, "the hub's token is accepted");

    // alice's access token at another relying party (the `es` client) is not for exchange.
    let pkce = Pkce::new();
    let es_params = AuthParams::hub(&pkce).set("client_id", "es").set("redirect_uri", ES_REDIRECT);
    let code = sign_in_alice(&app, &fake, &es_params).await;
    let es_tokens = app.exchange_as_es(&code, &pkce, ES_REDIRECT).await.json();
    let res = exchange(&app, es_tokens["access_token"].as_str().unwrap(), AT, "uni").await;
    assert_eq!(res.error(), "invalid_grant", "{}", res.text());
    assert!(res.text().contains("issued to another client") && res.text().contains("hub"), "{}", res.text());

    // The hub's own token narrowed (by refresh) to scopes without `openid` lacks the required scope.
    let res = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("scope", "profile groups"),
        ])
        .await;
    assert_eq!(res.json()["scope"], "profile groups", "{}", res.text());
    let res = exchange(&app, res.json()["access_token"].as_str().unwrap(), AT, "uni").await;
    assert_eq!(res.error(), "invalid_scope", "{}", res.text());
    assert!(res.text().contains("lacks the scope openid"), "{}", res.text());
}

#[tokio::test]
async fn exchange_requests_are_checked_against_the_clients_rules() {
    let (app, _fake, tokens) = setup().await;
    let hub_at = tokens["access_token"].as_str().unwrap();
    assert_eq!(exchange(&app, hub_at, AT, "github").await.error(), "invalid_target");
    assert_eq!(exchange(&app, hub_at, HUB_TOKEN, "uni").await.error(), "invalid_request");
    assert_eq!(exchange(&app, "hat_made_up", AT, "uni").await.error(), "invalid_grant");
    let form = [("grant_type", EXCHANGE), ("subject_token", hub_at), ("subject_token_type", AT)];
    assert_eq!(
        app.post_form("/token", &form, Some(("spawner", "spawner-secret-0123456789"))).await.error(),
        "invalid_target"
    );
    // The hub's own client may not exchange at all, and the spawner may not use other grants.
    let res = app
        .token(&[("grant_type", EXCHANGE), ("subject_token", hub_at), ("subject_token_type", AT), ("audience", "uni")])
        .await;
    assert_eq!(res.error(), "unauthorized_client");
    let res = app
        .post_form("/token", &[("grant_type", "client_credentials")], Some(("spawner", "spawner-secret-0123456789")))
        .await;
    assert_eq!(res.error(), "unauthorized_client");
}

#[tokio::test]
async fn service_accounts_get_short_lived_tokens_that_introspection_shows_and_userinfo_refuses() {
    let (app, _fake, _tokens) = setup().await;
    let jobs = Some(("jobs", "jobs-secret-0123456789ab"));
    let res = app.post_form("/token", &[("grant_type", "client_credentials"), ("scope", "jobs:read")], jobs).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    assert_eq!(body["scope"], "jobs:read");
    assert_eq!(body["expires_in"], 300);
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let token = body["access_token"].as_str().unwrap();
    let intro = app.post_form("/introspect", &[("token", token)], jobs).await.json();
    assert_eq!((intro["active"].as_bool(), intro["sub"].as_str()), (Some(true), Some("jobs")));
    // Only the client it was issued to may look: another confidential client (one that may
    // exchange tokens, or the hub) learns nothing.
    for other in [("spawner", "spawner-secret-0123456789"), ("hub", HUB_SECRET)] {
        let res = app.post_form("/introspect", &[("token", token)], Some(other)).await;
        assert_eq!(res.json(), json!({"active": false}), "introspected by {}", other.0);
    }
    assert_eq!(app.userinfo(token).await.status, StatusCode::UNAUTHORIZED, "no person behind it");
    // It cannot impersonate a user through token exchange either.
    assert_eq!(exchange(&app, token, AT, "uni").await.error(), "invalid_grant");
    let res = app.post_form("/token", &[("grant_type", "client_credentials"), ("scope", "admin")], jobs).await;
    assert_eq!(res.error(), "invalid_scope");
    app.post_form("/revoke", &[("token", token)], jobs).await;
    assert_eq!(app.post_form("/introspect", &[("token", token)], jobs).await.json()["active"], false);
    app.clock.advance(301);
    let res = app.post_form("/token", &[("grant_type", "client_credentials")], jobs).await;
    let t2 = res.json()["access_token"].as_str().unwrap().to_string();
    app.clock.advance(301);
    assert_eq!(app.post_form("/introspect", &[("token", &t2)], jobs).await.json()["active"], false, "expired");
}

/// `hubauth token`, as a notebook runs it: discovery, the exchange, the token on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubauth_token_command_prints_the_upstream_token_for_the_notebooks_hub_token() {
    let fake = FakeOidc::start().await;
    let hub = fake_hub(vec![("alice-server-token", alice_server())]).await;
    // A real listening hubauth: the command talks HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubauth.db");
    let toml = format!("{}\n{}", config_toml(db.to_str().unwrap()), extra(&fake, &hub)).replace(ISSUER, &issuer);
    let app = TestApp::with_toml(dir, &toml).await;
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // alice signs in (through the in-process app; same state).
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let code = fake.approve(&up, alice(), Twist::default());
    assert_eq!(
        browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await.status,
        StatusCode::SEE_OTHER
    );

    let run = |hub_token: &'static str| {
        let issuer = issuer.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
                .args(["token", "--connector", "uni"])
                .env("HUBAUTH_ISSUER", issuer)
                .env("JUPYTERHUB_API_TOKEN", hub_token)
                .env_remove("HUBAUTH_CLIENT_ID")
                .output()
                .unwrap()
        })
    };
    let out = run("alice-server-token").await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(token.trim().len() > 20 && !token.contains(' '), "{token}");
    let out = run("stopped-server-token").await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not accept this JupyterHub token"));
}

#[tokio::test]
async fn keys_reseal_moves_every_sealed_token_to_the_first_key() {
    let (app, _fake, _tokens) = setup().await;
    let config_path = app._dir.path().join("hubauth.toml");
    // The test app's config is in memory; write an equivalent file for the CLI.
    std::fs::write(&config_path, config_toml_with_url(&app.state.config.storage.url)).unwrap();
    let new_key = hubauth::crypto::Sealer::generate_key();
    let reseal = |ring: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
            .args(["keys", "reseal", "--config", config_path.to_str().unwrap()])
            .env("HUBAUTH_CRYPT_KEY", ring)
            .output()
            .unwrap()
    };
    let out = reseal(format!("{new_key};{TEST_CRYPT_KEY}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 re-sealed"));
    let stored = app.store.upstream_of("uni", "a1b2").await.unwrap().unwrap();
    let sealed = stored.tokens_sealed.unwrap();
    let only_new = hubauth::crypto::Sealer::from_keyring(&new_key).unwrap();
    assert!(only_new.open(&hubauth::web::upstream::token_context("uni", "a1b2"), &sealed).is_ok());
    assert!(test_sealer().open(&hubauth::web::upstream::token_context("uni", "a1b2"), &sealed).is_err());
    // Without the new key, nothing opens: reported, non-zero.
    let out = reseal(TEST_CRYPT_KEY.to_string());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 unreadable"));
}

/// A notebook's exchange counts as the user's token use; once deprovisioned (blocked), the hub
/// token the notebook still holds gets no upstream token any more.
#[tokio::test]
async fn an_exchange_is_a_token_use_and_a_blocked_user_gets_nothing() {
    use hubauth::admin::deprovision::{self, Action, Actor, Local};
    let (app, _fake, _tokens) = setup().await;
    app.clock.advance(5);
    let res = notebook_exchange(&app, "notebooks", "alice-server-token").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let mut used = None;
    for _ in 0..100 {
        used = app.store.activity(START + 5).await.unwrap()[0].last_token_use_at;
        if used.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(used, Some(START + 5));

    let actor = Actor { name: "test".into(), request_id: None };
    let now = START + 6;
    let done = deprovision::run(app.store.as_ref(), &["alice".into()], Action::Block, None, true, &actor, || now).await;
    assert!(matches!(done[0].local, Local::Blocked { .. }), "{:?}", done[0]);
    let res = notebook_exchange(&app, "notebooks", "alice-server-token").await;
    assert_ne!(res.status, StatusCode::OK, "{}", res.text());
    assert!(!res.text().contains("access_token\""), "{}", res.text());
}
