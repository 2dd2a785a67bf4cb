//! The `canvas` connector through the whole hubauth login, against the fake Canvas in
//! `fakes/canvas.rs`: courses over several capped pages, nicknamed courses, terms, several
//! enrollments per course, groups, Canvas throttling, failures, refresh (which keeps the refresh
//! token) and a revoked refresh token, and config mistakes.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hubauth::clock::Clock;
use hubauth::connectors::{ConnectorError, ConnectorKind, Membership, RedirectConnector, UpstreamTokens};
use hubauth::web::upstream::token_context;
use serde_json::Value;

use crate::fakes::canvas::{CanvasFake, Course, User, CLIENT_ID, CLIENT_SECRET};
use crate::fakes::{hub_code, page_text, round_trip, Fault};
use crate::harness::*;

const USER_ID: u64 = 4567;

fn connector_toml(fake: &CanvasFake, extra: &str) -> String {
    format!(
        r#"
[[connectors]]
type = "canvas"
id = "canvas"
name = "bCourses"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
canvas_url = "{}"
{extra}
"#,
        fake.base
    )
}

async fn app_for(fake: &CanvasFake, extra: &str) -> TestApp {
    TestApp::with_extra_toml(&connector_toml(fake, extra)).await
}

fn student() -> User {
    User::new(USER_ID, "jdoe", "Jane Doe").email("jdoe@example.edu").sis("SIS-991")
}

async fn login(app: &TestApp, fake: &CanvasFake) -> TestResponse {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    round_trip(&mut browser, &AuthParams::hub(&pkce), "canvas", |url| fake.approve(url, USER_ID)).await
}

async fn login_and_userinfo(app: &TestApp, fake: &CanvasFake) -> Value {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let res = round_trip(&mut browser, &AuthParams::hub(&pkce), "canvas", |url| fake.approve(url, USER_ID)).await;
    let code = hub_code(&res);
    let tokens = app.exchange(&code, &pkce).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let info = app.userinfo(tokens.json()["access_token"].as_str().unwrap()).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.text());
    info.json()
}

async fn stored_memberships(app: &TestApp) -> Vec<Membership> {
    let stored = app.store.upstream_of("canvas", &USER_ID.to_string()).await.unwrap().expect("the identity is stored");
    serde_json::from_str(&stored.memberships_json).unwrap()
}

async fn stored_tokens(app: &TestApp) -> (String, UpstreamTokens) {
    let subject = USER_ID.to_string();
    let stored = app.store.upstream_of("canvas", &subject).await.unwrap().expect("the identity is stored");
    let sealed = stored.tokens_sealed.expect("tokens are kept");
    let plain = test_sealer().open(&token_context("canvas", &subject), &sealed).expect("sealed for this identity");
    (sealed, UpstreamTokens::from_payload(&plain).expect("a token payload"))
}

fn connector(app: &TestApp) -> std::sync::Arc<dyn RedirectConnector> {
    match &app.state.connectors.get("canvas").expect("configured").kind {
        ConnectorKind::Redirect(c) => c.clone(),
        ConnectorKind::Password(_) => panic!("canvas is a redirect connector"),
    }
}

/// The `groups` claim, each name checked to be in the connector's namespace and shown without it.
fn groups(info: &Value) -> Vec<String> {
    let names = info["groups"].as_array().expect("a groups claim").iter().map(|g| g.as_str().unwrap());
    names.map(|g| g.strip_prefix("canvas:").unwrap_or_else(|| panic!("{g:?} lacks canvas:")).to_string()).collect()
}

fn courses(memberships: &[Membership]) -> Vec<&Membership> {
    memberships.iter().filter(|m| matches!(m, Membership::CanvasCourse { .. })).collect()
}

