//! Admins are people, not tokens: `[admin] groups` / `admin_users` sign in to the console
//! through hubauth itself, `viewer_*` may look but not change, and scripts use API tokens made by
//! `hubauth admin tokens create` (hashed, scoped, expiring, revocable) beside the static ones.
//! Every change names its actor and request id in the audit log.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

const STATIC_TOKEN: &str = "admin-token-0123456789abcdef0123456789";

/// ada (group `admins`) is an admin, sam a viewer.
fn roles() -> String {
    format!("[admin]\ngroups = [\"admins\"]\nviewer_users = [\"sam\"]\napi_tokens = [\"{STATIC_TOKEN}\"]\n")
}

/// Signs `user` in to the console from a fresh browser and returns it, back on `next`.
pub(crate) async fn console_sign_in<'a>(app: &'a TestApp, user: &str, password: &str, next: &str) -> Browser<'a> {
    let mut browser = app.browser();
    let res = browser.get(next).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let to_login = res.location();
    assert_eq!(to_login.path(), "/admin/login");
    let res = browser.get(&format!("/admin/login?{}", to_login.query().unwrap())).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let form = res.location();
    assert_eq!(form.path(), "/login");
    let page = browser.get(&format!("/login?{}", form.query().unwrap())).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("console"), "the sign-in page says what it is for: {html}");
    let (request, csrf) = (input_value(&html, "request"), input_value(&html, "csrf"));
    let res = browser
        .post("/login/dev", &[("request", &request), ("csrf", &csrf), ("username", user), ("password", password)])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let back = res.location();
    assert_eq!(back.path(), next.split('?').next().unwrap(), "back where the console sign-in started");
    assert!(back.query_pairs().all(|(k, _)| k != "code"), "the console's sign-in mints no code");
    browser
}

async fn api(
    browser: &Browser<'_>,
    method: &str,
    uri: &str,
    body: Option<Value>,
    csrf: Option<&str>,
    token: Option<&str>,
) -> TestResponse {
    let mut req = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    let cookies = browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    req = req.header(header::COOKIE, cookies);
    if let Some(c) = csrf {
        req = req.header("x-csrf-token", c);
    }
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    browser.app.send(req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_default()).unwrap()).await
}

/// The browser session's CSRF token, read from the store as a console page would render it.
async fn session_csrf(browser: &Browser<'_>) -> String {
    use hubauth::clock::Clock;
    let cookie = &browser.cookies["hubauth_session"];
    let hash = hubauth::crypto::random::value_hash(cookie);
    let session = browser.app.store.browser_session(&hash, browser.app.clock.now()).await.unwrap();
    session.expect("a browser session").csrf_token
}

