//! The password-login throttle across replicas: two hubauth instances on one PostgreSQL
//! database count guesses as one broker would (not twice the allowance), gives back a right
//! password's allowance wherever it was taken, survives a restart, stays bounded, and refuses
//! attempts rather than letting them through unthrottled when the database is gone.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use futures_util::future::join_all;
use hubauth::app::{router, AppState};
use hubauth::clock::{Clock, MockClock};
use hubauth::config::Config;
use hubauth::password_login::RefusedFor;
use hubauth::store::Migrate;

use crate::harness::*;
use crate::pg::TestDatabase;

/// Replicas sharing one database and one clock (time moves for all of them at once).
struct Replicas {
    apps: Vec<TestApp>,
    clock: Arc<MockClock>,
    db: TestDatabase,
}

impl Replicas {
    /// `n` replicas on a fresh database, `sections` appended to the test config; `None` (the
    /// reason printed) without a PostgreSQL server.
    async fn start(n: usize, sections: &str) -> Option<Self> {
        let db = crate::pg::database().await?;
        let clock = Arc::new(MockClock::new(START));
        let mut replicas = Self { apps: Vec::new(), clock, db };
        for _ in 0..n {
            replicas.add(sections).await;
        }
        Some(replicas)
    }

    /// One more replica (a restarted or newly scheduled one).
    async fn add(&mut self, sections: &str) -> &TestApp {
        let dir = tempfile::tempdir().unwrap();
        let toml = config_toml("unused.db")
            .replace("url = \"sqlite://unused.db\"", &format!("url = {:?}", self.db.url))
            + "\n"
            + sections;
        let config = Config::parse(&toml, &dir.path().join("hubauth.toml")).expect("test config is valid");
        let store = hubauth::store::open(&config.storage, Migrate::Apply).await.unwrap();
        let state = AppState::new(config, store.clone(), self.clock.clone(), Some(test_sealer())).await.unwrap();
        let router = router(state.clone());
        self.apps.push(TestApp { state, router, clock: self.clock.clone(), store, _dir: dir, _db: None });
        self.apps.last().unwrap()
    }

    /// The replica the load balancer picks for request `i` (round robin).
    fn pick(&self, i: usize) -> &TestApp {
        &self.apps[i % self.apps.len()]
    }

    async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::ConnectOptions;
        let options: sqlx::postgres::PgConnectOptions = self.db.url.parse().unwrap();
        options.connect().await.unwrap()
    }

    async fn throttle_rows(&self) -> Vec<Vec<u8>> {
        sqlx::query_scalar("SELECT key FROM login_throttle").fetch_all(&mut self.connect().await).await.unwrap()
    }

    async fn sql(&self, statement: &'static str) {
        sqlx::query(statement).execute(&mut self.connect().await).await.unwrap();
    }
}

/// One login from `peer`: the form is opened on `open`, sent to `submit` (no sticky sessions).
async fn login(open: &TestApp, submit: &TestApp, peer: &str, user: &str, password: &str) -> TestResponse {
    let mut browser = open.browser_from(peer);
    let (action, request, csrf) = browser.open_login_form(&AuthParams::hub(&Pkce::new())).await;
    browser.app = submit;
    browser.post(&action, &[("request", &request), ("csrf", &csrf), ("username", user), ("password", password)]).await
}

#[tokio::test]
async fn wrong_passwords_over_two_replicas_are_limited_as_by_one_broker() {
    let Some(mut replicas) = Replicas::start(2, "").await else { return };
    let mut statuses = Vec::new();
    for i in 0..10 {
        let res = login(replicas.pick(i), replicas.pick(i + 1), "192.0.2.10:4000", "ada", "guess").await;
        statuses.push(res.status);
    }
    assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 5], "the same 5 in all, not 5 per replica");

    // A replica started now (a restart, a rollout) knows what the others counted.
    let fresh = replicas.add("").await;
    let res = login(fresh, fresh, "192.0.2.10:4000", "ada", "ada-pw").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "a restart does not forget the guesses");

    // One attempt refills per minute, for the whole broker.
    replicas.clock.advance(60);
    let res = login(replicas.pick(0), replicas.pick(1), "192.0.2.10:4000", "ada", "guess").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = login(replicas.pick(1), replicas.pick(0), "192.0.2.10:4000", "ada", "ada-pw").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);

    // Shared by hashed keys only: neither the username nor the address is stored.
    let rows = replicas.throttle_rows().await;
    assert_eq!(rows.len(), 3, "one address, one pair, one account");
    for key in rows {
        assert_eq!(key.len(), 32);
        assert!(!key.windows(3).any(|w| w == b"ada") && !key.windows(4).any(|w| w == [192, 0, 2, 10]));
    }
}

#[tokio::test]
async fn simultaneous_guesses_over_two_replicas_get_the_allowance_once() {
    let Some(replicas) = Replicas::start(2, "").await else { return };
    let mut forms = Vec::new();
    for _ in 0..30 {
        let mut browser = replicas.pick(0).browser_from("192.0.2.11:4000");
        let form = browser.open_login_form(&AuthParams::hub(&Pkce::new())).await;
        forms.push((browser, form));
    }
    let answers = join_all(forms.iter_mut().enumerate().map(|(i, (browser, (action, request, csrf)))| {
        browser.app = replicas.pick(i);
        async move {
            let pairs = [("request", &**request), ("csrf", &**csrf), ("username", "ada"), ("password", "guess")];
            browser.post(action, &pairs).await.status
        }
    }))
    .await;
    let checked = answers.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = answers.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 25), "{answers:?}");
}

