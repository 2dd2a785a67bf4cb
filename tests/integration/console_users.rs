//! The console's Users section and the users API: find people (filters, keyset pages), see one,
//! block / unblock / revoke / delete them one at a time or in bulk through a confirmation page.
//! Viewers look but cannot change; every change needs the session's CSRF token and is audited.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

const TOKEN: &str = "admin-token-0123456789abcdef0123456789";

/// ada (group `admins`) is an admin, sam a viewer.
fn roles() -> String {
    format!("[admin]\ngroups = [\"admins\"]\nviewer_users = [\"sam\"]\napi_tokens = [\"{TOKEN}\"]\n")
}

async fn console_sign_in<'a>(app: &'a TestApp, user: &str, password: &str) -> Browser<'a> {
    let mut browser = app.browser();
    let res = browser.get("/admin/users").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let to_login = res.location();
    let res = browser.get(&format!("/admin/login?{}", to_login.query().unwrap())).await;
    let form = res.location();
    let page = browser.get(&format!("/login?{}", form.query().unwrap())).await;
    let html = page.text();
    let (request, csrf) = (input_value(&html, "request"), input_value(&html, "csrf"));
    let res = browser
        .post("/login/dev", &[("request", &request), ("csrf", &csrf), ("username", user), ("password", password)])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(res.location().path(), "/admin/users");
    browser
}

/// People who signed in through the dev connector at different times: user00..user{n-1}, the
/// even ones in `even`, user i last active at START - i days.
async fn people(app: &TestApp, n: usize) {
    for i in 0..n {
        let who = hubauth::store::UpstreamIdentity {
            connector_id: "dev".into(),
            subject: format!("s{i}"),
            username: format!("user{i:02}"),
            name: Some(format!("Person {i}")),
            email: Some(format!("user{i:02}@example.org")),
            email_verified: true,
            groups: vec![if i % 2 == 0 { "even" } else { "odd" }.into()],
        };
        app.store.upsert_user_for_identity(&who, START - i as i64 * 86_400).await.unwrap();
    }
}

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/").replace("&#x2F;", "/").replace("&amp;", "&").replace("&#x3d;", "=")
}

/// The href of the link whose text is `text`.
fn link(html: &str, text: &str) -> Option<String> {
    let end = html.find(&format!(">{text}</a>"))?;
    let start = html[..end].rfind("href=\"")? + 6;
    Some(unescape(html[start..end].split('"').next().unwrap()))
}

fn usernames_on(html: &str) -> Vec<String> {
    html.split("name=\"user\" value=\"").skip(1).map(|s| s.split('"').next().unwrap().to_string()).collect()
}

async fn exists(app: &TestApp, name: &str) -> bool {
    app.store.user_by_username(name).await.unwrap().is_some()
}

async fn blocked(app: &TestApp, name: &str) -> bool {
    let q = hubauth::store::UserQuery { username: Some(name.into()), limit: 1, ..Default::default() };
    app.store.users_page(&q).await.unwrap()[0].blocked_at.is_some()
}

