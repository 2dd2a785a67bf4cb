//! Access hub admins manage at run time: the allow-list (`hubauth access`, `/admin/api/access`)
//! and `admit_hub_users` (the people JupyterHub's REST API knows). Both are re-checked like
//! every other rule: a removed entry or hub user loses access at the next re-check.

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::harness::*;
use crate::upstream_oidc::{alice, FakeOidc, Twist};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";
const HUB_TOKEN: &str = "hubauth-service-token-0123456789";

/// Only ada is admitted by the configuration.
const CLOSED: &str = "[access]\nallowed_users = [\"ada\"]\nrecheck_after = \"5m\"\n";

fn admin_toml() -> String {
    format!("[admin]\napi_tokens = [\"{ADMIN_TOKEN}\"]\n")
}

/// Runs the `hubauth` binary with `args --config config` as the OS user `operator`.
pub fn hubauth(config: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args(args)
        .args(["--config", config])
        .env_remove("HUBAUTH_CONFIG")
        .env("USER", "operator")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config file for the CLI on the app's own database.
fn cli_config(app: &TestApp, extra: &str) -> String {
    let path = app._dir.path().join("cli.toml");
    std::fs::write(&path, format!("{}\n{extra}", config_toml_with_url(&app.state.config.storage.url))).unwrap();
    path.to_str().unwrap().to_string()
}

async fn refused(app: &TestApp, user: &str) -> String {
    let res = app.browser().submit_login(&AuthParams::hub(&Pkce::new()), user, &format!("{user}-pw")).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{user} should be refused: {}", res.text());
    res.text().replace("&#x27;", "'").replace("&#x2f;", "/")
}

async fn last_login_reason(app: &TestApp) -> Option<String> {
    let audit = app.store.audit_events(50).await.unwrap();
    audit.iter().find(|e| e.kind == "login").and_then(|e| e.reason.clone())
}

async fn revoked_reason(app: &TestApp) -> Option<String> {
    let audit = app.store.audit_events(50).await.unwrap();
    audit.iter().find(|e| e.kind == "access_revoked").and_then(|e| e.reason.clone())
}

async fn api(app: &TestApp, method: &str, uri: &str, body: Option<Value>) -> TestResponse {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json");
    app.send(req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_default()).unwrap()).await
}

#[tokio::test]
async fn the_cli_admits_an_outsider_with_groups_and_deny_ends_it_at_the_next_recheck() {
    let app = TestApp::with_extra_toml(CLOSED).await;
    assert!(refused(&app, "sam").await.contains("<code>not_allowed</code>"));
    let config = cli_config(&app, CLOSED);

    let (ok, out, err) =
        hubauth(&config, &["access", "allow", "--username", "SAM", "--group", "workshop", "--note", "visiting"]);
    assert!(ok, "{err}");
    assert!(out.contains("added allow-list entry") && out.contains("username SAM"), "{out}");
    let tokens = app.login_and_exchange("sam", "sam-pw").await;
    assert_eq!(last_login_reason(&app).await.as_deref(), Some("allow_list"));
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.json()["groups"], json!(["students", "workshop"]));

    let (ok, out, _) = hubauth(&config, &["access", "list", "--format", "json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["kind"], "username");
    assert_eq!(list[0]["value"], "SAM");
    assert_eq!(list[0]["groups"], json!(["workshop"]));
    assert_eq!(list[0]["note"], "visiting");
    assert_eq!(list[0]["created_by"], "cli:operator");
    assert_eq!(list[0]["state"], "active");
    let (ok, table, _) = hubauth(&config, &["access", "list"]);
    assert!(ok && table.contains("SAM") && table.contains("workshop") && table.contains("never"), "{table}");

    let (ok, out, err) = hubauth(&config, &["access", "deny", "--username", "sam"]);
    assert!(ok, "{err}");
    assert!(out.contains("removed allow-list entry"), "{out}");
    let (ok, _, err) = hubauth(&config, &["access", "deny", "--username", "sam"]);
    assert!(!ok && err.contains("no allow-list entry for username sam"), "{err}");

    app.clock.advance(60);
    assert_eq!(app.userinfo(access).await.status, StatusCode::OK, "until the next re-check");
    app.clock.advance(241);
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED, "re-checked: no entry, no access");
    let res = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!(res.error(), "invalid_grant");
    assert_eq!(revoked_reason(&app).await.as_deref(), Some("not_allowed"));
    refused(&app, "sam").await;

    let audit = app.store.audit_events(50).await.unwrap();
    let added = audit.iter().find(|e| e.kind == "access_allowed").expect("the change is audited");
    let detail = added.detail.as_deref().unwrap();
    assert!(detail.contains("by cli:operator") && detail.contains("username SAM") && detail.contains("workshop"));
    let removed = audit.iter().find(|e| e.kind == "access_denied").expect("the removal is audited");
    assert!(removed.detail.as_deref().unwrap().contains("by cli:operator: removed username SAM"));
}

