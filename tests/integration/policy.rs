//! The access policy at sign-in: a refusal is a page that says which rule refused the person,
//! where the policy is and whom to ask, with a request id that finds the audit entry.

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::*;

const POLICY: &str = r#"
[access]
allowed_groups = ["admins"]
admin_users = ["ada"]
admin_group = "hub-admins"
policy_url = "https://hub.example.org/access-policy"
contact = "hub-admins@example.org"
"#;

#[tokio::test]
async fn a_refused_person_is_told_which_rule_refused_them_and_whom_to_ask() {
    let app = TestApp::with_extra_toml(POLICY).await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let res = browser.submit_login(&AuthParams::hub(&pkce), "sam", "sam-pw").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let page = res.text().replace("&#x2f;", "/");
    assert!(page.contains("You signed in as <strong>sam</strong>"), "{page}");
    assert!(page.contains("membership of one of the groups admins"), "{page}");
    assert!(page.contains("https://hub.example.org/access-policy"));
    assert!(page.contains("mailto:hub-admins@example.org"));
    assert!(page.contains("<code>not_allowed</code>"));
    let request_id = res.headers.get("x-request-id").unwrap().to_str().unwrap().to_string();
    assert!(page.contains(&request_id), "the page shows the request id");
    assert!(res.headers.get("location").is_none(), "no code goes to the client");

    let audit = app.store.audit_events(10).await.unwrap();
    let entry = audit.iter().find(|e| e.kind == "login_denied").expect("the refusal is audited");
    assert_eq!(entry.reason.as_deref(), Some("not_allowed"));
    assert_eq!(entry.username.as_deref(), Some("sam"));
    assert_eq!(entry.request_id.as_deref(), Some(request_id.as_str()));
    assert!(app.store.user_by_username("sam").await.unwrap().is_none(), "a refused person is not recorded as a user");
}

#[tokio::test]
async fn an_admitted_admin_gets_the_admin_group_and_the_login_is_audited() {
    let app = TestApp::with_extra_toml(POLICY).await;
    let tokens = app.login_and_exchange("ada", "ada-pw").await;
    let info = app.userinfo(tokens["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["groups"], json!(["admins", "hub-admins"]));
    let audit = app.store.audit_events(10).await.unwrap();
    let entry = audit.iter().find(|e| e.kind == "login").unwrap();
    assert_eq!(entry.reason.as_deref(), Some("admin_user"));
    assert!(entry.user_id.is_some());
}

#[tokio::test]
async fn blocked_users_are_refused_even_when_everyone_else_is_admitted() {
    let app = TestApp::with_extra_toml("[access]\nallow_all = true\nblocked_users = [\"Sam\"]\n").await;
    let pkce = Pkce::new();
    let res = app.browser().submit_login(&AuthParams::hub(&pkce), "sam", "sam-pw").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.text().contains("blocked_user"));
    let code = app.browser().login_for_code(&AuthParams::hub(&pkce), "ada", "ada-pw").await;
    assert!(!code.is_empty());
}

#[tokio::test]
async fn every_page_carries_a_request_id_header() {
    let app = TestApp::new().await;
    let a = app.get("/.well-known/openid-configuration").await;
    let b = app.get("/nope").await;
    let (a, b) = (a.headers.get("x-request-id").unwrap(), b.headers.get("x-request-id").unwrap());
    assert_ne!(a, b);
    assert_eq!(a.len(), 12);
}

#[test]
fn global_only_access_keys_are_refused_per_connector() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config_toml("hubauth.db").replace(
        "type = \"dev\"\nid = \"dev\"\n",
        "type = \"dev\"\nid = \"dev\"\n[connectors.access]\ncontact = \"x@y\"\n",
    );
    let err = hubauth::config::Config::parse(&toml, &dir.path().join("h.toml")).unwrap_err().to_string();
    assert!(err.contains("connectors[0].access.contact") && err.contains("global [access]"), "{err}");
}

#[tokio::test]
async fn refusals_and_admissions_are_counted_by_reason_in_the_metrics() {
    let app = TestApp::with_extra_toml(POLICY).await;
    let pkce = Pkce::new();
    assert_eq!(
        app.browser().submit_login(&AuthParams::hub(&pkce), "sam", "sam-pw").await.status,
        StatusCode::FORBIDDEN
    );
    app.login_and_exchange("ada", "ada-pw").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status, StatusCode::OK);
    let text = res.text();
    assert!(
        text.contains(r#"hubauth_logins_total{connector="dev",outcome="refused",reason="not_allowed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"hubauth_logins_total{connector="dev",outcome="admitted",reason="admin_user"} 1"#),
        "{text}"
    );
    assert!(!text.contains("sam"), "no usernames in metrics");
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let app = TestApp::with_extra_toml("[metrics]\ntoken = \"scrape-token-0123456789\"\n").await;
    assert_eq!(app.get("/metrics").await.status, StatusCode::UNAUTHORIZED);
    let req = axum::http::Request::get("/metrics")
        .header("authorization", "Bearer scrape-token-0123456789")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn static_groups_are_granted_to_named_users_and_can_admit_them() {
    let app = TestApp::with_extra_toml(
        "[access]\nallowed_groups = [\"staff\"]\n[[static_groups]]\nname = \"staff\"\nusers = [\"SAM\"]\n",
    )
    .await;
    let tokens = app.login_and_exchange("sam", "sam-pw").await;
    let info = app.userinfo(tokens["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["groups"], json!(["students", "staff"]));
    let pkce = Pkce::new();
    assert_eq!(
        app.browser().submit_login(&AuthParams::hub(&pkce), "ada", "ada-pw").await.status,
        StatusCode::FORBIDDEN
    );
}
