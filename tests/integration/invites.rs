//! Workshop invites: a link admits whoever opens it and signs in, with the invite's groups,
//! within its expiry and use limit; admins create, list and revoke invites by API and CLI.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;
use crate::upstream_oidc::{FakeOidc, Twist};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";

fn policy() -> String {
    format!(
        r#"
[access]
allowed_groups = ["admins"]
recheck_after = "5m"
[invites]
continue_url = "http://127.0.0.1:8000/hub/login"
[admin]
api_tokens = ["{ADMIN_TOKEN}"]
"#
    )
}

async fn admin(app: &TestApp, method: Method, uri: &str, body: Option<Value>, token: Option<&str>) -> TestResponse {
    let mut req = Request::builder().method(method).uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    app.send(req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_default()).unwrap()).await
}

async fn create(app: &TestApp, body: Value) -> (String, String) {
    let res = admin(app, Method::POST, "/admin/api/invites", Some(body), Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let v = res.json();
    let link = url::Url::parse(v["link"].as_str().unwrap()).unwrap();
    (v["id"].as_str().unwrap().to_string(), link.path().to_string())
}

#[tokio::test]
async fn an_invite_link_admits_someone_no_group_admits_and_grants_its_groups() {
    let app = TestApp::with_extra_toml(&policy()).await;
    let pkce = Pkce::new();
    // Without the invite, sam is refused.
    let res = app.browser().submit_login(&AuthParams::hub(&pkce), "sam", "sam-pw").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let (id, path) =
        create(&app, json!({"expires_in": "2d", "max_uses": 30, "groups": ["workshop-2026"], "note": "Intro to HPC"}))
            .await;
    let mut browser = app.browser();
    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("Intro to HPC") && page.text().contains("workshop-2026"));
    assert!(page.text().contains("http:&#x2f;&#x2f;127.0.0.1:8000&#x2f;hub&#x2f;login"), "continue to the hub");

    let code = browser.login_for_code(&AuthParams::hub(&pkce), "sam", "sam-pw").await;
    let tokens = app.exchange(&code, &pkce).await.json();
    let info = app.userinfo(tokens["access_token"].as_str().unwrap()).await.json();
    assert_eq!(info["groups"], json!(["students", "workshop-2026"]));
    assert!(!browser.cookies.contains_key("hubauth_invite"), "the invite cookie is spent");

    let list = admin(&app, Method::GET, "/admin/api/invites", None, Some(ADMIN_TOKEN)).await.json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["uses"], 1);
    assert_eq!(list[0]["state"], "open");
    assert!(!list.to_string().contains(&path[8..]), "the secret link is never listed");
    let audit = app.store.audit_events(10).await.unwrap();
    assert_eq!(audit.iter().find(|e| e.kind == "login").unwrap().reason.as_deref(), Some("invite"));

    // Past the re-check window the invite still admits; once revoked, access ends.
    app.clock.advance(301);
    assert_eq!(app.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
    assert_eq!(
        admin(&app, Method::DELETE, &format!("/admin/api/invites/{id}"), None, Some(ADMIN_TOKEN)).await.status,
        StatusCode::NO_CONTENT
    );
    app.clock.advance(301);
    assert_eq!(app.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.get(&path).await.status, StatusCode::GONE, "a revoked link is refused");
}

#[tokio::test]
async fn uses_are_counted_per_person_and_a_used_up_invite_admits_nobody_new() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&format!("{}{}", policy(), fake.connector_toml("uni", ""))).await;
    let (_, path) = create(&app, json!({"expires_in": "1h", "max_uses": 1, "groups": ["w"]})).await;
    let login_as = |sub: &'static str, name: &'static str| {
        let (app, fake, path) = (&app, &fake, path.clone());
        async move {
            let mut browser = app.browser();
            assert_eq!(browser.get(&path).await.status, StatusCode::OK);
            let pkce = Pkce::new();
            let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
            let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
            let code = fake.approve(&up, json!({"sub": sub, "preferred_username": name}), Twist::default());
            browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await
        }
    };
    assert_eq!(login_as("p1", "pat").await.status, StatusCode::SEE_OTHER);
    let list = admin(&app, Method::GET, "/admin/api/invites", None, Some(ADMIN_TOKEN)).await.json();
    assert_eq!((list[0]["uses"].as_i64(), list[0]["state"].as_str()), (Some(1), Some("used up")));
    // Used up: the link now turns the next person away.
    let page = app.browser().get(&path).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.text().contains("used by as many people as it allows"));
    // pat keeps the access the invite gave: it is re-checked, not re-counted.
    let pat = app.store.user_by_username("pat").await.unwrap().unwrap();
    assert_eq!(app.store.invites_of_user(&pat.id, START + 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_invite_for_one_connector_does_not_admit_through_another() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&format!("{}{}", policy(), fake.connector_toml("uni", ""))).await;
    let (_, path) = create(&app, json!({"expires_in": "1h", "connector": "uni"})).await;
    let mut browser = app.browser();
    browser.get(&path).await;
    let pkce = Pkce::new();
    let res = browser.submit_login(&AuthParams::hub(&pkce), "sam", "sam-pw").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "the dev connector is not the invite's");
}

#[tokio::test]
async fn expired_and_unknown_links_are_refused_clearly() {
    let app = TestApp::with_extra_toml(&policy()).await;
    let (_, path) = create(&app, json!({"expires_in": "1h"})).await;
    app.clock.advance(3601);
    let res = app.get(&path).await;
    assert_eq!(res.status, StatusCode::GONE);
    assert!(res.text().contains("has expired"));
    assert_eq!(app.get("/invite/not-a-real-link").await.status, StatusCode::GONE);
}

#[tokio::test]
async fn the_admin_api_needs_a_configured_token() {
    let app = TestApp::with_extra_toml(&policy()).await;
    let body = Some(json!({"expires_in": "1h"}));
    assert_eq!(
        admin(&app, Method::POST, "/admin/api/invites", body.clone(), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin(&app, Method::POST, "/admin/api/invites", body.clone(), Some("wrong-token-wrong-token-wrong-token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let res = admin(
        &app,
        Method::POST,
        "/admin/api/invites",
        Some(json!({"expires_in": "1h", "connector": "nope"})),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("no connector"));
    let res =
        admin(&app, Method::POST, "/admin/api/invites", Some(json!({"expires_in": "soon"})), Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        admin(&app, Method::DELETE, "/admin/api/invites/nope", None, Some(ADMIN_TOKEN)).await.status,
        StatusCode::NOT_FOUND
    );

    // Without static tokens only stored ones work: this value is no admin's.
    let off = TestApp::new().await;
    assert_eq!(
        admin(&off, Method::GET, "/admin/api/invites", None, Some(ADMIN_TOKEN)).await.status,
        StatusCode::UNAUTHORIZED
    );
}
