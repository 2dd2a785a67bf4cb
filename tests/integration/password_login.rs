//! Password forms under attack: guessing is throttled per account, per address and per
//! (account, address) pair, atomically; the client address comes from `X-Forwarded-For` only
//! behind a trusted proxy; and argon2 checks run a bounded number at a time.

use axum::http::StatusCode;
use futures_util::future::join_all;

use crate::harness::*;

/// The test config with `top` among the top-level keys and `sections` appended.
async fn app_with(top: &str, sections: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubauth.db");
    let toml = config_toml(db.to_str().unwrap()).replacen(
        &format!("issuer = \"{ISSUER}\""),
        &format!("issuer = \"{ISSUER}\"\n{top}"),
        1,
    ) + "\n"
        + sections;
    TestApp::with_toml(dir, &toml).await
}

/// Opens `n` login forms (each in its own browser from `peer`), then submits them all at once.
async fn parallel_logins(
    app: &TestApp,
    peers: &[String],
    user: impl Fn(usize) -> String,
    password: &str,
) -> Vec<TestResponse> {
    let mut forms = Vec::new();
    for peer in peers {
        let mut b = app.browser_from(peer);
        let form = b.open_login_form(&AuthParams::hub(&Pkce::new())).await;
        forms.push((b, form));
    }
    join_all(forms.iter_mut().enumerate().map(|(i, (b, (action, request, csrf)))| {
        let username = user(i);
        async move {
            let pairs = [("request", &**request), ("csrf", &**csrf), ("username", &username), ("password", password)];
            b.post(action, &pairs).await
        }
    }))
    .await
}

fn count(responses: &[TestResponse], status: StatusCode) -> usize {
    responses.iter().filter(|r| r.status == status).count()
}

async fn login_from(app: &TestApp, peer: &str, user: &str, password: &str) -> TestResponse {
    app.browser_from(peer).submit_login(&AuthParams::hub(&Pkce::new()), user, password).await
}

#[tokio::test]
async fn parallel_wrong_passwords_get_no_more_checks_than_the_limit() {
    let app = TestApp::new().await;
    let peers = vec!["192.0.2.10:4000".to_string(); 50];
    let res = parallel_logins(&app, &peers, |_| "ada".into(), "guess").await;
    assert_eq!(count(&res, StatusCode::UNAUTHORIZED), 5, "only the allowance is checked");
    assert_eq!(count(&res, StatusCode::TOO_MANY_REQUESTS), 45);
    let refused = res.iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS).unwrap();
    assert!(refused.text().contains("Too many sign-in attempts"), "{}", refused.text());
    let retry: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After says when to come back");
}