#[tokio::test]
async fn admins_find_people_with_filters_across_pages() {
    let app = TestApp::with_extra_toml(&roles()).await;
    people(&app, 60).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw").await;
    let page = ada.get("/admin/users").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert_eq!(page.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let html = page.text();
    assert!(html.contains("61 users"), "60 people and ada: {html}");
    let first = usernames_on(&html);
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], "ada");
    // Every page until the last, by the next-page link: everyone once, in order.
    let mut all = first;
    let mut next = link(&html, "Next page");
    while let Some(href) = next {
        let html = ada.get(&href).await.text();
        all.extend(usernames_on(&html));
        next = link(&html, "Next page");
    }
    let mut expected: Vec<String> = (0..60).map(|i| format!("user{i:02}")).collect();
    expected.insert(0, "ada".into());
    assert_eq!(all, expected);

    // Filters, each on its own and together; the next link keeps them.
    let html = ada.get("/admin/users?q=USER05").await.text();
    assert_eq!(usernames_on(&html), ["user05"]);
    let html = ada.get("/admin/users?group=even&inactive_since=49d").await.text();
    assert_eq!(usernames_on(&html), ["user50", "user52", "user54", "user56", "user58"]);
    assert!(html.contains("5 users match"), "{html}");
    let html = ada.get("/admin/users?active_since=2d&connector=dev").await.text();
    assert_eq!(usernames_on(&html), ["ada", "user00", "user01", "user02"]);
    let html = ada.get("/admin/users?group=odd").await.text();
    assert_eq!(usernames_on(&html).len(), 30);
    let html = ada.get("/admin/users?blocked=yes").await.text();
    assert!(usernames_on(&html).is_empty() && html.contains("0 users match"), "{html}");

    // Bad input: a clear page, not a panic.
    let res = ada.get("/admin/users?inactive_since=soon").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("inactive_since") && res.text().contains("duration"), "{}", res.text());
    let res = ada.get("/admin/users?blocked=maybe").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = ada.get("/admin/users/nobody").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.text().contains("No such user"));
}

