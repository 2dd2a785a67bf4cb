//! Token custody with the default refresh skew against a provider whose access tokens live no
//! longer than it (a Keycloak realm with 1-minute tokens): refreshes stay single-flight — whoever
//! waited for a refresh takes its result — and the skew is capped at half the token's lifetime,
//! so a fresh token is not refreshed again at every request.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::StatusCode;
use hubauth::custody::fresh_upstream_token;
use hubauth::store::User;

use crate::harness::*;
use crate::upstream_oidc::{alice, upstream_login, FakeOidc, Twist};

/// Default `[tokens]` (60 s skew); the fake provider issues 60 s access tokens. Alice has signed in.
async fn setup() -> (Arc<TestApp>, FakeOidc, User) {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&fake.connector_toml("uni", "")).await;
    let (res, _) = upstream_login(&app, &fake, alice(), Twist::default()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let user = app.store.user_by_username("alice").await.unwrap().expect("alice signed in");
    (Arc::new(app), fake, user)
}

async fn upstream_token(app: &TestApp, user: &User) -> String {
    match fresh_upstream_token(&app.state, user, "uni").await {
        Ok(fresh) => fresh.access_token.expose().to_string(),
        Err(e) => panic!("no upstream token: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_callers_share_one_refresh_of_a_token_shorter_than_the_skew() {
    let (app, fake, user) = setup().await;
    // Half the token's life is over: due for a refresh.
    app.clock.advance(31);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (app, user) = (app.clone(), user.clone());
            tokio::spawn(async move { upstream_token(&app, &user).await })
        })
        .collect();
    let mut handed_out = HashSet::new();
    for t in tasks {
        handed_out.insert(t.await.unwrap());
    }
    assert_eq!(fake.refresh_grants(), 1, "one upstream refresh for a hundred callers");
    assert_eq!(handed_out.len(), 1, "everyone got the refreshed token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_waited_for_a_failed_refresh_take_its_failure_instead_of_asking_again() {
    let (app, fake, user) = setup().await;
    app.clock.advance(31);
    fake.outage(Some(StatusCode::SERVICE_UNAVAILABLE));
    // A slow answer, so that every caller is waiting while the one refresh runs.
    fake.set_token_delay(std::time::Duration::from_secs(1));
    let before = fake.token_calls();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (app, user) = (app.clone(), user.clone());
            tokio::spawn(async move { fresh_upstream_token(&app.state, &user, "uni").await.is_err() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap(), "no token while the provider is down");
    }
    assert_eq!(fake.token_calls() - before, 1, "one refresh attempt for twenty callers");
    // The next caller (who waited for nothing) tries again, and gets a token once it is back.
    fake.outage(None);
    upstream_token(&app, &user).await;
    assert_eq!(fake.refresh_grants(), 1);
}

#[tokio::test]
async fn a_token_shorter_than_the_skew_is_refreshed_after_half_its_life_not_at_every_request() {
    let (app, fake, user) = setup().await;
    let first = upstream_token(&app, &user).await;
    app.clock.advance(29);
    assert_eq!(upstream_token(&app, &user).await, first, "still in the first half of its life");
    assert_eq!(fake.refresh_grants(), 0);
    app.clock.advance(2);
    let second = upstream_token(&app, &user).await;
    assert_ne!(second, first);
    assert_eq!(fake.refresh_grants(), 1);
    assert_eq!(upstream_token(&app, &user).await, second, "the refreshed token is handed out as it is");
    assert_eq!(fake.refresh_grants(), 1);
}
