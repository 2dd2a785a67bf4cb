//! `/metrics` (OpenMetrics text) counts what happened — sign-ins admitted and refused with their
//! reason codes, token grants, upstream refreshes, token exchanges, upstream latency — and shows
//! group memberships as jupyterhub-groups-exporter's info series, which follow the provider;
//! `/readyz` and the separate `[metrics] listen` router.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::harness::*;
use crate::token_exchange::SPAWNER_CLIENT;
use crate::upstream_oidc::{alice, FakeOidc};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses OpenMetrics text strictly enough to catch a malformed exposition: every line is a
/// comment or `name{labels} value`, label values unescaped, and the text ends with `# EOF`.
pub fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF: {text}");
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (name.to_string(), parse_labels(body, line))
            }
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name: {line}");
        samples.push(Sample { name, labels, value });
    }
    samples
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label value not quoted: {line}");
        let mut value = String::new();
        loop {
            match chars.next().unwrap_or_else(|| panic!("unterminated label value: {line}")) {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape: {line}"),
                },
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        match chars.next() {
            None | Some(',') => {}
            Some(c) => panic!("unexpected {c:?} after a label: {line}"),
        }
    }
    labels
}

/// The value of the one sample `name` with (at least) `labels`, or 0 when there is none.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} matches several series: {matching:?}");
    matching.first().map_or(0.0, |s| s.value)
}

/// `(username, usergroup)` of every `hubauth_user_group_info` series.
fn group_info(samples: &[Sample]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = samples
        .iter()
        .filter(|s| s.name == "hubauth_user_group_info")
        .map(|s| (s.labels["username"].clone(), s.labels["usergroup"].clone()))
        .collect();
    pairs.sort();
    pairs
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let res = app.get("/metrics").await;
    assert_eq!(res.status, StatusCode::OK);
    let ct = res.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    parse(&res.text())
}

fn config(fake: &FakeOidc, metrics: &str) -> String {
    format!(
        r#"
[metrics]
{metrics}
[access]
allowed_groups = ["uni:hpc-users", "admins"]
recheck_after = "5m"
[tokens]
upstream_refresh_skew = "10s"
{SPAWNER_CLIENT}
{}"#,
        fake.connector_toml("uni", r#"groups_claim = "realm_access.roles""#)
    )
}

async fn sign_in_alice(app: &TestApp, fake: &FakeOidc) -> Value {
    let pkce = Pkce::new();
    let code = crate::token_exchange::sign_in_alice(app, fake, &AuthParams::hub(&pkce)).await;
    app.exchange(&code, &pkce).await.json()
}

async fn exchange(app: &TestApp, subject: &str) -> TestResponse {
    let form = [("grant_type", EXCHANGE), ("subject_token", subject), ("subject_token_type", AT), ("audience", "uni")];
    app.post_form("/token", &form, Some(("spawner", "spawner-secret-0123456789"))).await
}

#[tokio::test]
async fn counters_follow_sign_ins_grants_refreshes_and_exchanges() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&config(&fake, r#"usage_interval = "0s""#)).await;
    let before = scrape(&app).await;
    assert_eq!(value(&before, "hubauth_logins_total", &[]), 0.0);

    let tokens = sign_in_alice(&app, &fake).await;
    // sam (dev, group "students") is not admitted.
    let pkce = Pkce::new();
    let refused = app.browser().submit_login(&AuthParams::hub(&pkce), "sam", "sam-pw").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());

    let m = scrape(&app).await;
    let login = |outcome, connector, reason| {
        value(&m, "hubauth_logins_total", &[("connector", connector), ("outcome", outcome), ("reason", reason)])
    };
    assert_eq!(login("admitted", "uni", "allowed_group"), 1.0);
    assert_eq!(login("refused", "dev", "not_allowed"), 1.0);
    assert_eq!(value(&m, "hubauth_token_grants_total", &[("grant_type", "authorization_code"), ("result", "ok")]), 1.0);
    // Discovery, keys, the code's token request: each timed under the connector's id.
    let upstream_calls = value(&m, "hubauth_upstream_request_duration_seconds_count", &[("connector", "uni")]);
    assert!(upstream_calls >= 2.0, "{upstream_calls}");
    assert_eq!(
        value(&m, "hubauth_upstream_request_duration_seconds_bucket", &[("connector", "uni"), ("le", "+Inf")]),
        upstream_calls
    );

    // The hub refreshes its token; a client sends garbage.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let res = app.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let tokens = res.json();
    assert_eq!(app.token(&[("grant_type", "refresh_token"), ("refresh_token", "nope")]).await.error(), "invalid_grant");
    assert_eq!(app.token(&[("grant_type", "password")]).await.error(), "unsupported_grant_type");
    // A spawner exchanges the hub's token for alice's upstream one; 51 s on it is refreshed first.
    let hub_at = tokens["access_token"].as_str().unwrap();
    assert_eq!(exchange(&app, hub_at).await.status, StatusCode::OK);
    app.clock.advance(51);
    assert_eq!(exchange(&app, hub_at).await.status, StatusCode::OK);
    assert_eq!(fake.refresh_grants(), 1);

    let m = scrape(&app).await;
    let grants =
        |grant_type, result| value(&m, "hubauth_token_grants_total", &[("grant_type", grant_type), ("result", result)]);
    assert_eq!(grants("refresh_token", "ok"), 1.0);
    assert_eq!(grants("refresh_token", "invalid_grant"), 1.0);
    assert_eq!(grants("unsupported", "unsupported_grant_type"), 1.0, "a made-up grant type is not a label value");
    assert_eq!(grants("token_exchange", "ok"), 2.0);
    assert_eq!(value(&m, "hubauth_token_exchanges_total", &[("connector", "uni"), ("result", "ok")]), 2.0);
    assert_eq!(value(&m, "hubauth_upstream_refreshes_total", &[("connector", "uni"), ("result", "ok")]), 1.0);
    assert_eq!(value(&m, "hubauth_users", &[]), 1.0, "alice; sam was refused before any account was made");
    assert_eq!(value(&m, "hubauth_active_users", &[("period", "24h")]), 1.0);
    assert_eq!(value(&m, "hubauth_active_browser_sessions", &[]), 1.0, "alice's");

    // The provider's token endpoint fails: counted as an error with its status.
    fake.outage(Some(StatusCode::SERVICE_UNAVAILABLE));
    app.clock.advance(55);
    assert_eq!(exchange(&app, hub_at).await.error(), "temporarily_unavailable");
    let m = scrape(&app).await;
    assert_eq!(value(&m, "hubauth_upstream_request_errors_total", &[("connector", "uni"), ("status", "503")]), 1.0);
    assert_eq!(value(&m, "hubauth_upstream_refreshes_total", &[("connector", "uni"), ("result", "failed")]), 1.0);
    assert_eq!(
        value(&m, "hubauth_token_exchanges_total", &[("connector", "uni"), ("result", "temporarily_unavailable")]),
        1.0
    );
}