#[tokio::test]
async fn a_right_password_gives_its_allowance_back_across_replicas() {
    let Some(replicas) = Replicas::start(2, "").await else { return };
    for i in 0..12 {
        let res = login(replicas.pick(i), replicas.pick(i + 1), "192.0.2.60:4000", "sam", "sam-pw").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "sign-in {i}");
    }
    // Four wrong, then the right one on the other replica: it costs nothing, the four still count.
    for i in 0..4 {
        let res = login(replicas.pick(i), replicas.pick(i), "192.0.2.60:4000", "sam", "guess").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = login(replicas.pick(1), replicas.pick(1), "192.0.2.60:4000", "sam", "sam-pw").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let res = login(replicas.pick(0), replicas.pick(0), "192.0.2.60:4000", "sam", "guess").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "the fifth wrong password");
    for i in 0..2 {
        let res = login(replicas.pick(i), replicas.pick(i), "192.0.2.60:4000", "sam", "sam-pw").await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "replica {i}");
    }
}

#[tokio::test]
async fn unknown_usernames_are_throttled_the_same_across_replicas() {
    let Some(replicas) = Replicas::start(2, "").await else { return };
    for user in ["ada", "nobody"] {
        let mut statuses = Vec::new();
        for i in 0..7 {
            statuses.push(login(replicas.pick(i), replicas.pick(i + 1), "192.0.2.20:4000", user, "guess").await.status);
        }
        assert_eq!(statuses[..5], [StatusCode::UNAUTHORIZED; 5], "{user}");
        assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 2], "{user}");
    }
}

#[tokio::test]
async fn the_shared_throttle_is_bounded_and_sweeps_refilled_entries() {
    // One entry per limit: three in all.
    let Some(replicas) = Replicas::start(2, "[password_login]\nmax_tracked = 1\n").await else { return };
    let res = login(replicas.pick(0), replicas.pick(0), "192.0.2.30:4000", "u1", "guess").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    for i in 0..2 {
        let res = login(replicas.pick(i), replicas.pick(i), "192.0.2.31:4000", "u2", "guess").await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "replica {i}: full, refused rather than forgotten");
        assert!(res.text().contains("on this server right now"), "{}", res.text());
    }
    replicas.clock.advance(3600);
    let res = login(replicas.pick(1), replicas.pick(1), "192.0.2.31:4000", "u2", "guess").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "refilled entries were swept");
    assert_eq!(replicas.throttle_rows().await.len(), 3);

    // The periodic purge removes refilled entries too.
    replicas.clock.advance(3600);
    replicas.pick(0).store.purge_expired(replicas.clock.now()).await.unwrap();
    assert!(replicas.throttle_rows().await.is_empty());
}

#[tokio::test]
async fn attempts_are_refused_when_the_shared_throttle_cannot_be_reached() {
    let Some(replicas) = Replicas::start(1, "").await else { return };
    let Replicas { apps, db, .. } = replicas;
    drop(db); // the database goes away (dropped, its connections cut)
    let client: Option<IpAddr> = Some("192.0.2.40".parse().unwrap());
    let refused = apps[0].state.login_throttle.attempt("dev", "ada", client).await.unwrap_err();
    assert_eq!(refused.why, RefusedFor::Unavailable, "no unthrottled guesses while the database is away");
}

#[tokio::test]
async fn a_failing_shared_throttle_answers_503_without_checking_the_password() {
    let Some(replicas) = Replicas::start(1, "").await else { return };
    // The rest of the database works; only the throttle's statements fail.
    replicas.sql("DROP TABLE login_throttle").await;
    let res = login(replicas.pick(0), replicas.pick(0), "192.0.2.41:4000", "ada", "ada-pw").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text());
    assert_eq!(res.headers["retry-after"], "5");
    assert!(res.text().contains("cannot reach its database"), "{}", res.text());
    assert_eq!(replicas.pick(0).state.password_checks.finished(), 0, "no password was checked");
}

#[tokio::test]
async fn refused_attempts_leave_no_entries_behind() {
    let sections = "[password_login]\nper_address = { attempts = 2, window = \"1h\" }\n";
    let Some(replicas) = Replicas::start(2, sections).await else { return };
    for (i, user) in ["u1", "u2"].into_iter().enumerate() {
        assert_eq!(login(replicas.pick(i), replicas.pick(i), "192.0.2.50:4000", user, "guess").await.status, 401);
    }
    assert_eq!(replicas.throttle_rows().await.len(), 5, "one address, two pairs, two accounts");
    // Spraying on: each new username is refused at the address limit and adds nothing.
    for i in 0..6 {
        let res = login(replicas.pick(i), replicas.pick(i), "192.0.2.50:4000", &format!("v{i}"), "guess").await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(replicas.throttle_rows().await.len(), 5);
}