#[tokio::test]
async fn an_admin_blocks_unblocks_revokes_and_deletes_one_person_with_the_csrf_token() {
    let app = TestApp::with_extra_toml(&roles()).await;
    let tokens = app.login_and_exchange("sam", "sam-pw").await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw").await;
    let page = ada.get("/admin/users/sam").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("students") && html.contains("Live sessions") && html.contains("hub grant"), "{html}");
    assert!(html.contains("<code>"), "why sam is admitted: {html}");
    let csrf = input_value(&html, "csrf");
    assert!(!html.contains(tokens["access_token"].as_str().unwrap()), "no token on the page");

    // Without the CSRF token nothing changes.
    let res = ada.post("/admin/users/sam/block", &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = ada.post("/admin/users/sam/block", &[("csrf", "forged")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(!blocked(&app, "sam").await);

    let res = ada.post("/admin/users/sam/block", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(res.location().path(), "/admin/users/sam");
    assert!(blocked(&app, "sam").await);
    let html = ada.get(&format!("{}?{}", res.location().path(), res.location().query().unwrap())).await.text();
    assert!(html.contains("Blocked: their sessions") && html.contains("Unblock"), "{html}");
    assert!(html.contains("No live session."), "{html}");
    // Sam's hub tokens stop working.
    assert_eq!(app.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    let res = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
        .await;
    assert_ne!(res.status, StatusCode::OK);
    let audit = app.store.audit_events(20).await.unwrap();
    let e = audit.iter().find(|e| e.kind == "user_blocked").unwrap();
    assert_eq!((e.actor.as_deref(), e.username.as_deref()), (Some("ada"), Some("sam")));
    assert!(e.request_id.is_some());

    let res = ada.post("/admin/users/sam/unblock", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(!blocked(&app, "sam").await);
    let res = ada.post("/admin/users/sam/revoke", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let audit = app.store.audit_events(20).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "user_unblocked" && e.actor.as_deref() == Some("ada")));
    assert!(audit.iter().any(|e| e.kind == "sessions_revoked" && e.actor.as_deref() == Some("ada")));
    let res = ada.post("/admin/users/sam/frobnicate", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    // Not oneself: that would lock ada out.
    let res = ada.post("/admin/users/ada/block", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("you cannot block yourself"), "{}", res.text());
    assert!(!blocked(&app, "ada").await);

    // Delete asks first.
    let res = ada.post("/admin/users/sam/delete", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::OK);
    let html = res.text();
    assert!(html.contains("Delete 1 user?") && html.contains("<li>sam</li>"), "{html}");
    assert!(exists(&app, "sam").await, "nothing deleted before the confirmation");
    let res = ada.post("/admin/users/sam/delete", &[("csrf", &csrf), ("confirm", "yes")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(!exists(&app, "sam").await);
    assert_eq!(ada.get("/admin/users/sam").await.status, StatusCode::NOT_FOUND);
    let res = ada.post("/admin/users/sam/block", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bulk_changes_go_through_a_confirmation_that_lists_exactly_who() {
    let app = TestApp::with_extra_toml(&roles()).await;
    people(&app, 30).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw").await;
    let csrf = input_value(&ada.get("/admin/users").await.text(), "csrf");
    let pick =
        [("csrf", csrf.as_str()), ("action", "delete"), ("user", "user01"), ("user", "user02"), ("user", "user03")];
    assert_eq!(ada.post("/admin/users/bulk", &pick[1..]).await.status, StatusCode::FORBIDDEN, "CSRF");
    let res = ada.post("/admin/users/bulk", &pick).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let html = res.text();
    assert!(html.contains("Delete 3 users?"), "{html}");
    assert!(["user01", "user02", "user03"].iter().all(|u| html.contains(&format!("<li>{u}</li>"))));
    assert_eq!(html.matches("<li>").count(), 3);
    let names = input_value(&html, "names");
    assert!(exists(&app, "user01").await);
    let apply = [("csrf", csrf.as_str()), ("action", "delete"), ("names", names.as_str())];
    assert_eq!(ada.post("/admin/users/bulk/apply", &apply[1..]).await.status, StatusCode::FORBIDDEN);
    let res = ada.post("/admin/users/bulk/apply", &apply).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.text().contains("Done for everyone"), "{}", res.text());
    for u in ["user01", "user02", "user03"] {
        assert!(!exists(&app, u).await, "{u}");
    }
    assert!(exists(&app, "user04").await);
    let html = ada.get("/admin/users").await.text();
    assert!(!usernames_on(&html).contains(&"user02".to_string()));

    // All matching a filter: resolved on the server, listed, then applied to exactly those.
    let all = [("csrf", csrf.as_str()), ("action", "block"), ("scope", "all"), ("q", "user1"), ("group", "even")];
    let html = ada.post("/admin/users/bulk", &all).await.text();
    assert!(html.contains("Block 5 users?"), "{html}");
    let names = input_value(&html, "names");
    assert_eq!(names, "user10 user12 user14 user16 user18");
    let res = ada.post("/admin/users/bulk/apply", &[("csrf", &csrf), ("action", "block"), ("names", &names)]).await;
    assert!(res.text().contains("blocked"));
    assert!(blocked(&app, "user12").await && !blocked(&app, "user11").await);
    let audit = app.store.audit_events(100).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.kind == "user_blocked" && e.actor.as_deref() == Some("ada")).count(), 5);
    assert_eq!(audit.iter().filter(|e| e.kind == "user_deleted").count(), 3);

    // Nobody selected, or an unknown action: a clear error.
    let res = ada.post("/admin/users/bulk", &[("csrf", &csrf), ("action", "block")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("no one is selected"));
    let res = ada.post("/admin/users/bulk", &[("csrf", &csrf), ("action", "explode"), ("user", "user05")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_viewer_sees_the_users_but_gets_403_on_every_change() {
    let app = TestApp::with_extra_toml(&roles()).await;
    people(&app, 3).await;
    let mut sam = console_sign_in(&app, "sam", "sam-pw").await;
    let html = sam.get("/admin/users").await.text();
    assert!(html.contains("user01") && !html.contains("name=\"user\"") && !html.contains("Review"), "{html}");
    let html = sam.get("/admin/users/user01").await.text();
    assert!(html.contains("user01") && !html.contains("/block\""), "no change buttons: {html}");
    let csrf = {
        use hubauth::clock::Clock;
        let hash = hubauth::crypto::random::value_hash(&sam.cookies["hubauth_session"]);
        app.store.browser_session(&hash, app.clock.now()).await.unwrap().unwrap().csrf_token
    };
    for (uri, form) in [
        ("/admin/users/user01/block", vec![("csrf", csrf.as_str())]),
        ("/admin/users/user01/delete", vec![("csrf", csrf.as_str()), ("confirm", "yes")]),
        ("/admin/users/bulk", vec![("csrf", csrf.as_str()), ("action", "delete"), ("user", "user01")]),
        ("/admin/users/bulk/apply", vec![("csrf", csrf.as_str()), ("action", "delete"), ("names", "user01")]),
    ] {
        assert_eq!(sam.post(uri, &form).await.status, StatusCode::FORBIDDEN, "{uri}");
    }
    assert!(exists(&app, "user01").await && !blocked(&app, "user01").await);
}

async fn api(app: &TestApp, method: &str, uri: &str, body: Option<Value>, token: &str) -> TestResponse {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    app.send(req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_default()).unwrap()).await
}

#[tokio::test]
async fn the_users_api_lists_shows_changes_and_bulk_changes() {
    let app = TestApp::with_extra_toml(&roles()).await;
    people(&app, 12).await;
    let tokens = app.login_and_exchange("sam", "sam-pw").await;

    // Pages by cursor.
    let mut seen = Vec::new();
    let mut uri = "/admin/api/users?limit=5&group=even".to_string();
    loop {
        let res = api(&app, "GET", &uri, None, TOKEN).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        let page = res.json();
        assert_eq!(page["total"], 6);
        seen.extend(page["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(n) => uri = format!("/admin/api/users?limit=5&group=even&after={n}"),
            None => break,
        }
    }
    assert_eq!(seen, ["user00", "user02", "user04", "user06", "user08", "user10"]);
    let res = api(&app, "GET", "/admin/api/users?inactive_since=4d", None, TOKEN).await;
    let names: Vec<_> = res.json()["users"].as_array().unwrap().iter().map(|u| u["username"].clone()).collect();
    assert_eq!(names, ["user05", "user06", "user07", "user08", "user09", "user10", "user11"]);
    for bad in ["inactive_since=x", "active_since=-1", "blocked=maybe", "limit=0", "limit=9999", "limit=ten"] {
        let res = api(&app, "GET", &format!("/admin/api/users?{bad}"), None, TOKEN).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(res.json()["error"].is_string());
    }

    let res = api(&app, "GET", "/admin/api/users/sam", None, TOKEN).await;
    assert_eq!(res.status, StatusCode::OK);
    let sam = res.json();
    assert_eq!(sam["groups"], json!(["students"]));
    assert_eq!(sam["identities"][0]["connector"], "dev");
    assert!(sam["admitted_by"].is_string(), "{sam}");
    assert!(sam["sessions"].as_array().unwrap().iter().any(|s| s["kind"] == "grant"));
    assert!(sam["audit"].as_array().unwrap().iter().any(|e| e["kind"] == "login"));
    assert!(!res.text().contains(tokens["access_token"].as_str().unwrap()));
    assert_eq!(api(&app, "GET", "/admin/api/users/nobody", None, TOKEN).await.status, StatusCode::NOT_FOUND);

    let res = api(&app, "POST", "/admin/api/users/sam/block", None, TOKEN).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["outcome"], "blocked");
    assert_eq!(res.json()["revoked_grants"], 1);
    assert_eq!(app.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api(&app, "POST", "/admin/api/users/sam/block", None, TOKEN).await.json()["outcome"], "already_blocked");
    let res = api(&app, "GET", "/admin/api/users?blocked=yes", None, TOKEN).await;
    assert_eq!(res.json()["users"][0]["username"], "sam");
    assert_eq!(api(&app, "POST", "/admin/api/users/sam/unblock", None, TOKEN).await.json()["outcome"], "unblocked");
    assert_eq!(api(&app, "POST", "/admin/api/users/sam/unblock", None, TOKEN).await.json()["outcome"], "not_blocked");
    let res = api(&app, "POST", "/admin/api/users/sam/revoke-sessions", None, TOKEN).await;
    assert_eq!(res.json()["outcome"], "sessions_revoked");
    let res = api(&app, "DELETE", "/admin/api/users/sam", None, TOKEN).await;
    assert_eq!(res.json()["outcome"], "deleted");
    assert_eq!(api(&app, "DELETE", "/admin/api/users/sam", None, TOKEN).await.status, StatusCode::NOT_FOUND);

    // Bulk: named people (unknown ones reported), or everyone a filter selects.
    let body = json!({"action": "block", "usernames": ["user01", "user02", "ghost"]});
    let res = api(&app, "POST", "/admin/api/users/bulk", Some(body), TOKEN).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let outcomes: Vec<_> = res.json()["outcomes"].as_array().unwrap().iter().map(|o| o["outcome"].clone()).collect();
    assert_eq!(outcomes, ["blocked", "blocked", "not_found"]);
    let body = json!({"action": "delete", "filter": {"group": "odd", "inactive_since": "8d"}});
    let res = api(&app, "POST", "/admin/api/users/bulk", Some(body), TOKEN).await;
    let deleted: Vec<_> = res.json()["outcomes"].as_array().unwrap().iter().map(|o| o["username"].clone()).collect();
    assert_eq!(deleted, ["user09", "user11"]);
    assert!(!exists(&app, "user09").await && exists(&app, "user08").await);
    for bad in [
        json!({"action": "explode", "usernames": ["user03"]}),
        json!({"action": "block"}),
        json!({"action": "block", "usernames": ["a"], "filter": {}}),
        json!({"action": "block", "filter": {"colour": "red"}}),
        json!({"action": "block", "usernames": (0..5001).map(|i| format!("u{i}")).collect::<Vec<_>>()}),
    ] {
        let res = api(&app, "POST", "/admin/api/users/bulk", Some(bad.clone()), TOKEN).await;
        assert!(res.status == StatusCode::BAD_REQUEST || res.status == StatusCode::PAYLOAD_TOO_LARGE, "{bad}");
    }
    let audit = app.store.audit_events(100).await.unwrap();
    let kinds = ["user_blocked", "user_unblocked", "sessions_revoked", "user_deleted"];
    for kind in kinds {
        assert!(audit.iter().any(|e| e.kind == kind && e.actor.as_deref() == Some("config-token")), "{kind}");
    }

    // No token, no answer.
    let res = app.send(Request::get("/admin/api/users").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn through_the_api_a_viewer_reads_and_a_read_token_cannot_change() {
    let app = TestApp::with_extra_toml(&roles()).await;
    people(&app, 2).await;
    let mut sam = console_sign_in(&app, "sam", "sam-pw").await;
    assert_eq!(sam.get("/admin/users").await.status, StatusCode::OK);
    let csrf = {
        use hubauth::clock::Clock;
        let hash = hubauth::crypto::random::value_hash(&sam.cookies["hubauth_session"]);
        app.store.browser_session(&hash, app.clock.now()).await.unwrap().unwrap().csrf_token
    };
    let send = |method: &str, uri: &str, csrf: &str| {
        let cookies = sam.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::COOKIE, cookies)
            .header("x-csrf-token", csrf)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"action": "delete", "usernames": ["user01"]}"#))
            .unwrap()
    };
    let res = app.send(send("GET", "/admin/api/users/user01", &csrf)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    for (method, uri) in [
        ("POST", "/admin/api/users/user01/block"),
        ("DELETE", "/admin/api/users/user01"),
        ("POST", "/admin/api/users/bulk"),
    ] {
        assert_eq!(app.send(send(method, uri, &csrf)).await.status, StatusCode::FORBIDDEN, "{method} {uri}");
    }
    let token = api(&app, "POST", "/admin/api/tokens", Some(json!({"name": "r", "scope": "read"})), TOKEN).await;
    let token = token.json()["token"].as_str().unwrap().to_string();
    assert_eq!(api(&app, "GET", "/admin/api/users", None, &token).await.status, StatusCode::OK);
    assert_eq!(api(&app, "POST", "/admin/api/users/user01/block", None, &token).await.status, StatusCode::FORBIDDEN);
    assert!(exists(&app, "user01").await && !blocked(&app, "user01").await);
}