#[tokio::test]
async fn the_cli_refuses_bad_selectors_clearly() {
    let app = TestApp::with_extra_toml(CLOSED).await;
    let config = cli_config(&app, CLOSED);
    let (ok, _, err) = hubauth(&config, &["access", "allow", "--login", "nope:octocat"]);
    assert!(!ok && err.contains("there is no connector \"nope\""), "{err}");
    let (ok, _, err) = hubauth(&config, &["access", "allow", "--login", "octocat"]);
    assert!(!ok && err.contains("CONNECTOR:LOGIN"), "{err}");
    let (ok, _, err) = hubauth(&config, &["access", "allow", "--email", "not-an-address"]);
    assert!(!ok && err.contains("is not an e-mail address"), "{err}");
    let (ok, _, err) = hubauth(&config, &["access", "allow", "--username", "a", "--email", "a@b"]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
    let (ok, _, err) = hubauth(&config, &["access", "allow"]);
    assert!(!ok && err.contains("required"), "{err}");
    assert!(app.store.access_entries().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_admin_api_adds_lists_and_removes_entries() {
    let app = TestApp::with_extra_toml(&format!("{CLOSED}{}", admin_toml())).await;
    let unauthenticated = app.send(Request::get("/admin/api/access").body(Body::empty()).unwrap()).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);

    for (body, says) in [
        (json!({"username": "sam", "email": "sam@example.org"}), "exactly one of"),
        (json!({"groups": ["x"]}), "exactly one of"),
        (json!({"login": "nope:sam"}), "there is no connector"),
        (json!({"username": "sam", "expires_in": "0s"}), "expires_in"),
        (json!({"username": "sam", "expires_in": "soon"}), "invalid allow-list entry"),
        (json!({"username": "sam", "role": "admin"}), "unknown field"),
        (json!({"username": ""}), "printable characters"),
        (json!({"username": "sam", "groups": [""]}), "group names"),
    ] {
        let res = api(&app, "POST", "/admin/api/access", Some(body.clone())).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(res.json()["error"].as_str().unwrap().contains(says), "{body}: {}", res.text());
    }
    let res = app
        .send(
            Request::post("/admin/api/access")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(app.store.access_entries().await.unwrap().is_empty(), "nothing stored from bad input");

    // ada's address is verified by her connector: an e-mail entry admits... but ada is
    // admitted anyway; sam has no address, so name him by his login at the dev connector.
    let res = api(&app, "POST", "/admin/api/access", Some(json!({"login": "dev:Sam", "groups": ["guests"]}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let created = res.json();
    assert_eq!(created["kind"], "login");
    assert_eq!(created["connector"], "dev");
    assert_eq!(created["created_by"], "config-token");
    let res = api(&app, "POST", "/admin/api/access", Some(json!({"login": "dev:sam", "groups": ["g2"]}))).await;
    assert_eq!(res.status, StatusCode::OK, "the same person again replaces the entry");
    assert_eq!(res.json()["id"], created["id"]);
    let list = api(&app, "GET", "/admin/api/access", None).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["groups"], json!(["g2"]));

    let tokens = app.login_and_exchange("sam", "sam-pw").await;
    assert_eq!(last_login_reason(&app).await.as_deref(), Some("allow_list"));
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.json()["groups"], json!(["students", "g2"]));

    let id = created["id"].as_str().unwrap();
    assert_eq!(api(&app, "DELETE", &format!("/admin/api/access/{id}"), None).await.status, StatusCode::NO_CONTENT);
    let again = api(&app, "DELETE", &format!("/admin/api/access/{id}"), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    app.clock.advance(301);
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoked_reason(&app).await.as_deref(), Some("not_allowed"));

    let audit = app.store.audit_events(50).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.kind == "access_allowed").count(), 2, "added, then replaced");
    let denied = audit.iter().find(|e| e.kind == "access_denied").unwrap();
    assert!(denied.detail.as_deref().unwrap().contains("by config-token: removed login dev:sam"));
    assert_eq!(denied.actor.as_deref(), Some("config-token"), "the audit log names who did it");
    assert_eq!(denied.connector_id.as_deref(), Some("dev"));
    assert!(denied.request_id.is_some(), "an API change carries its request id");
}

#[tokio::test]
async fn an_expired_entry_admits_no_one_and_ends_access_at_the_recheck() {
    let app = TestApp::with_extra_toml(&format!("{CLOSED}{}", admin_toml())).await;
    let res = api(&app, "POST", "/admin/api/access", Some(json!({"username": "sam", "expires_in": "4m"}))).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.json()["expires_at"], json!(START + 240));
    let tokens = app.login_and_exchange("sam", "sam-pw").await;
    let access = tokens["access_token"].as_str().unwrap();

    app.clock.advance(241);
    assert_eq!(app.userinfo(access).await.status, StatusCode::OK, "not stale yet: not re-checked");
    app.clock.advance(60);
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED, "expired, re-checked");
    assert_eq!(revoked_reason(&app).await.as_deref(), Some("not_allowed"));
    assert!(refused(&app, "sam").await.contains("not_allowed"));
    let list = api(&app, "GET", "/admin/api/access", None).await.json();
    assert_eq!(list[0]["state"], "expired", "still listed, as expired");
}

