//! Anyone can start a sign-in, so what that leaves in the database is capped: per browser (its
//! oldest are dropped), per address (new ones refused with a page that says why), in all.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};

use crate::harness::*;

const LIMITS: &str = r#"
[session]
max_pending_per_browser = 3
max_pending_per_address = 5
"#;

/// `/authorize` from `address` without cookies: a new browser each time.
async fn authorize_from(app: &TestApp, address: &str) -> TestResponse {
    let pkce = Pkce::new();
    let peer: SocketAddr = format!("{address}:40000").parse().unwrap();
    let req = Request::get(AuthParams::hub(&pkce).uri()).extension(ConnectInfo(peer)).body(Body::empty()).unwrap();
    app.send(req).await
}

#[tokio::test]
async fn one_browser_keeps_only_its_newest_pending_sign_ins() {
    let app = TestApp::with_extra_toml(LIMITS).await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let mut login_pages = Vec::new();
    for _ in 0..20 {
        let res = browser.get(&AuthParams::hub(&pkce).uri()).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        login_pages.push(res.headers[header::LOCATION].to_str().unwrap().to_string());
        app.clock.advance(1);
    }
    assert_eq!(app.sql_count("pending_authorizations").await, 3, "the cap, not 20");
    let oldest = browser.get(&login_pages[0]).await;
    assert_eq!(oldest.status, StatusCode::BAD_REQUEST);
    assert!(oldest.text().contains("expired"), "{}", oldest.text());
    // The newest ones all still work in this browser (one binding for its tabs).
    for page in &login_pages[17..] {
        assert_eq!(browser.get(page).await.status, StatusCode::OK);
    }
    let code = browser.login_for_code(&AuthParams::hub(&pkce), "ada", "ada-pw").await;
    assert_eq!(app.exchange(&code, &pkce).await.status, StatusCode::OK);
}

#[tokio::test]
async fn one_address_gets_a_clear_refusal_beyond_its_cap_and_others_are_not_affected() {
    let app = TestApp::with_extra_toml(LIMITS).await;
    for _ in 0..5 {
        assert_eq!(authorize_from(&app, "192.0.2.7").await.status, StatusCode::SEE_OTHER);
    }
    for _ in 0..50 {
        let refused = authorize_from(&app, "192.0.2.7").await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.text().contains("Too many sign-ins are in progress"), "{}", refused.text());
    }
    assert_eq!(app.sql_count("pending_authorizations").await, 5);
    // One IPv6 /64 is one source.
    for i in 0..5 {
        assert_eq!(authorize_from(&app, &format!("[2001:db8:1:2::{i}]")).await.status, StatusCode::SEE_OTHER);
    }
    assert_eq!(authorize_from(&app, "[2001:db8:1:2:ffff::1]").await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(authorize_from(&app, "198.51.100.1").await.status, StatusCode::SEE_OTHER, "another address");
    // Once they lapse and are purged, the address may start again.
    app.clock.advance(15 * 60 + 1);
    assert!(app.store.purge_expired(START + 15 * 60 + 1).await.unwrap() >= 11);
    assert_eq!(authorize_from(&app, "192.0.2.7").await.status, StatusCode::SEE_OTHER);
}

/// Reloading the page that sends the browser to the provider starts a new trip each time; only
/// the newest few are kept, and the newest still completes.
#[tokio::test]
async fn reloading_the_trip_to_the_provider_keeps_only_the_newest_few() {
    let fake = crate::upstream_oidc::FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&fake.connector_toml("uni", "")).await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let res = browser.get(&AuthParams::hub(&pkce).set("connector", "uni").uri()).await;
    let login = res.headers[header::LOCATION].to_str().unwrap().to_string();
    let mut last = None;
    for _ in 0..30 {
        let res = browser.get(&login).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        last = Some(res.location());
        app.clock.advance(1);
    }
    assert_eq!(app.sql_count("upstream_attempts").await, 4, "not 30");
    let up = last.unwrap();
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let code = fake.approve(&up, crate::upstream_oidc::alice(), Default::default());
    let res = browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
}

/// A browser starting sign-in after sign-in (each with a trip to the provider) leaves only its
/// newest pending ones and their trips behind.
#[tokio::test]
async fn dropped_sign_ins_take_their_trips_to_the_provider_with_them() {
    let fake = crate::upstream_oidc::FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&format!("{LIMITS}\n{}", fake.connector_toml("uni", ""))).await;
    let pkce = Pkce::new();
    let mut browser = app.browser();
    for _ in 0..20 {
        browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
        app.clock.advance(1);
    }
    assert_eq!(app.sql_count("pending_authorizations").await, 3);
    assert_eq!(app.sql_count("upstream_attempts").await, 3, "one trip for each kept sign-in");
}
