//! The console's pages for the allow-list, invites, the audit log and the activity report: an
//! admin sees and changes, a viewer only sees, a forged form changes nothing, and every change
//! is audited with the admin's name and the request id. The audit log's API pages like the page.

use axum::http::{header, StatusCode};

use crate::admins::console_sign_in;
use crate::harness::*;

/// ada (group `admins`) is an admin, sam a viewer.
const ROLES: &str = "[admin]\ngroups = [\"admins\"]\nviewer_users = [\"sam\"]\n";

const PAGES: [&str; 5] = ["/admin/access", "/admin/invites", "/admin/audit", "/admin/report", "/admin/tokens"];

/// What an HTML attribute holds, unescaped the way a browser reads it.
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/").replace("&#x2F;", "/").replace("&amp;", "&").replace("&quot;", "\"")
}

#[tokio::test]
async fn every_page_renders_for_an_admin_with_its_forms_and_no_store() {
    let app = TestApp::with_extra_toml(ROLES).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    for uri in PAGES {
        let page = ada.get(uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.text());
        assert_eq!(page.headers.get(header::CACHE_CONTROL).unwrap(), "no-store", "{uri}");
        let html = page.text();
        assert!(html.contains("aria-current=\"page\""), "{uri}: the navigation marks the page");
        assert!(!html.contains("hubauth_session"), "{uri}");
    }
    let access = unescape(&ada.get("/admin/access").await.text());
    assert!(access.contains("action=\"/admin/access\"") && access.contains("name=\"csrf\""), "{access}");
    assert!(access.contains("admits everyone"), "the test config admits everyone: the page says so");
    let invites = ada.get("/admin/invites").await.text();
    assert!(invites.contains("Create the invite"), "{invites}");
}