#[tokio::test]
async fn an_admin_signs_in_to_the_console_through_hubauth_and_comes_back_to_the_page() {
    let app = TestApp::with_extra_toml(&roles()).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let home = ada.get("/admin/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text());
    assert!(home.text().contains("Signed in as <strong>ada</strong>, with admin access"), "{}", home.text());
    assert_eq!(home.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");

    // The same single sign-on session: the hub's sign-in needs no password now.
    let pkce = Pkce::new();
    let res = ada.get(&AuthParams::hub(&pkce).uri()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.query().contains_key("code"), "SSO: the hub gets a code without a new login");

    // Signed in already: /admin/login goes straight back.
    let res = ada.get("/admin/login?next=/admin/users").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location().path(), "/admin/users");
}

#[tokio::test]
async fn the_way_back_after_sign_in_never_leaves_the_console() {
    let app = TestApp::with_extra_toml(&roles()).await;
    for next in ["https://evil.example/admin/", "//evil.example/admin/", "/admin//evil.example", "/login", "/admin\\x"]
    {
        let mut browser = app.browser();
        let res = browser.get(&format!("/admin/login?next={}", urlencode(next))).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        let form = res.location();
        let page = browser.get(&format!("/login?{}", form.query().unwrap())).await;
        let html = page.text();
        let (request, csrf) = (input_value(&html, "request"), input_value(&html, "csrf"));
        let res = browser
            .post("/login/dev", &[("request", &request), ("csrf", &csrf), ("username", "ada"), ("password", "ada-pw")])
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        let back = res.location();
        assert_eq!((back.origin().ascii_serialization(), back.path()), (ISSUER.to_string(), "/admin/"), "{next}");
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn someone_signed_in_who_is_no_admin_gets_403_on_the_console_and_the_api() {
    let app = TestApp::with_extra_toml("[admin]\nadmin_users = [\"ada\"]\n").await;
    let mut sam = app.browser();
    let code = sam.login_for_code(&AuthParams::hub(&Pkce::new()), "sam", "sam-pw").await;
    assert!(!code.is_empty());
    let page = sam.get("/admin/").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.text().contains("not_admin") && page.text().contains("sam"), "{}", page.text());
    assert_eq!(sam.get("/admin/login").await.status, StatusCode::FORBIDDEN);
    for uri in ["/admin/api/invites", "/admin/api/access", "/admin/api/tokens", "/admin/api/report/activity"] {
        assert_eq!(api(&sam, "GET", uri, None, None, None).await.status, StatusCode::FORBIDDEN, "{uri}");
    }
    let csrf = session_csrf(&sam).await;
    let res = api(&sam, "POST", "/admin/api/access", Some(json!({"username": "x"})), Some(&csrf), None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(app.store.access_entries().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_viewer_sees_but_cannot_change_and_a_session_change_needs_the_csrf_token() {
    let app = TestApp::with_extra_toml(&roles()).await;
    let mut sam = console_sign_in(&app, "sam", "sam-pw", "/admin/").await;
    let home = sam.get("/admin/").await;
    assert!(home.text().contains("read-only access"), "{}", home.text());
    assert_eq!(api(&sam, "GET", "/admin/api/access", None, None, None).await.status, StatusCode::OK);
    let csrf = session_csrf(&sam).await;
    let res = api(&sam, "POST", "/admin/api/access", Some(json!({"username": "x"})), Some(&csrf), None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.text().contains("read-only"));

    let ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let res = api(&ada, "POST", "/admin/api/access", Some(json!({"username": "x"})), None, None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "a cookie alone does not make a change (CSRF)");
    let res = api(&ada, "POST", "/admin/api/access", Some(json!({"username": "x"})), Some("forged"), None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(app.store.access_entries().await.unwrap().is_empty());
    let csrf = session_csrf(&ada).await;
    let res = api(&ada, "POST", "/admin/api/access", Some(json!({"username": "x"})), Some(&csrf), None).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let audit = app.store.audit_events(20).await.unwrap();
    let allowed = audit.iter().find(|e| e.kind == "access_allowed").unwrap();
    assert_eq!(allowed.actor.as_deref(), Some("ada"), "the audit log names the person");
    assert!(allowed.request_id.is_some());
}

#[tokio::test]
async fn stored_admin_tokens_have_a_scope_expire_and_can_be_revoked() {
    let app = TestApp::with_extra_toml(&roles()).await;
    let nobody = app.browser();
    let create = |scope: &str, expires: Option<&str>| {
        let mut body = json!({"name": format!("{scope} job"), "scope": scope});
        if let Some(e) = expires {
            body["expires_in"] = json!(e);
        }
        body
    };
    let res =
        api(&nobody, "POST", "/admin/api/tokens", Some(create("read", Some("1h"))), None, Some(STATIC_TOKEN)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let read = res.json();
    let read_token = read["token"].as_str().unwrap().to_string();
    assert!(read_token.starts_with("hubauth_admin_"));
    assert_eq!(read["scope"], "read");
    let res = api(&nobody, "POST", "/admin/api/tokens", Some(create("write", None)), None, Some(STATIC_TOKEN)).await;
    let write = res.json();
    let write_token = write["token"].as_str().unwrap().to_string();

    // Read: looks, cannot change.
    assert_eq!(api(&nobody, "GET", "/admin/api/access", None, None, Some(&read_token)).await.status, StatusCode::OK);
    let res = api(&nobody, "POST", "/admin/api/access", Some(json!({"username": "x"})), None, Some(&read_token)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Write: changes, and the audit log names the token.
    let res = api(&nobody, "POST", "/admin/api/access", Some(json!({"username": "x"})), None, Some(&write_token)).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let audit = app.store.audit_events(20).await.unwrap();
    let allowed = audit.iter().find(|e| e.kind == "access_allowed").unwrap();
    assert_eq!(allowed.actor.as_deref(), Some(format!("token:{}", write["id"].as_str().unwrap()).as_str()));
    let created = audit.iter().find(|e| e.kind == "admin_token_created").unwrap();
    assert_eq!(created.actor.as_deref(), Some("config-token"));

    // Listed without values or hashes.
    let list = api(&nobody, "GET", "/admin/api/tokens", None, None, Some(&read_token)).await;
    let text = list.text();
    assert!(!text.contains(&read_token) && !text.contains(&write_token) && !text.contains("hash"), "{text}");
    assert_eq!(list.json().as_array().unwrap().len(), 2);

    // A near miss is no token; an expired one stops working.
    let near = format!("{}x", &read_token[..read_token.len() - 1]);
    assert_eq!(
        api(&nobody, "GET", "/admin/api/access", None, None, Some(&near)).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.clock.advance(3601);
    assert_eq!(
        api(&nobody, "GET", "/admin/api/access", None, None, Some(&read_token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Revoked: stops at once.
    let id = write["id"].as_str().unwrap();
    let res = api(&nobody, "DELETE", &format!("/admin/api/tokens/{id}"), None, None, Some(&write_token)).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api(&nobody, "GET", "/admin/api/access", None, None, Some(&write_token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let res = api(&nobody, "DELETE", &format!("/admin/api/tokens/{id}"), None, None, Some(STATIC_TOKEN)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    for bad in [
        json!({"name": "", "scope": "read"}),
        json!({"name": "x", "scope": "root"}),
        json!({"name": "x", "scope": "read", "expires_in": "soon"}),
    ] {
        let res = api(&nobody, "POST", "/admin/api/tokens", Some(bad.clone()), None, Some(STATIC_TOKEN)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn the_cli_makes_lists_and_revokes_tokens_that_the_api_accepts() {
    let app = TestApp::with_extra_toml(&roles()).await;
    let path = app._dir.path().join("cli.toml");
    std::fs::write(&path, format!("{}\n{}", config_toml_with_url(&app.state.config.storage.url), roles())).unwrap();
    let config = path.to_str().unwrap();
    let run = |args: &[&str]| crate::access_list::hubauth(config, args);
    let (ok, token, err) =
        run(&["admin", "tokens", "create", "--name", "nightly", "--scope", "write", "--expires-in", "90d"]);
    assert!(ok, "{err}");
    let token = token.trim().to_string();
    assert!(err.contains("shown once"));
    let nobody = app.browser();
    assert_eq!(api(&nobody, "GET", "/admin/api/invites", None, None, Some(&token)).await.status, StatusCode::OK);
    let (ok, list, _) = run(&["admin", "tokens", "list"]);
    assert!(ok && list.contains("nightly") && list.contains("active") && !list.contains(&token), "{list}");
    let id = list.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let (ok, _, _) = run(&["admin", "tokens", "revoke", &id]);
    assert!(ok);
    assert_eq!(
        api(&nobody, "GET", "/admin/api/invites", None, None, Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (ok, _, err) = run(&["admin", "tokens", "revoke", &id]);
    assert!(!ok && err.contains("no live admin token"));
    let audit = app.store.audit_events(20).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "admin_token_revoked" && e.actor.as_deref() == Some("cli:operator")));
}

#[tokio::test]
async fn a_configured_client_cannot_take_the_consoles_id() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[[clients]]\nid = \"hubauth-console\"\npublic = true\nredirect_uris = [\"https://x.example/cb\"]\n",
        config_toml(dir.path().join("db").to_str().unwrap())
    );
    let err = hubauth::config::Config::parse(&toml, &dir.path().join("c.toml")).unwrap_err().to_string();
    assert!(err.contains("reserved"), "{err}");
}

#[tokio::test]
async fn every_admin_api_route_is_in_the_openapi_document_and_refuses_strangers() {
    let app = TestApp::with_extra_toml(&roles()).await;
    let res = app.get("/admin/api/openapi.json").await;
    assert_eq!(res.status, StatusCode::OK);
    let doc = res.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(doc["servers"][0]["url"], ISSUER);
    // The routes as the router declares them: none may be missing from the document.
    let source = include_str!("../../src/app.rs");
    let routes: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".route(\"/admin/api/"))
        .map(|rest| rest.split('"').next().unwrap())
        .filter(|r| *r != "openapi.json")
        .collect();
    assert!(routes.len() >= 7, "{routes:?}");
    let paths = doc["paths"].as_object().unwrap();
    for r in &routes {
        assert!(paths.contains_key(&format!("/admin/api/{r}")), "/admin/api/{r} is not in the OpenAPI document");
    }
    // Every documented operation wants a credential, and says so.
    let nobody = app.browser();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["responses"]["401"].is_object(), "{method} {path} documents 401");
            let uri = path.replace("{id}", "x").replace("{username}", "x");
            let res = api(&nobody, &method.to_uppercase(), &uri, Some(json!({})), None, None).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
}
