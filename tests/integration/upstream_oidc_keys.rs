//! Which upstream ID tokens the `oidc` connector trusts over time and across audiences: the
//! provider's JWKS is cached only as long as it says (bounded), so a withdrawn key stops working
//! without a restart; refetching for unknown key ids is rate-limited; a key's own `alg` and `use`
//! are enforced; and a token for several audiences must name hubauth as its `azp`.

use axum::http::StatusCode;
use serde_json::json;

use hubauth::clock::Clock;

use crate::harness::*;
use crate::upstream_oidc::{alice, setup, upstream_login, FakeOidc, Twist};

/// An ID token issued now (the fake's default `iat`/`exp` are at the test's start).
fn issued_now(app: &TestApp) -> Twist {
    let now = app.clock.now();
    Twist { claims: json!({"iat": now, "exp": now + 300}), ..Default::default() }
}

fn with_claims(claims: serde_json::Value) -> Twist {
    Twist { claims, ..Default::default() }
}

async fn login_status(app: &TestApp, fake: &FakeOidc, twist: Twist) -> (StatusCode, String) {
    let (res, _) = upstream_login(app, fake, alice(), twist).await;
    (res.status, res.text())
}

#[tokio::test]
async fn a_key_the_provider_withdrew_is_refused_once_the_cached_keys_expire() {
    let (app, fake) = setup("").await;
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 1);

    fake.withdraw_signing_key();
    // Within the default five minutes the cached keys are used as they are.
    app.clock.advance(200);
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 1, "the keys are cached meanwhile");

    // After it, the keys are fetched again, and the withdrawn one is no longer trusted.
    app.clock.advance(101);
    let (status, page) = login_status(&app, &fake, issued_now(&app)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
    assert!(page.contains("ID token"), "{page}");
    assert_eq!(fake.jwks_fetches(), 2);
    assert!(app.store.user_by_username("alice").await.unwrap().is_some(), "only the first logins got in");
}

#[tokio::test]
async fn the_providers_cache_control_sets_how_long_keys_are_kept_within_bounds() {
    let (app, fake) = setup("").await;
    fake.set_jwks_cache_control("public, max-age=3600");
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    app.clock.advance(3599);
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 1, "max-age=3600 is honoured");
    app.clock.advance(2);
    fake.set_jwks_cache_control("max-age=5");
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 2, "fetched again after max-age");

    // A max-age below a minute is raised to one (no fetch per login)...
    app.clock.advance(30);
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 2, "kept for at least a minute");
    // ...and one beyond a day is cut to a day.
    app.clock.advance(31);
    fake.set_jwks_cache_control("max-age=31536000");
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 3);
    app.clock.advance(86_401);
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 4, "kept for at most a day");
}

#[tokio::test]
async fn unknown_key_ids_make_few_jwks_fetches_and_a_rotation_is_still_followed_at_once() {
    let (app, fake) = setup("").await;
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 1);
    // Any unknown key ids: at most one refetch a second.
    let unpublished = || Twist { unpublished_key: true, ..issued_now(&app) };
    for _ in 0..5 {
        assert_eq!(login_status(&app, &fake, unpublished()).await.0, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(fake.jwks_fetches(), 2, "one refetch for five unknown key ids in the same second");
    // The same unknown key id: at most one refetch per ten seconds.
    let stray = || Twist { stray_key: true, ..issued_now(&app) };
    app.clock.advance(2);
    assert_eq!(login_status(&app, &fake, stray()).await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(fake.jwks_fetches(), 3);
    for _ in 0..4 {
        app.clock.advance(2);
        assert_eq!(login_status(&app, &fake, stray()).await.0, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(fake.jwks_fetches(), 3, "the same unknown key id is not asked about again for ten seconds");
    app.clock.advance(2);
    assert_eq!(login_status(&app, &fake, stray()).await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(fake.jwks_fetches(), 4, "but after them");
    // Rotations are followed on the next sign-in, even two in a row a few seconds apart.
    app.clock.advance(2);
    fake.rotate_keys();
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 5);
    app.clock.advance(2);
    fake.rotate_keys();
    assert_eq!(login_status(&app, &fake, issued_now(&app)).await.0, StatusCode::SEE_OTHER);
    assert_eq!(fake.jwks_fetches(), 6);
}

#[tokio::test]
async fn a_token_for_several_audiences_must_name_hubauth_as_its_authorized_party() {
    let (app, fake) = setup("").await;
    let cases = [
        ("aud [us, other] without azp", json!({"aud": ["hubauth", "other"]}), false),
        ("aud [us, other], azp other", json!({"aud": ["hubauth", "other"], "azp": "other"}), false),
        ("aud us, azp other", json!({"aud": "hubauth", "azp": "other"}), false),
        ("aud [us, other], azp us", json!({"aud": ["hubauth", "other"], "azp": "hubauth"}), true),
        ("aud us, azp us", json!({"aud": "hubauth", "azp": "hubauth"}), true),
    ];
    for (what, claims, accepted) in cases {
        let (status, page) = login_status(&app, &fake, with_claims(claims)).await;
        if accepted {
            assert_eq!(status, StatusCode::SEE_OTHER, "{what}: {page}");
        } else {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{what}: {page}");
            assert!(page.contains("azp"), "{what}: the page says why: {page}");
        }
    }
}

#[tokio::test]
async fn a_published_key_is_used_only_for_the_algorithm_and_use_it_names() {
    let (app, fake) = setup("").await;
    let cases = [
        ("a key for RS384, a token signed RS256", json!({"alg": "RS384"}), false),
        ("an encryption key", json!({"use": "enc"}), false),
        ("a key for an algorithm hubauth does not know", json!({"alg": "XY999"}), false),
        ("a key only for encrypting", json!({"use": null, "key_ops": ["encrypt"]}), false),
        ("a key that says nothing about alg and use", json!({"alg": null, "use": null}), true),
        ("a key that says what the token does", json!({"alg": "RS256", "use": "sig", "key_ops": ["verify"]}), true),
    ];
    for (what, extra, accepted) in cases {
        fake.set_jwk_extra(extra);
        // Past the cached keys' lifetime: the provider's keys as they are now are read.
        app.clock.advance(301);
        let (status, page) = login_status(&app, &fake, issued_now(&app)).await;
        if accepted {
            assert_eq!(status, StatusCode::SEE_OTHER, "{what}: {page}");
        } else {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{what}: {page}");
            assert!(page.contains("ID token"), "{what}: {page}");
        }
    }
}