#[tokio::test]
async fn an_unverified_address_never_matches_an_email_entry() {
    let fake = FakeOidc::start().await;
    let toml = format!("{CLOSED}{}{}", admin_toml(), fake.connector_toml("uni", ""));
    let app = TestApp::with_extra_toml(&toml).await;
    api(&app, "POST", "/admin/api/access", Some(json!({"email": "Alice@Uni.example"}))).await;
    let sign_in = |claims: Value| {
        let (app, fake) = (&app, &fake);
        async move {
            let mut browser = app.browser();
            let up = browser.start_upstream(&AuthParams::hub(&Pkce::new()), "uni").await;
            let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
            let code = fake.approve(&up, claims, Twist::default());
            browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await
        }
    };
    let mut unverified = alice();
    unverified["email_verified"] = json!(false);
    let res = sign_in(unverified).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "an unverified address proves nothing");
    assert!(res.text().contains("not_allowed"));
    let res = sign_in(alice()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "verified: admitted ({})", res.text());
    assert_eq!(last_login_reason(&app).await.as_deref(), Some("allow_list"));
}

/// A stand-in for JupyterHub's REST API as its documentation describes it: `GET
/// /hub/api/users/{name}` with `Authorization: token …` (or `Bearer …`) answers the user model,
/// 404 with JupyterHub's JSON error body for an unknown user, 403 for a token it does not accept.
#[derive(Clone)]
struct FakeHub {
    base: String,
    users: Arc<Mutex<HashSet<String>>>,
    down: Arc<Mutex<bool>>,
    seen_auth: Arc<Mutex<Vec<String>>>,
}