#[tokio::test]
async fn group_info_series_appear_and_disappear_with_memberships() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&config(&fake, "usage_interval = \"0s\"\nnamespace = \"hub-ns\"")).await;
    assert_eq!(group_info(&scrape(&app).await), vec![]);

    let tokens = sign_in_alice(&app, &fake).await;
    app.login_and_exchange("ada", "ada-pw").await;
    let m = scrape(&app).await;
    assert_eq!(group_info(&m), pairs(&[("ada", "admins"), ("alice", "uni:hpc-users"), ("alice", "uni:physics")]));
    let series = m.iter().find(|s| s.name == "hubauth_user_group_info" && s.labels["username"] == "alice").unwrap();
    let labels: Vec<&str> = series.labels.keys().map(String::as_str).collect();
    assert_eq!(labels, ["namespace", "usergroup", "username", "username_escaped", "username_safe"]);
    assert_eq!(series.labels["namespace"], "hub-ns");
    assert_eq!(series.labels["username_escaped"], "alice");
    assert_eq!(series.labels["username_safe"], "alice");
    assert_eq!(series.value, 1.0);

    // alice leaves physics and joins gpu at the provider; the next re-check brings it here.
    let mut changed = alice();
    changed["realm_access"]["roles"] = json!(["hpc-users", "gpu"]);
    fake.set_claims(changed);
    app.clock.advance(301);
    assert_eq!(app.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
    let m = scrape(&app).await;
    assert_eq!(group_info(&m), pairs(&[("ada", "admins"), ("alice", "uni:gpu"), ("alice", "uni:hpc-users")]));
    assert_eq!(value(&m, "hubauth_upstream_refreshes_total", &[("connector", "uni"), ("result", "ok")]), 1.0);
}

#[tokio::test]
async fn group_info_can_be_turned_off_and_the_gauges_are_read_at_most_once_per_interval() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&config(&fake, "group_info = false")).await;
    let first = scrape(&app).await;
    assert_eq!(value(&first, "hubauth_users", &[]), 0.0);
    sign_in_alice(&app, &fake).await;
    let m = scrape(&app).await;
    assert_eq!(group_info(&m), vec![], "group_info = false");
    assert_eq!(value(&m, "hubauth_users", &[]), 0.0, "within usage_interval (15 s) the last counts stand");
    assert_eq!(value(&m, "hubauth_logins_total", &[("connector", "uni")]), 1.0, "counters are always current");
}

/// `/readyz` says whether this replica can serve: the database answers and the signing keys sign.
#[tokio::test]
async fn readyz_follows_the_database_and_the_metrics_survive_it() {
    let app = TestApp::with_extra_toml("[metrics]\nusage_interval = \"0s\"").await;
    let ok = app.get("/readyz").await;
    assert_eq!((ok.status, ok.text().as_str()), (StatusCode::OK, "ready"));
    app.login_and_exchange("ada", "ada-pw").await;

    app.sql_execute("DROP TABLE signing_keys; DROP TABLE browser_sessions").await;
    let broken = app.get("/readyz").await;
    assert_eq!(broken.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(broken.text(), "not ready: storage unavailable", "no database detail for an unauthenticated caller");
    // The counters still answer; the gauges, which need the database, are left out.
    let m = scrape(&app).await;
    assert_eq!(value(&m, "hubauth_logins_total", &[("connector", "dev")]), 1.0);
    assert!(!m.iter().any(|s| s.name == "hubauth_users"));
}

async fn get(router: &axum::Router, uri: &str, bearer: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(uri);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    (status, String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned())
}

/// With `[metrics] listen`, metrics move off the public port to the operations router, which
/// also answers the probes (at its root) and keeps the token guard.
#[tokio::test]
async fn a_separate_listener_serves_metrics_and_probes_and_the_main_one_no_metrics() {
    let app =
        TestApp::with_extra_toml("[metrics]\nlisten = \"127.0.0.1:0\"\ntoken = \"scrape-token-0123456789\"").await;
    assert_eq!(app.get("/metrics").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK, "the main listener keeps its probe");
    let ops = hubauth::app::operations_router(app.state.clone());
    assert_eq!(get(&ops, "/healthz", None).await, (StatusCode::OK, "ok".into()));
    assert_eq!(get(&ops, "/readyz", None).await, (StatusCode::OK, "ready".into()));
    assert_eq!(get(&ops, "/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    let (status, text) = get(&ops, "/metrics", Some("scrape-token-0123456789")).await;
    assert_eq!(status, StatusCode::OK);
    parse(&text);
}