#[tokio::test]
async fn canvas_login_reads_120_courses_over_three_capped_pages() {
    let fake = CanvasFake::start().await;
    let mut user = student();
    for i in 1..=120u64 {
        let mut c = Course::new(i, &format!("Course {i}"), &format!("C{i}")).term(3, "Fall 2026");
        c = if i == 7 {
            c.enrolled("teacher", "TeacherEnrollment", "active")
        } else {
            c.enrolled("student", "StudentEnrollment", "active")
        };
        user = user.course(c);
    }
    // Listed, but Canvas shows only its id: the person may not see it by date.
    let mut hidden = Course::new(999, "Hidden", "H").enrolled("student", "StudentEnrollment", "active");
    hidden.restricted_by_date = true;
    fake.add_user(user.course(hidden).group(31, "Project team", Some(12)).group(32, "Campus club", None));
    fake.set_max_per_page(50);
    let app = app_for(&fake, "").await;

    let pkce = Pkce::new();
    let mut browser = app.browser();
    let upstream = browser.start_upstream(&AuthParams::hub(&pkce), "canvas").await;
    let q: std::collections::HashMap<String, String> = upstream.query_pairs().into_owned().collect();
    assert!(!q.contains_key("scope"), "no scope unless configured");
    assert_eq!(q["redirect_uri"], format!("{ISSUER}/callback/canvas"));
    let code = fake.approve(&upstream, USER_ID);
    let res = browser.upstream_callback("canvas", &[("code", &code), ("state", &q["state"])]).await;
    let hub = hub_code(&res);
    let tokens = app.exchange(&hub, &pkce).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let info = app.userinfo(tokens.json()["access_token"].as_str().unwrap()).await.json();

    assert_eq!(info["preferred_username"], "jdoe", "login_id by default");
    assert_eq!(info["name"], "Jane Doe");
    assert_eq!(info["email"], "jdoe@example.edu");
    assert_eq!(info["email_verified"], false, "Canvas does not say the address was confirmed");
    let groups = groups(&info);
    assert_eq!(groups.len(), 120 + 2, "{groups:?}");
    assert!(groups.contains(&"course:120".to_string()), "a course from the third page");
    assert!(groups.contains(&"canvas-group:32".to_string()));

    let memberships = stored_memberships(&app).await;
    assert_eq!(courses(&memberships).len(), 120, "every course, none from the restricted one");
    assert!(memberships.contains(&Membership::CanvasCourse {
        id: 7,
        name: "Course 7".into(),
        course_code: "C7".into(),
        sis_course_id: None,
        term: Some("Fall 2026".into()),
        term_id: Some(3),
        enrollment_type: "teacher".into(),
        role: "TeacherEnrollment".into(),
        enrollment_state: "active".into(),
    }));
    assert!(memberships.contains(&Membership::CanvasGroup {
        id: 31,
        name: "Project team".into(),
        course_id: Some(12)
    }));
    assert!(memberships.contains(&Membership::CanvasGroup { id: 32, name: "Campus club".into(), course_id: None }));

    // The course list: per_page=100 asked, Canvas capped it at 50, all three pages followed.
    let seen = fake.requests_to("/api/v1/courses");
    assert_eq!(seen.len(), 3, "three pages, once each");
    assert_eq!(seen[0].param("per_page"), Some("100"));
    assert_eq!(seen[0].param("include[]"), Some("term"));
    assert_eq!(seen[0].param("enrollment_state"), Some("active"));
    assert_eq!(seen.iter().map(|r| r.param("page")).collect::<Vec<_>>(), vec![None, Some("2"), Some("3")]);
    assert!(seen[1..].iter().all(|r| r.param("include[]") == Some("term")), "the links were followed as given");
    assert_eq!(fake.requests_to("/api/v1/users/self/groups")[0].param("per_page"), Some("100"));
    assert_eq!(fake.requests_to("/api/v1/users/self/profile").len(), 1);
    let token_requests = fake.requests_to("/login/oauth2/token");
    assert_eq!(token_requests.len(), 1);
    let t = &token_requests[0];
    assert_eq!(t.field("grant_type"), Some("authorization_code"));
    assert_eq!((t.field("client_id"), t.field("client_secret")), (Some(CLIENT_ID), Some(CLIENT_SECRET)), "in the body");
    assert!(t.header_values("authorization").is_empty());
    assert!(t.field("code_verifier").is_some(), "PKCE");
    assert_eq!(fake.requests().len(), 1 + 1 + 3 + 1, "token, profile, three course pages, groups: nothing more");

    let issued = fake.access_tokens();
    let (sealed, kept) = stored_tokens(&app).await;
    assert_eq!(issued.len(), 1);
    assert!(!sealed.contains(&issued[0]), "the stored value does not show the token");
    assert_eq!(kept.access_token.expose(), issued[0]);
    assert_eq!(kept.refresh_token.as_ref().map(|r| r.expose().to_string()), fake.refresh_tokens().pop());
    assert_eq!(kept.expires_at, Some(START + 3600));
}