impl FakeHub {
    async fn start(users: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hub = FakeHub {
            base: format!("http://{}/hub/api", listener.local_addr().unwrap()),
            users: Arc::new(Mutex::new(users.iter().map(|u| u.to_string()).collect())),
            down: Arc::default(),
            seen_auth: Arc::default(),
        };
        let h = hub.clone();
        let app = Router::new().route(
            "/hub/api/users/{name}",
            get(move |Path(name): Path<String>, headers: HeaderMap| {
                let h = h.clone();
                async move {
                    if *h.down.lock().unwrap() {
                        return (StatusCode::BAD_GATEWAY, Json(json!({"status": 502, "message": "Bad Gateway"})));
                    }
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    h.seen_auth.lock().unwrap().push(auth.clone());
                    let token = auth.strip_prefix("token ").or_else(|| auth.strip_prefix("Bearer "));
                    if token != Some(HUB_TOKEN) {
                        return (
                            StatusCode::FORBIDDEN,
                            Json(json!({"status": 403, "message": "Missing or invalid credentials."})),
                        );
                    }
                    if h.users.lock().unwrap().contains(&name) {
                        (StatusCode::OK, Json(json!({"kind": "user", "name": name, "admin": false, "groups": []})))
                    } else {
                        (StatusCode::NOT_FOUND, Json(json!({"status": 404, "message": "Not Found"})))
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        hub
    }

    fn toml(&self, token: &str) -> String {
        format!(
            "[access]\nadmit_hub_users = true\nrecheck_after = \"1m\"\n\
             [jupyterhub]\napi_url = \"{}\"\napi_token = \"{token}\"\ntimeout = \"2s\"\n",
            self.base
        )
    }
}

#[tokio::test]
async fn admit_hub_users_admits_whom_the_hub_knows_and_follows_it_at_the_recheck() {
    let hub = FakeHub::start(&["sam"]).await;
    let app = TestApp::with_extra_toml(&hub.toml(HUB_TOKEN)).await;
    let page = refused(&app, "ada").await;
    assert!(page.contains("<code>not_allowed</code>"), "the hub does not know ada");
    assert!(page.contains("a user account on the hub itself"), "{page}");

    let tokens = app.login_and_exchange("sam", "sam-pw").await;
    assert_eq!(last_login_reason(&app).await.as_deref(), Some("hub_user"));
    assert_eq!(hub.seen_auth.lock().unwrap().last().unwrap(), &format!("token {HUB_TOKEN}"));
    let access = tokens["access_token"].as_str().unwrap();

    let asked = hub.seen_auth.lock().unwrap().len();
    app.clock.advance(61);
    assert_eq!(app.userinfo(access).await.status, StatusCode::OK, "still a hub user at the re-check");
    assert_eq!(hub.seen_auth.lock().unwrap().len(), asked + 1, "the re-check asked the hub again");
    hub.users.lock().unwrap().remove("sam");
    app.clock.advance(61);
    // OAuthenticator's refresh, before any userinfo: the re-check runs on this path too.
    let res = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!(res.error(), "invalid_grant", "deleted from the hub: access ends");
    assert_eq!(revoked_reason(&app).await.as_deref(), Some("not_allowed"));
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_hub_not_answering_refuses_with_its_own_reason() {
    let hub = FakeHub::start(&["sam"]).await;
    let app = TestApp::with_extra_toml(&hub.toml(HUB_TOKEN)).await;
    let tokens = app.login_and_exchange("sam", "sam-pw").await;

    *hub.down.lock().unwrap() = true;
    let page = refused(&app, "sam").await;
    assert!(page.contains("<code>hub_unreachable</code>"), "{page}");
    assert!(page.contains("the hub could not be asked whether it has a user account for you"), "{page}");
    app.clock.advance(301);
    let res = app.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "not admitted on a guess at the re-check either");
    assert_eq!(revoked_reason(&app).await.as_deref(), Some("hub_unreachable"));
    let audit = app.store.audit_events(50).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "login_denied" && e.reason.as_deref() == Some("hub_unreachable")));
}

#[tokio::test]
async fn a_token_the_hub_refuses_or_a_hub_that_is_gone_admits_no_one() {
    let captured = crate::no_secrets_in_logs::capture();
    let hub = FakeHub::start(&["sam"]).await;
    let wrong = "not-the-hubs-token-0123456789";
    let app = TestApp::with_extra_toml(&hub.toml(wrong)).await;
    assert!(refused(&app, "sam").await.contains("hub_unreachable"), "403 from the hub is not a no, nor a yes");
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("status=403") && logs.contains("read:users"), "the log line says what went wrong");
    assert!(!logs.contains(wrong), "the token is never logged");

    // Nothing listens there any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}/hub/api", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::with_extra_toml(&hub.toml(HUB_TOKEN).replace(&hub.base, &gone)).await;
    assert!(refused(&app, "sam").await.contains("hub_unreachable"));
}

#[tokio::test]
async fn an_allow_list_entry_admits_without_asking_the_hub_and_blocked_users_still_win() {
    let hub = FakeHub::start(&[]).await;
    let extra = format!(
        "{}{}",
        hub.toml(HUB_TOKEN).replace("[access]\n", "[access]\nblocked_users = [\"ada\"]\n"),
        admin_toml()
    );
    let app = TestApp::with_extra_toml(&extra).await;
    for who in ["sam", "ada"] {
        assert_eq!(
            api(&app, "POST", "/admin/api/access", Some(json!({"username": who}))).await.status,
            StatusCode::CREATED
        );
    }
    app.login_and_exchange("sam", "sam-pw").await;
    assert_eq!(last_login_reason(&app).await.as_deref(), Some("allow_list"));
    assert!(hub.seen_auth.lock().unwrap().is_empty(), "admitted already: the hub is not asked");
    assert!(refused(&app, "ada").await.contains("blocked_user"), "an entry does not override blocked_users");
}

#[test]
fn admit_hub_users_needs_the_hubs_api_and_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let parse = |extra: &str| {
        hubauth::config::Config::parse(&format!("{}\n{extra}", config_toml("h.db")), &dir.path().join("h.toml"))
    };
    let err = parse("[access]\nadmit_hub_users = true\n").unwrap_err().to_string();
    assert!(err.contains("access.admit_hub_users") && err.contains("api_token"), "{err}");
    let err = parse("[access]\nadmit_hub_users = true\n[jupyterhub]\napi_url = \"http://hub/hub/api\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("api_token"), "{err}");
    let err = parse("[jupyterhub]\napi_url = \"hub:8081\"\n").unwrap_err().to_string();
    assert!(err.contains("jupyterhub.api_url"), "{err}");
    std::env::set_var("HUBAUTH_TEST_HUB_TOKEN_FOR_CONFIG", "from-the-environment");
    let ok = parse(
        "[access]\nadmit_hub_users = true\n[jupyterhub]\napi_url = \"http://hub/hub/api\"\n\
         api_token = { env = \"HUBAUTH_TEST_HUB_TOKEN_FOR_CONFIG\" }\n",
    )
    .unwrap();
    assert_eq!(ok.jupyterhub.api_token.as_ref().unwrap().expose(), "from-the-environment");
    assert!(!format!("{:?}", ok.jupyterhub).contains("from-the-environment"), "never in a debug print");
}

#[tokio::test]
async fn on_an_open_hub_an_entry_adds_groups_and_the_cli_says_it_restricts_no_one() {
    let app = TestApp::new().await;
    let config = cli_config(&app, "");
    let (ok, _, err) = hubauth(&config, &["access", "allow", "--email", "ada@example.org", "--group", "gpu"]);
    assert!(ok, "{err}");
    assert!(err.contains("restricts no one"), "{err}");
    let tokens = app.login_and_exchange("ada", "ada-pw").await;
    assert_eq!(last_login_reason(&app).await.as_deref(), Some("allow_list"), "ada's address is verified");
    let info = app.userinfo(tokens["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["groups"], json!(["admins", "gpu"]));
    app.login_and_exchange("sam", "sam-pw").await;
    assert_eq!(last_login_reason(&app).await.as_deref(), Some("open_policy"), "everyone else still gets in");
}

#[tokio::test]
async fn the_hub_fragment_lets_in_existing_hub_users_with_admit_hub_users() {
    let app = TestApp::new().await;
    let hub = FakeHub::start(&[]).await;
    let (ok, out, err) = hubauth(&cli_config(&app, &hub.toml(HUB_TOKEN)), &["jupyterhub-config", "--client", "hub"]);
    assert!(ok, "{err}");
    assert!(out.contains("c.GenericOAuthenticator.allow_existing_users = True"), "{out}");
    let (ok, out, _) = hubauth(&cli_config(&app, ""), &["jupyterhub-config", "--client", "hub"]);
    assert!(ok && !out.contains("allow_existing_users"), "{out}");
}