#[tokio::test]
async fn signing_in_with_the_right_password_costs_no_allowance() {
    let app = TestApp::new().await;
    for i in 0..12 {
        let res = login_from(&app, "192.0.2.60:4000", "sam", "sam-pw").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "sign-in {i} (several browsers, one address)");
    }
    for _ in 0..5 {
        assert_eq!(login_from(&app, "192.0.2.60:4000", "sam", "guess").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_from(&app, "192.0.2.60:4000", "sam", "guess").await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_stranger_hammering_an_account_does_not_lock_its_owner_out() {
    let app = TestApp::new().await;
    for _ in 0..20 {
        let res = login_from(&app, "198.51.100.7:5000", "ada", "guess").await;
        assert!(matches!(res.status, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS));
    }
    assert_eq!(login_from(&app, "198.51.100.7:5000", "ada", "ada-pw").await.status, StatusCode::TOO_MANY_REQUESTS);
    // Ada, from her own address, signs in at once.
    assert_eq!(login_from(&app, "203.0.113.5:6000", "ada", "ada-pw").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_account_ceiling_stops_guessing_spread_over_many_addresses() {
    let app = app_with("", "[password_login]\nper_account = { attempts = 8, window = \"1h\" }\n").await;
    for i in 0..8 {
        let res = login_from(&app, &format!("198.51.100.{i}:5000"), "ada", "guess").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = login_from(&app, "198.51.100.200:5000", "ada", "guess").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "a new address does not get a fresh allowance");
    assert_eq!(login_from(&app, "198.51.100.201:5000", "sam", "sam-pw").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn unknown_usernames_are_throttled_exactly_like_real_ones() {
    let app = TestApp::new().await;
    let mut answers = Vec::new();
    for user in ["ada", "nobody"] {
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let res = login_from(&app, "192.0.2.20:4000", user, "guess").await;
            statuses.push(res.status);
            answers.push(res.text().replace(user, "USER"));
        }
        assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5], "{user}");
        assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "{user}");
    }
    // The pages differ only in their per-request values: compare the error messages.
    let message = |page: &str| page.split("class=\"error\"").nth(1).map(|s| s.split('<').next().unwrap().to_string());
    assert_eq!(message(&answers[5]), message(&answers[11]), "a refusal does not tell whether the account exists");
    assert!(message(&answers[5]).is_some());
}

#[tokio::test]
async fn spraying_many_usernames_from_one_address_is_throttled() {
    let app = TestApp::new().await;
    let mut refused_at = None;
    for i in 0..200 {
        let res = login_from(&app, "192.0.2.30:4000", &format!("user{i}"), "guess").await;
        if res.status == StatusCode::TOO_MANY_REQUESTS {
            refused_at = Some(i);
            break;
        }
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    assert!(refused_at.is_some(), "one address cannot try a password on every username");
    // Another address is not affected.
    assert_eq!(login_from(&app, "192.0.2.31:4000", "sam", "sam-pw").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let app = app_with("trusted_proxies = [\"10.0.0.1\"]", "").await;
    for i in 0..6 {
        let res = app
            .browser_from("192.0.2.40:4000")
            .with_header("x-forwarded-for", &format!("198.51.100.{i}"))
            .submit_login(&AuthParams::hub(&Pkce::new()), "ada", "guess")
            .await;
        let expected = if i < 5 { StatusCode::UNAUTHORIZED } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(res.status, expected, "attempt {i}: a forged header does not buy new attempts");
    }
}

#[tokio::test]
async fn forwarded_for_names_the_client_behind_a_trusted_proxy() {
    let app = app_with("trusted_proxies = [\"10.0.0.0/24\"]", "").await;
    let via_proxy = |client: &'static str| {
        app.browser_from("10.0.0.1:4000").with_header("x-forwarded-for", &format!("{client}, 10.0.0.2"))
    };
    for _ in 0..5 {
        let res = via_proxy("198.51.100.1").submit_login(&AuthParams::hub(&Pkce::new()), "ada", "guess").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = via_proxy("198.51.100.1").submit_login(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "the attacker's address is throttled, not the proxy's");
    let res = via_proxy("198.51.100.2").submit_login(&AuthParams::hub(&Pkce::new()), "ada", "ada-pw").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "another client behind the same proxy signs in");
}

/// Throttle limits far above any flood below: those tests are about the bound on checks.
const UNTHROTTLED: &str = r#"
[password_login]
per_address = { attempts = 100000, window = "1s" }
per_account = { attempts = 100000, window = "1s" }
per_account_and_address = { attempts = 100000, window = "1s" }
"#;

#[tokio::test]
async fn a_flood_of_attempts_never_runs_more_checks_at_once_than_the_bound() {
    let app = app_with("", &format!("{UNTHROTTLED}max_concurrent_checks = 2\ncheck_queue_timeout = \"10m\"\n")).await;
    let peers: Vec<String> = (0..300).map(|i| format!("198.51.{}.{}:4000", i / 200, i % 200)).collect();
    let res = parallel_logins(&app, &peers, |i| format!("nobody{i}"), "guess").await;
    assert_eq!(count(&res, StatusCode::UNAUTHORIZED), 300);
    let checks = &app.state.password_checks;
    assert_eq!(checks.finished(), 300, "unknown usernames still cost a check (timing)");
    assert!(checks.peak_concurrency() <= 2, "{} checks ran at once", checks.peak_concurrency());
}

#[tokio::test]
async fn attempts_that_cannot_get_a_check_in_time_are_told_to_come_back() {
    let app = app_with("", &format!("{UNTHROTTLED}max_concurrent_checks = 1\ncheck_queue_timeout = \"0s\"\n")).await;
    let peers = vec!["192.0.2.50:4000".to_string(); 10];
    let res = parallel_logins(&app, &peers, |_| "ada".into(), "guess").await;
    let busy: Vec<_> = res.iter().filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(!busy.is_empty() && busy.len() < 10, "{} of 10 busy", busy.len());
    assert_eq!(busy[0].headers["retry-after"], "5");
    assert!(busy[0].text().contains("Too many sign-ins at once"));
    // Once the flood has passed, the owner signs in.
    assert_eq!(login_from(&app, "192.0.2.51:4000", "ada", "ada-pw").await.status, StatusCode::SEE_OTHER);
}

#[test]
fn bad_password_login_settings_are_named_by_check_config() {
    for (section, key) in [
        ("max_concurrent_checks = 0", "password_login.max_concurrent_checks"),
        ("per_address = { attempts = 0, window = \"1m\" }", "password_login.per_address.attempts"),
        ("per_account = { attempts = 3 }", "password_login.per_account"),
    ] {
        let toml = format!("{}\n[password_login]\n{section}\n", config_toml("hubauth.db"));
        let err = hubauth::config::Config::parse(&toml, std::path::Path::new("hubauth.toml")).unwrap_err().to_string();
        assert!(err.contains(key), "{section}: {err}");
    }
}

#[test]
fn a_bad_trusted_proxy_is_named_by_check_config() {
    let toml = config_toml("hubauth.db").replacen("issuer =", "trusted_proxies = [\"10.0.0.0/99\"]\nissuer =", 1);
    let err = hubauth::config::Config::parse(&toml, std::path::Path::new("hubauth.toml")).unwrap_err().to_string();
    assert!(err.contains("trusted_proxies[0]"), "{err}");
}

/// A `hubauth serve` process on a free loopback port, killed when dropped.
struct Served {
    server: std::process::Child,
    issuer: String,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(extra_toml: &str) -> Self {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let issuer = format!("http://127.0.0.1:{port}");
        let toml = config_toml(dir.path().join("hubauth.db").to_str().unwrap())
            .replace(&format!("issuer = \"{ISSUER}\""), &format!("issuer = \"{issuer}\""))
            + extra_toml;
        let config = dir.path().join("hubauth.toml");
        std::fs::write(&config, toml).unwrap();
        let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("HUBAUTH_LOG", "warn,hubauth=info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
        assert!(log.by_ref().any(|l| l.unwrap().contains("hubauth is listening")), "the server did not start");
        // Keep reading the log so the server never blocks on a full pipe.
        std::thread::spawn(move || log.for_each(drop));
        Self { server, issuer, _dir: dir }
    }

    /// A client connecting from `source` (any 127.x.y.z is this host on Linux).
    fn client(source: &str) -> reqwest::Client {
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        builder.local_address(source.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
    }

    /// Opens a login form: (cookie header, request id, csrf).
    async fn open_form(&self, client: &reqwest::Client) -> (String, String, String) {
        let authorize = format!("{}{}", self.issuer, AuthParams::hub(&Pkce::new()).uri());
        let res = client.get(&authorize).send().await.unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
        let cookies: Vec<&str> = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap())
            .collect();
        let cookie = cookies.join("; ");
        let login = res.headers()["location"].to_str().unwrap().to_string();
        let login = if login.starts_with('/') { format!("{}{login}", self.issuer) } else { login };
        let page = client.get(&login).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
        (cookie, input_value(&page, "request"), input_value(&page, "csrf"))
    }

    async fn submit(
        &self,
        client: &reqwest::Client,
        (cookie, request, csrf): &(String, String, String),
        user: &str,
        password: &str,
    ) -> reqwest::Result<reqwest::Response> {
        client
            .post(format!("{}/login/dev", self.issuer))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("request", request), ("csrf", csrf), ("username", user), ("password", password)]))
            .send()
            .await
    }

    /// The process's peak resident memory so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The real server sees each connection's own address (a lost `ConnectInfo` would put every
/// client in one bucket: one attacker would lock everybody out).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_real_server_throttles_by_each_connections_address() {
    let served = Served::start("");
    let attacker = Served::client("127.0.0.2");
    let form = served.open_form(&attacker).await;
    for _ in 0..5 {
        assert_eq!(served.submit(&attacker, &form, "ada", "guess").await.unwrap().status(), 401);
    }
    assert_eq!(served.submit(&attacker, &form, "ada", "ada-pw").await.unwrap().status(), 429);
    let owner = Served::client("127.0.0.3");
    let form = served.open_form(&owner).await;
    assert_eq!(served.submit(&owner, &form, "ada", "ada-pw").await.unwrap().status(), 303);
}

/// A real `hubauth serve` under a flood of 300 simultaneous password attempts for unknown
/// usernames: its peak memory (VmHWM) stays bounded, because argon2 (~19 MiB a check) runs a
/// bounded number of checks at a time instead of one per request.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_password_attempts_keeps_the_server_memory_bounded() {
    const ATTEMPTS: usize = 300;
    const LIMIT_KIB: u64 = 400 * 1024;
    let served = Served::start(UNTHROTTLED);
    let client = Served::client("127.0.0.1");
    let form = served.open_form(&client).await;
    let users: Vec<String> = (0..ATTEMPTS).map(|i| format!("nobody{i}")).collect();
    let statuses = join_all(users.iter().map(|user| served.submit(&client, &form, user, "guess"))).await;
    let peak_kib = served.peak_rss_kib();
    let mut by_status = std::collections::BTreeMap::new();
    for s in &statuses {
        *by_status.entry(s.as_ref().map(|r| r.status().as_u16()).map_err(|e| e.to_string())).or_insert(0) += 1;
    }
    eprintln!("{ATTEMPTS} parallel password attempts: peak RSS {} MiB; answers {by_status:?}", peak_kib / 1024);
    for s in statuses {
        let code = s.expect("every attempt gets an answer").status();
        assert!([401, 503].contains(&code.as_u16()), "unexpected {code}");
    }
    assert!(peak_kib < LIMIT_KIB, "peak RSS {} MiB is over {} MiB", peak_kib / 1024, LIMIT_KIB / 1024);
}