#[tokio::test]
async fn canvas_keeps_real_course_names_every_enrollment_and_the_listed_states() {
    let fake = CanvasFake::start().await;
    fake.add_user(
        student()
            .course(
                Course::new(101, "Data 8: Foundations of Data Science", "DATA 8")
                    .nickname("my fav class")
                    .sis("CRS-DATA8-2026")
                    .term(12, "Spring 2026")
                    .enrolled("student", "StudentEnrollment", "active"),
            )
            .course(Course::new(102, "Statistics 20", "STAT 20").enrolled("ta", "TaEnrollment", "active").enrolled(
                "designer",
                "Course Designer",
                "active",
            ))
            .course(Course::new(103, "Old course", "OLD 1").enrolled("student", "StudentEnrollment", "completed"))
            .course(Course::new(104, "Next term", "NEXT 1").enrolled("student", "StudentEnrollment", "invited")),
    );
    let app = app_for(&fake, r#"enrollment_state = ["active", "completed"]"#).await;
    let info = login_and_userinfo(&app, &fake).await;
    assert_eq!(groups(&info), vec!["course:101", "course:102"], "completed courses are no groups");

    let memberships = stored_memberships(&app).await;
    assert!(memberships.contains(&Membership::CanvasCourse {
        id: 101,
        name: "Data 8: Foundations of Data Science".into(),
        course_code: "DATA 8".into(),
        sis_course_id: Some("CRS-DATA8-2026".into()),
        term: Some("Spring 2026".into()),
        term_id: Some(12),
        enrollment_type: "student".into(),
        role: "StudentEnrollment".into(),
        enrollment_state: "active".into(),
    }));
    assert!(!info.to_string().contains("my fav class") && !format!("{memberships:?}").contains("my fav class"));
    let roles: Vec<(u64, &str)> = memberships
        .iter()
        .filter_map(|m| match m {
            Membership::CanvasCourse { id, role, .. } => Some((*id, role.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        roles,
        vec![(101, "StudentEnrollment"), (102, "TaEnrollment"), (102, "Course Designer"), (103, "StudentEnrollment")]
    );
    assert!(memberships.iter().any(
        |m| matches!(m, Membership::CanvasCourse { id: 103, enrollment_state, .. } if enrollment_state == "completed")
    ));
    let states: Vec<_> =
        fake.requests_to("/api/v1/courses").iter().map(|r| r.param("enrollment_state").unwrap().to_string()).collect();
    assert_eq!(states, vec!["active", "completed"]);
}

#[tokio::test]
async fn canvas_throttling_on_a_page_is_waited_out() {
    let fake = CanvasFake::start().await;
    let mut user = student();
    for i in 1..=60u64 {
        user =
            user.course(Course::new(i, &format!("Course {i}"), "C").enrolled("student", "StudentEnrollment", "active"));
    }
    fake.add_user(user);
    fake.fault("/api/v1/courses", Some("2"), Fault::CanvasThrottled, Some(1));
    let app = app_for(&fake, "").await;
    let info = login_and_userinfo(&app, &fake).await;
    assert_eq!(groups(&info).len(), 60);
    let pages: Vec<_> =
        fake.requests_to("/api/v1/courses").iter().map(|r| r.param("page").map(str::to_string)).collect();
    assert_eq!(pages, vec![None, Some("2".into()), Some("2".into())], "the throttled page was asked again");
}

#[tokio::test]
async fn canvas_throttling_that_persists_fails_with_a_busy_page() {
    let fake = CanvasFake::start().await;
    fake.add_user(student().course(Course::new(1, "Course 1", "C1").enrolled(
        "student",
        "StudentEnrollment",
        "active",
    )));
    fake.fault("/api/v1/users/self/groups", None, Fault::CanvasThrottled, None);
    let app = app_for(&fake, "").await;
    let started = Instant::now();
    let res = login(&app, &fake).await;
    // Two waits of 1 s and 2 s (Canvas states no wait; its quota refills over seconds), then the page.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text());
    assert!(page_text(&res).contains("bCourses is busy right now"), "{}", res.text());
    assert_eq!(fake.requests_to("/api/v1/users/self/groups").len(), 3, "asked three times in all");
    assert!(app.store.user_by_username("jdoe").await.unwrap().is_none());
}

#[tokio::test]
async fn canvas_server_error_fails_the_login_and_creates_no_user() {
    let fake = CanvasFake::start().await;
    fake.add_user(student().course(Course::new(1, "Course 1", "C1").enrolled(
        "student",
        "StudentEnrollment",
        "active",
    )));
    fake.fault(
        "/api/v1/courses",
        None,
        Fault::Status(500, serde_json::json!({"errors": [{"message": "An error occurred."}]})),
        None,
    );
    let app = app_for(&fake, "").await;
    let res = login(&app, &fake).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    let page = page_text(&res);
    assert!(page.contains("bCourses is not answering properly"), "{page}");
    assert!(page.contains("/api/v1/courses"), "{page}");
    assert!(app.store.user_by_username("jdoe").await.unwrap().is_none());
    assert!(app.store.upstream_of("canvas", &USER_ID.to_string()).await.unwrap().is_none());
}

#[tokio::test]
async fn canvas_refresh_keeps_the_refresh_token_and_reads_memberships_again() {
    let fake = CanvasFake::start().await;
    fake.add_user(student().course(Course::new(1, "Course 1", "C1").enrolled(
        "student",
        "StudentEnrollment",
        "active",
    )));
    let app = app_for(&fake, "").await;
    login_and_userinfo(&app, &fake).await;
    let (_, tokens) = stored_tokens(&app).await;
    let canvas = connector(&app);

    // Enrolled in another course since.
    fake.add_user(
        student()
            .course(Course::new(1, "Course 1", "C1").enrolled("student", "StudentEnrollment", "active"))
            .course(Course::new(2, "Course 2", "C2").enrolled("ta", "TaEnrollment", "active")),
    );
    fake.clear_requests();
    let fresh = canvas.refresh(&tokens, &USER_ID.to_string(), app.clock.now()).await.expect("refreshed");
    assert_ne!(fresh.tokens.access_token.expose(), tokens.access_token.expose(), "a new access token");
    assert_eq!(
        fresh.tokens.refresh_token.as_ref().unwrap().expose(),
        tokens.refresh_token.as_ref().unwrap().expose(),
        "Canvas sends no new refresh token: the old one is kept"
    );
    assert_eq!(fresh.tokens.expires_at, Some(app.clock.now() + 3600));
    assert_eq!(fresh.identity.groups, vec!["course:1", "course:2"]);
    assert_eq!(courses(&fresh.memberships).len(), 2);
    let t = &fake.requests_to("/login/oauth2/token")[0];
    assert_eq!(t.field("grant_type"), Some("refresh_token"));
    assert_eq!(t.field("refresh_token"), Some(tokens.refresh_token.as_ref().unwrap().expose()));
    assert_eq!(t.field("client_secret"), Some(CLIENT_SECRET));
    assert!(!fake.access_tokens().contains(&tokens.access_token.expose().to_string()), "Canvas replaced the old token");

    // Another account's subject is refused.
    let other = canvas.refresh(&tokens, "1", app.clock.now()).await;
    assert!(matches!(other, Err(ConnectorError::Failed(_))), "{other:?}");
}

#[tokio::test]
async fn canvas_revoked_refresh_token_ends_the_session() {
    let fake = CanvasFake::start().await;
    fake.add_user(student());
    let app = app_for(&fake, "").await;
    login_and_userinfo(&app, &fake).await;
    let (_, tokens) = stored_tokens(&app).await;
    let canvas = connector(&app);

    // Canvas's own answer for a refresh token it no longer has.
    fake.revoke_all();
    let ended = canvas.refresh(&tokens, &USER_ID.to_string(), app.clock.now()).await;
    assert!(
        matches!(&ended, Err(ConnectorError::SessionEnded(m)) if m.contains("refresh_token not found")),
        "{ended:?}"
    );

    // And the standard one (RFC 6749 §5.2).
    fake.fault("/login/oauth2/token", None, Fault::Status(400, serde_json::json!({"error": "invalid_grant"})), None);
    let ended = canvas.refresh(&tokens, &USER_ID.to_string(), app.clock.now()).await;
    assert!(matches!(ended, Err(ConnectorError::SessionEnded(_))), "{ended:?}");
}

#[tokio::test]
async fn canvas_username_can_come_from_the_sis_id() {
    let fake = CanvasFake::start().await;
    fake.add_user(student());
    let app = app_for(&fake, r#"username_claim = "sis_user_id""#).await;
    let info = login_and_userinfo(&app, &fake).await;
    // The SIS id, lowercased by the default username rule (as JupyterHub would).
    assert_eq!(info["preferred_username"], "sis-991");
}

#[test]
fn canvas_and_github_config_mistakes_name_the_key() {
    let refused = |extra: &str| {
        let toml = format!("{}\n{extra}", config_toml("/tmp/hubauth-never-opened.db"));
        hubauth::config::Config::parse(&toml, Path::new("/etc/hubauth/hubauth.toml")).expect_err("refused").to_string()
    };
    let canvas = |line: &str| {
        refused(&format!(
            "[[connectors]]\ntype = \"canvas\"\nid = \"canvas\"\nclient_id = \"x\"\nclient_secret = \"y\"\n\
             canvas_url = \"https://canvas.example.edu\"\n{line}"
        ))
    };
    assert!(canvas(r#"username_claim = "email""#).contains("connectors[1].username_claim"));
    assert!(canvas(r#"enrollment_state = ["current"]"#).contains("connectors[1].enrollment_state"));
    let e = canvas(r#"timeout = "soon""#);
    assert!(e.contains("connectors[1].timeout") && e.contains("expected a duration"), "{e}");
    assert!(canvas("unknown_key = 1").contains("unknown_key"));
    let github = |line: &str| {
        refused(&format!(
            "[[connectors]]\ntype = \"github\"\nid = \"gh\"\nclient_id = \"x\"\nclient_secret = \"y\"\n{line}"
        ))
    };
    assert!(github(r#"organizations = ["acme"]"#).contains("connectors[1].organization_credential"));
    assert!(github(r#"organization_credential = "t""#).contains("connectors[1].organizations"));
    assert!(github("organization_credential = \"t\"\norganizations = [\"acme/../x\"]")
        .contains("connectors[1].organizations"));
    assert!(github(r#"github_url = "ftp://ghe.example.org""#).contains("connectors[1].github_url"));
}

#[tokio::test]
async fn canvas_courses_and_groups_are_read_at_the_same_time() {
    let fake = CanvasFake::start().await;
    fake.add_user(
        student().course(Course::new(1, "Course 1", "C1").enrolled("student", "StudentEnrollment", "active")).group(
            5,
            "G",
            Some(1),
        ),
    );
    // The course list answers only once the group list has been asked too.
    fake.fault(
        "/api/v1/courses",
        None,
        Fault::WaitFor { path: "/api/v1/users/self/groups".into(), within: Duration::from_millis(800) },
        None,
    );
    let app = app_for(&fake, "").await;
    let info = login_and_userinfo(&app, &fake).await;
    assert_eq!(groups(&info), vec!["course:1", "canvas-group:5"]);
}