#[tokio::test]
async fn a_viewer_sees_the_pages_without_forms_and_gets_403_on_every_change() {
    let app = TestApp::with_extra_toml(ROLES).await;
    let ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let mut ada = ada;
    let csrf = input_value(&ada.get("/admin/access").await.text(), "csrf");
    let res = ada.post("/admin/access", &[("csrf", &csrf), ("kind", "username"), ("value", "kim")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let id = app.store.access_entries().await.unwrap()[0].id.clone();

    let mut sam = console_sign_in(&app, "sam", "sam-pw", "/admin/").await;
    for uri in PAGES {
        let page = sam.get(uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        let html = page.text();
        assert!(!html.contains("method=\"post\""), "{uri}: a viewer gets no change form: {html}");
    }
    assert!(sam.get("/admin/access").await.text().contains("kim"), "a viewer sees the entries");
    // Even with the session's own CSRF token (read from the store), every change is refused.
    let csrf = session_csrf(&sam).await;
    for (uri, fields) in [
        ("/admin/access".to_string(), vec![("kind", "username"), ("value", "eve")]),
        (format!("/admin/access/{id}/delete"), vec![]),
        ("/admin/invites".to_string(), vec![("expires_in", "7d")]),
        ("/admin/invites/whatever/revoke".to_string(), vec![]),
        ("/admin/tokens".to_string(), vec![("name", "job"), ("scope", "write")]),
        ("/admin/tokens/whatever/revoke".to_string(), vec![]),
    ] {
        let mut pairs = vec![("csrf", csrf.as_str())];
        pairs.extend(fields);
        let res = sam.post(&uri, &pairs).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(res.text().contains("read_only"), "{uri}: {}", res.text());
    }
    assert_eq!(app.store.access_entries().await.unwrap().len(), 1, "nothing added, nothing removed");
    assert!(app.store.invites().await.unwrap().is_empty());
    assert!(app.store.admin_tokens().await.unwrap().is_empty());
}

async fn session_csrf(browser: &Browser<'_>) -> String {
    use hubauth::clock::Clock;
    let hash = hubauth::crypto::random::value_hash(&browser.cookies["hubauth_session"]);
    browser.app.store.browser_session(&hash, browser.app.clock.now()).await.unwrap().unwrap().csrf_token
}

#[tokio::test]
async fn a_forged_form_without_or_with_a_wrong_csrf_token_changes_nothing() {
    let app = TestApp::with_extra_toml(ROLES).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let csrf = input_value(&ada.get("/admin/access").await.text(), "csrf");
    ada.post("/admin/access", &[("csrf", &csrf), ("kind", "username"), ("value", "kim")]).await;
    let entries = app.store.access_entries().await.unwrap();
    let id = entries[0].id.clone();
    ada.post("/admin/invites", &[("csrf", &csrf), ("expires_in", "1d")]).await;
    let invite = app.store.invites().await.unwrap()[0].id.clone();
    let audited = app.store.audit_events(100).await.unwrap().len();

    for forged in [None, Some("forged"), Some("")] {
        let with = |mut pairs: Vec<(&'static str, &'static str)>| {
            if let Some(c) = forged {
                pairs.push(("csrf", c));
            }
            pairs
        };
        for (uri, pairs) in [
            ("/admin/access".to_string(), with(vec![("kind", "username"), ("value", "eve")])),
            (format!("/admin/access/{id}/delete"), with(vec![])),
            ("/admin/invites".to_string(), with(vec![("expires_in", "7d")])),
            (format!("/admin/invites/{invite}/revoke"), with(vec![])),
            ("/admin/tokens".to_string(), with(vec![("name", "job"), ("scope", "write")])),
        ] {
            let res = ada.post(&uri, &pairs).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{uri} {forged:?}");
            assert!(res.text().contains("nothing was changed"), "{}", res.text());
        }
    }
    assert_eq!(app.store.access_entries().await.unwrap(), entries);
    let invites = app.store.invites().await.unwrap();
    assert_eq!((invites.len(), invites[0].revoked_at), (1, None));
    assert!(app.store.admin_tokens().await.unwrap().is_empty());
    assert_eq!(app.store.audit_events(100).await.unwrap().len(), audited, "nothing to audit");

    // Someone not signed in is sent to sign in, and nothing changes either.
    let mut nobody = app.browser();
    let res = nobody.post("/admin/access", &[("csrf", &csrf), ("kind", "username"), ("value", "eve")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location().path(), "/admin/login");
    assert_eq!(app.store.access_entries().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_allow_list_adds_and_removes_and_audits_the_admin_and_the_request() {
    let app = TestApp::with_extra_toml(ROLES).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let csrf = input_value(&ada.get("/admin/access").await.text(), "csrf");
    let res = ada
        .post(
            "/admin/access",
            &[
                ("csrf", &csrf),
                ("kind", "login"),
                ("value", "octo"),
                ("connector", "dev"),
                ("groups", "workshop, gpu"),
                ("note", "for the course"),
                ("expires_in", "30d"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let request_id = res.headers.get("x-request-id").unwrap().to_str().unwrap().to_string();
    let page = ada.get(res.location().as_str().trim_start_matches(ISSUER)).await.text();
    assert!(page.contains("Added to the allow-list"), "{page}");
    assert!(page.contains("octo") && page.contains("workshop, gpu") && page.contains("for the course"), "{page}");
    let entries = app.store.access_entries().await.unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!((e.groups.clone(), e.created_by.as_str()), (vec!["workshop".to_string(), "gpu".into()], "ada"));
    assert_eq!(e.expires_at, Some(START + 30 * 86400));
    let audit = app.store.audit_events(20).await.unwrap();
    let allowed = audit.iter().find(|a| a.kind == "access_allowed").unwrap();
    assert_eq!(allowed.actor.as_deref(), Some("ada"));
    assert_eq!(allowed.request_id.as_deref(), Some(request_id.as_str()), "the request that asked");

    // Bad input: the page again, with the error and the form as it was, nothing stored.
    for (pairs, says) in [
        (vec![("kind", "email"), ("value", "not-an-address")], "is not an e-mail address"),
        (vec![("kind", "username"), ("value", "kim"), ("expires_in", "soon")], "is not a duration"),
        (vec![("kind", "login"), ("value", "kim")], "needs its connector"),
        (vec![("kind", "username"), ("value", "")], "Say who"),
        (vec![("kind", "other"), ("value", "kim")], "is not username"),
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(pairs);
        let res = ada.post("/admin/access", &all).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{says}");
        assert!(res.text().contains("class=\"error\"") && res.text().contains(says), "{says}: {}", res.text());
    }
    assert_eq!(app.store.access_entries().await.unwrap().len(), 1);

    let res = ada.post(&format!("/admin/access/{}/delete", e.id), &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let request_id = res.headers.get("x-request-id").unwrap().to_str().unwrap().to_string();
    assert!(app.store.access_entries().await.unwrap().is_empty());
    let audit = app.store.audit_events(20).await.unwrap();
    let denied = audit.iter().find(|a| a.kind == "access_denied").unwrap();
    assert_eq!((denied.actor.as_deref(), denied.request_id.as_deref()), (Some("ada"), Some(request_id.as_str())));
    // Removed twice: a clear answer, not an error page.
    let res = ada.post(&format!("/admin/access/{}/delete", e.id), &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.text().contains("no allow-list entry with this id"));
}

#[tokio::test]
async fn an_invite_link_is_shown_once_on_creation_and_never_on_the_list() {
    let app = TestApp::with_extra_toml(ROLES).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let csrf = input_value(&ada.get("/admin/invites").await.text(), "csrf");
    let res = ada
        .post(
            "/admin/invites",
            &[
                ("csrf", &csrf),
                ("expires_in", "2d"),
                ("max_uses", "30"),
                ("groups", "workshop"),
                ("connector", "dev"),
                ("note", "winter school"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let html = res.text();
    let link = unescape(&input_value(&html, "link"));
    assert!(link.starts_with(&format!("{ISSUER}/invite/")), "{link}");
    assert!(html.contains("readonly") && html.contains("shown only this once"), "{html}");
    let secret = link.rsplit('/').next().unwrap().to_string();

    let list = ada.get("/admin/invites").await.text();
    assert!(!list.contains(&secret) && !list.contains("/invite/"), "the list never shows a link: {list}");
    assert!(list.contains("winter school") && list.contains("0 / 30") && list.contains("open"), "{list}");
    let invites = app.store.invites().await.unwrap();
    assert_eq!((invites.len(), invites[0].max_uses, invites[0].groups.clone()), (1, Some(30), vec!["workshop".into()]));
    let created = app.store.audit_events(20).await.unwrap();
    let created = created.iter().find(|e| e.kind == "invite_created").unwrap();
    assert_eq!(created.actor.as_deref(), Some("ada"));
    assert!(created.request_id.is_some());
    assert!(!created.detail.clone().unwrap_or_default().contains(&secret), "the audit log has no link");

    // The link works (the invite page opens) until it is revoked.
    let opened = app.get(&format!("/invite/{secret}")).await;
    assert_eq!(opened.status, StatusCode::OK);
    assert!(!opened.text().contains("cannot be used"), "{}", opened.text());
    let res = ada.post(&format!("/admin/invites/{}/revoke", invites[0].id), &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let list = ada.get("/admin/invites?done=revoked").await.text();
    assert!(list.contains("revoked") && !list.contains("Revoke invite"), "{list}");
    assert!(app.get(&format!("/invite/{secret}")).await.text().contains("was withdrawn"));
    let revoked = app.store.audit_events(20).await.unwrap();
    assert!(revoked.iter().any(|e| e.kind == "invite_revoked" && e.actor.as_deref() == Some("ada")));

    // Bad input: the form again with a clear error.
    for (field, value, says) in [
        ("expires_in", "forever", "is not a duration"),
        ("max_uses", "many", "is not a whole number"),
        ("max_uses", "0", "at least 1"),
        ("connector", "nope", "no connector"),
    ] {
        let mut pairs = vec![("csrf", csrf.as_str()), ("expires_in", "1d")];
        pairs.retain(|(k, _)| *k != field);
        pairs.push((field, value));
        let res = ada.post("/admin/invites", &pairs).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{field}={value}");
        assert!(res.text().contains(says), "{field}={value}: {}", res.text());
    }
    assert_eq!(app.store.invites().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_audit_log_filters_and_pages_and_its_api_agrees() {
    let app = TestApp::with_extra_toml(ROLES).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let csrf = input_value(&ada.get("/admin/access").await.text(), "csrf");
    for i in 0..60 {
        let value = format!("person{i:02}");
        let res = ada.post("/admin/access", &[("csrf", &csrf), ("kind", "username"), ("value", &value)]).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
    }
    let page = ada.get("/admin/audit?kind=access_allowed").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("person59") && !html.contains("person09"), "newest first, 50 a page");
    assert_eq!(html.matches("<code>access_allowed</code>").count(), 50);
    let older = unescape(html.split("rel=\"next\"").next().unwrap().rsplit("href=\"").next().unwrap());
    let older = older.trim_end_matches("\" ").trim_end_matches('"').to_string();
    assert!(older.contains("kind=access_allowed") && older.contains("before="), "{older}");
    let html = ada.get(&older).await.text();
    assert!(html.contains("person09") && html.contains("person00") && !html.contains("person10"), "{html}");
    assert_eq!(html.matches("<code>access_allowed</code>").count(), 10);
    assert!(!html.contains("rel=\"next\""), "the last page");

    let html = ada.get("/admin/audit?username=person07").await.text();
    assert_eq!(html.matches("<code>access_allowed</code>").count(), 1, "{html}");
    let html = ada.get("/admin/audit?actor=sam").await.text();
    assert!(html.contains("No events match"), "{html}");
    assert!(ada.get("/admin/audit?actor=ada&since=1970-01-01").await.text().contains("person33"));
    assert!(ada.get("/admin/audit?until=1970-01-02").await.text().contains("No events match"));
    let bad = ada.get("/admin/audit?since=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("is not a time"), "{}", bad.text());
    assert_eq!(ada.get("/admin/audit?before=x").await.status, StatusCode::BAD_REQUEST);

    // The API, with the session cookie (a read needs no CSRF header).
    let api = ada.get("/admin/api/audit?kind=access_allowed&limit=25").await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text());
    let body = api.json();
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 25);
    assert_eq!(events[0]["username"], "person59");
    assert_eq!(events[0]["actor"], "ada");
    assert!(events[0]["request_id"].is_string());
    let next = body["next_before"].as_i64().unwrap();
    assert_eq!(next, events[24]["id"].as_i64().unwrap());
    let body = ada.get(&format!("/admin/api/audit?kind=access_allowed&limit=25&before={next}")).await.json();
    assert_eq!(body["events"][0]["username"], "person34");
    let body = ada.get("/admin/api/audit?kind=access_allowed&limit=500&before=1000000").await.json();
    assert_eq!((body["events"].as_array().unwrap().len(), body["next_before"].clone()), (60, serde_json::Value::Null));
    let bad = ada.get("/admin/api/audit?limit=100000").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("limit"));
    assert_eq!(app.get("/admin/api/audit").await.status, StatusCode::UNAUTHORIZED, "no credential");
    let mut sam = console_sign_in(&app, "sam", "sam-pw", "/admin/").await;
    assert_eq!(sam.get("/admin/api/audit").await.status, StatusCode::OK, "a viewer reads the log");
}

#[tokio::test]
async fn the_report_page_lists_users_filters_and_downloads_csv() {
    let app = TestApp::with_extra_toml(ROLES).await;
    let _sam = console_sign_in(&app, "sam", "sam-pw", "/admin/").await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let page = ada.get("/admin/report").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("<td>ada</td>") && html.contains("<td>sam</td>"), "{html}");
    assert!(html.contains("2 user(s)") && !html.contains("Home directory"), "no storage columns without Prometheus");

    // A hundred days on, ada signs in again; sam has not been back.
    app.clock.advance(100 * 86400);
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let html = ada.get("/admin/report?inactive_since=90d").await.text();
    assert!(html.contains("<td>sam</td>") && !html.contains("<td>ada</td>"), "{html}");
    assert!(html.contains("value=\"90d\"") && html.contains("1 user(s)"), "{html}");
    let bad = ada.get("/admin/report?inactive_since=ninety").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("not a duration"), "{}", bad.text());

    let csv = ada.get("/admin/report.csv?inactive_since=90d").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/csv"));
    assert!(csv.headers.get(header::CONTENT_DISPOSITION).unwrap().to_str().unwrap().contains("attachment"));
    assert_eq!(csv.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let text = csv.text();
    assert!(text.starts_with("username,") && text.contains("\nsam,"), "{text}");
    assert_eq!(ada.get("/admin/report.csv?inactive_since=x").await.status, StatusCode::BAD_REQUEST);
    let res = app.get("/admin/report.csv").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "not signed in: to the console's sign-in");
}

/// With a Prometheus that answers, the page shows the storage columns; without, the note.
#[tokio::test]
async fn the_report_page_shows_storage_columns_and_notes() {
    let prometheus = crate::fakes::serve(crate::activity_report::fake_prometheus(
        &[("ada", "1610612736")],
        &[("ada", "1799990000")],
    ))
    .await;
    let app = TestApp::with_extra_toml(&format!("{ROLES}[report]\nprometheus_url = \"{prometheus}\"\n")).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let html = ada.get("/admin/report").await.text();
    assert!(html.contains("Home directory") && html.contains("1.5 GiB"), "{html}");
    assert!(html.contains("2027-01-15 05:13:20 UTC"), "{html}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = TestApp::with_extra_toml(&format!(
        "{ROLES}[report]\nprometheus_url = \"http://{closed}\"\nprometheus_timeout = \"2s\"\n"
    ))
    .await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let html = ada.get("/admin/report").await.text();
    assert!(html.contains("no storage columns") && !html.contains("Home directory"), "{html}");
}

#[tokio::test]
async fn an_api_token_is_shown_once_works_and_is_revoked() {
    let app = TestApp::with_extra_toml(ROLES).await;
    let mut ada = console_sign_in(&app, "ada", "ada-pw", "/admin/").await;
    let csrf = input_value(&ada.get("/admin/tokens").await.text(), "csrf");
    let res = ada
        .post("/admin/tokens", &[("csrf", &csrf), ("name", "nightly report"), ("scope", "read"), ("expires_in", "90d")])
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let value = input_value(&res.text(), "token");
    assert!(value.starts_with("hubauth_admin_"), "{value}");
    let list = ada.get("/admin/tokens").await.text();
    assert!(!list.contains(&value) && list.contains("nightly report") && list.contains("active"), "{list}");

    let nobody = app.browser();
    let bearer = |uri: &str| {
        axum::http::Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {value}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(nobody.app.send(bearer("/admin/api/audit")).await.status, StatusCode::OK, "the token works");
    let tokens = app.store.admin_tokens().await.unwrap();
    assert_eq!((tokens.len(), tokens[0].created_by.as_str()), (1, "ada"));
    let audit = app.store.audit_events(20).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "admin_token_created" && e.actor.as_deref() == Some("ada")));
    assert!(audit.iter().all(|e| !e.detail.clone().unwrap_or_default().contains(&value)));

    let res = ada.post("/admin/tokens", &[("csrf", &csrf), ("name", " "), ("scope", "read")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.text().contains("say what the token is for"), "{}", res.text());
    let res = ada.post("/admin/tokens", &[("csrf", &csrf), ("name", "x"), ("scope", "root")]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    let res = ada.post(&format!("/admin/tokens/{}/revoke", tokens[0].id), &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(nobody.app.send(bearer("/admin/api/audit")).await.status, StatusCode::UNAUTHORIZED, "revoked");
    let list = ada.get("/admin/tokens?done=revoked").await.text();
    assert!(list.contains("revoked") && !list.contains("Revoke token"), "{list}");
}
