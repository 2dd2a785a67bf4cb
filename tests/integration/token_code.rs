//! RFC 6749 §4.1.3 / §5.2, RFC 7636 §4.6, OIDC Core §3.1.3.

use axum::http::StatusCode;

use crate::harness::*;

async fn code_for(app: &TestApp, pkce: &Pkce) -> String {
    app.browser().login_for_code(&AuthParams::hub(pkce), "ada", "ada-pw").await
}

/// The hub's code exchange form, without client credentials.
fn code_form<'a>(code: &'a str, pkce: &'a Pkce) -> [(&'static str, &'a str); 4] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", HUB_REDIRECT),
        ("code_verifier", pkce.verifier.as_str()),
    ]
}

#[tokio::test]
async fn code_exchange_returns_bearer_tokens_and_a_verifiable_id_token() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let code = code_for(&app, &pkce).await;
    let res = app.exchange(&code, &pkce).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["cache-control"], "no-store");
    let t = res.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 600);
    assert!(t["refresh_token"].is_string());
    let claims = verify_jwt(&app, t["id_token"].as_str().unwrap(), "hub").await;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "hub");
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["preferred_username"], "ada");
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["email"], "ada@example.org");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["groups"], serde_json::json!(["admins"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    // at_hash binds the access token to the ID token.
    let digest = hubauth::crypto::random::sha256(t["access_token"].as_str().unwrap().as_bytes());
    assert_eq!(claims["at_hash"], hubauth::crypto::random::b64url(&digest[..16]));
}

#[tokio::test]
async fn es256_clients_get_es256_id_tokens() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let params = AuthParams::hub(&pkce).set("client_id", "es").set("redirect_uri", ES_REDIRECT);
    let code = app.browser().login_for_code(&params, "sam", "sam-pw").await;
    let res = app.exchange_as_es(&code, &pkce, ES_REDIRECT).await;
    let jwt = res.json()["id_token"].as_str().unwrap().to_string();
    assert_eq!(jsonwebtoken::decode_header(&jwt).unwrap().alg, jsonwebtoken::Algorithm::ES256);
    let claims = verify_jwt(&app, &jwt, "es").await;
    assert_eq!(claims["groups"], serde_json::json!(["students"]));
}

#[tokio::test]
async fn client_secret_basic_works_and_bad_secrets_get_401_invalid_client() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let code = code_for(&app, &pkce).await;
    let form = code_form(&code, &pkce);
    let wrong = app.post_form("/token", &form, Some(("hub", "not-the-secret"))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error(), "invalid_client");
    assert!(wrong.headers.get("www-authenticate").unwrap().to_str().unwrap().starts_with("Basic"));
    let ok = app.post_form("/token", &form, Some(("hub", HUB_SECRET))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

/// RFC 6749 §2.3.1 form-urlencodes the credentials before base64; many clients send them as they
/// are (requests' HTTPBasicAuth, OAuthenticator's `basic_auth`), and older authlib used the URL-safe
/// alphabet. A secret made with `openssl rand -base64` has `+`, `/` and `=`: every form must work,
/// and a wrong secret must still fail.
#[tokio::test]
async fn basic_credentials_work_encoded_as_the_rfc_says_and_as_clients_really_send_them() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    const SECRET: &str = "k+Z/0a%41x9Qe=Lr7+Vw2/Pt5==";
    let app = TestApp::with_extra_toml(&format!(
        "[[clients]]\nid = \"legacy\"\nsecret = \"{SECRET}\"\nredirect_uris = [\"http://127.0.0.1:9/cb\"]\n"
    ))
    .await;
    let introspect = |authorization: String| {
        let req = axum::http::Request::builder()
            .method("POST")
            .uri("/introspect")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", authorization)
            .body(axum::body::Body::from("token=not-a-token"))
            .unwrap();
        app.send(req)
    };
    let rfc = basic_header("legacy", SECRET);
    let verbatim = format!("Basic {}", STANDARD.encode(format!("legacy:{SECRET}")));
    let url_safe = format!("Basic {}", URL_SAFE_NO_PAD.encode(format!("legacy:{SECRET}")));
    for (how, authorization) in [("form-urlencoded", rfc), ("verbatim", verbatim), ("URL-safe base64", url_safe)] {
        let res = introspect(authorization).await;
        assert_eq!(res.status, StatusCode::OK, "{how}: {}", res.text());
        assert_eq!(res.json()["active"], false, "{how}");
    }
    // The verbatim secret read as form-urlencoded (`+` as space, `%41` as `A`) is not the secret.
    let decoded_reading = SECRET.replace('+', " ").replace("%41", "A");
    for wrong in [decoded_reading.as_str(), "k+Z/0a%41x9Qe=Lr7+Vw2/Pt5=", ""] {
        let res = introspect(format!("Basic {}", STANDARD.encode(format!("legacy:{wrong}")))).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{wrong:?} was accepted");
        assert_eq!(res.error(), "invalid_client");
    }
}

#[tokio::test]
async fn client_authentication_failures() {
    let app = TestApp::new().await;
    let g = ("grant_type", "authorization_code");
    type Case<'a> = (Vec<(&'a str, &'a str)>, Option<(&'a str, &'a str)>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (vec![g], None, StatusCode::UNAUTHORIZED, "invalid_client"),
        (vec![g, ("client_id", "hub")], None, StatusCode::UNAUTHORIZED, "invalid_client"),
        (vec![g, ("client_id", "nobody"), ("client_secret", "x")], None, StatusCode::UNAUTHORIZED, "invalid_client"),
        (vec![g, ("client_id", "hub"), ("client_secret", "wrong")], None, StatusCode::UNAUTHORIZED, "invalid_client"),
        (vec![g, ("client_id", "pub"), ("client_secret", "x")], None, StatusCode::UNAUTHORIZED, "invalid_client"),
        (vec![g, ("client_secret", HUB_SECRET)], Some(("hub", HUB_SECRET)), StatusCode::BAD_REQUEST, "invalid_request"),
        (vec![g, ("client_id", "es")], Some(("hub", HUB_SECRET)), StatusCode::BAD_REQUEST, "invalid_request"),
    ];
    for (form, basic, status, error) in cases {
        let res = app.post_form("/token", &form, basic).await;
        assert_eq!((res.status, res.error().as_str()), (status, error), "{form:?}");
    }
}

#[tokio::test]
async fn grant_type_errors() {
    let app = TestApp::new().await;
    assert_eq!(app.token(&[]).await.error(), "invalid_request");
    assert_eq!(app.token(&[("grant_type", "password")]).await.error(), "unsupported_grant_type");
    assert_eq!(app.token(&[("grant_type", "implicit")]).await.error(), "unsupported_grant_type");
    assert_eq!(app.token(&[("grant_type", "authorization_code")]).await.error(), "invalid_request");
    assert_eq!(app.token(&[("grant_type", "authorization_code"), ("code", "made-up")]).await.error(), "invalid_grant");
}

#[tokio::test]
async fn pkce_verifier_must_match() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    for verifier in [Some(Pkce::new().verifier), Some("short".to_string()), None] {
        let code = code_for(&app, &pkce).await;
        let mut form =
            vec![("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", HUB_REDIRECT)];
        if let Some(v) = &verifier {
            form.push(("code_verifier", v));
        }
        let res = app.token(&form).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        assert_eq!(res.error(), "invalid_grant", "{verifier:?}");
    }
}

#[tokio::test]
async fn verifier_without_challenge_is_refused() {
    let app = TestApp::new().await;
    let params = AuthParams::hub(&Pkce::new()).without("code_challenge").without("code_challenge_method");
    let code = app.browser().login_for_code(&params, "ada", "ada-pw").await;
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", HUB_REDIRECT),
            ("code_verifier", &Pkce::new().verifier),
        ])
        .await;
    assert_eq!(res.error(), "invalid_grant");
}

#[tokio::test]
async fn redirect_uri_must_repeat_the_authorization_request() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let code = code_for(&app, &pkce).await;
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:8000/other?x=1"),
            ("code_verifier", &pkce.verifier),
        ])
        .await;
    assert_eq!(res.error(), "invalid_grant");
    let res =
        app.token(&[("grant_type", "authorization_code"), ("code", &code), ("code_verifier", &pkce.verifier)]).await;
    assert_eq!(res.error(), "invalid_request");
    let res = app.exchange(&code, &pkce).await;
    assert_eq!(res.status, StatusCode::OK, "a refused request does not spend the code: {}", res.text());
}

/// RFC 9700 §4.5, OAuth 2.1 §4.1.3: a code is checked against what the request must repeat
/// (client, `redirect_uri`, PKCE verifier) before it is spent, so whoever holds a leaked code
/// cannot burn it for its owner. (The `redirect_uri` case is in the test above.)
#[tokio::test]
async fn a_refused_presentation_leaves_the_code_to_its_owner() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let code = code_for(&app, &pkce).await;
    let other_client = app.exchange_as_es(&code, &pkce, HUB_REDIRECT).await;
    let wrong_verifier = app.exchange(&code, &Pkce::new()).await;
    let malformed_verifier = app.exchange(&code, &Pkce { verifier: "short".into(), challenge: String::new() }).await;
    for (case, res) in [
        ("another client", other_client),
        ("a wrong verifier", wrong_verifier),
        ("a malformed verifier", malformed_verifier),
    ] {
        assert_eq!(res.error(), "invalid_grant", "{case}");
    }
    let res = app.exchange(&code, &pkce).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // Nor can they, once it is spent, pass for a replay and revoke what the owner got.
    assert_eq!(app.exchange_as_es(&code, &pkce, HUB_REDIRECT).await.error(), "invalid_grant");
    assert_eq!(app.exchange(&code, &Pkce::new()).await.error(), "invalid_grant");
    assert_eq!(app.userinfo(res.json()["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn code_expires_after_sixty_seconds() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let code = code_for(&app, &pkce).await;
    app.clock.advance(61);
    let res = app.exchange(&code, &pkce).await;
    assert_eq!(res.error(), "invalid_grant");
}

#[tokio::test]
async fn replayed_code_is_refused_and_revokes_what_it_issued() {
    let app = TestApp::new().await;
    let pkce = Pkce::new();
    let code = code_for(&app, &pkce).await;
    let form = code_form(&code, &pkce);
    let first = app.token(&form).await.json();
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).await.status, StatusCode::OK);

    let replay = app.token(&form).await;
    assert_eq!(replay.error(), "invalid_grant");
    assert_eq!(app.userinfo(access).await.status, StatusCode::UNAUTHORIZED);
    let refreshed = app.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(refreshed.error(), "invalid_grant");
}

/// Of many redemptions racing for one code exactly one wins; the others are replays and revoke
/// what the winner got, whatever order they reach the storage in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_of_one_code_yield_one_token_set_which_the_replays_revoke() {
    let app = TestApp::new().await;
    for round in 0..10 {
        let pkce = Pkce::new();
        let code = code_for(&app, &pkce).await;
        let form = code_form(&code, &pkce);
        let results = concurrent_token_requests(&app, &form, 30).await;
        let winners: Vec<_> = results.iter().filter(|(status, _)| *status == StatusCode::OK).collect();
        assert_eq!(winners.len(), 1, "round {round}: {:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());
        for (status, body) in &results {
            if *status != StatusCode::OK {
                assert_eq!(body["error"], "invalid_grant", "round {round}: {body}");
            }
        }
        let won = &winners[0].1;
        let access = won["access_token"].as_str().unwrap();
        let introspected = app.post_form("/introspect", &[("token", access)], Some(("hub", HUB_SECRET))).await;
        assert_eq!(introspected.json()["active"], false, "round {round}: the winner's access token is revoked");
        let refresh = won["refresh_token"].as_str().unwrap();
        let refreshed = app.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
        assert_eq!(refreshed.error(), "invalid_grant", "round {round}: the winner's refresh token is revoked");
    }
}

/// `n` identical token requests of the hub client at once: (status, JSON body) of each.
async fn concurrent_token_requests(
    app: &TestApp,
    form: &[(&str, &str)],
    n: usize,
) -> Vec<(StatusCode, serde_json::Value)> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut all = form.to_vec();
    all.push(("client_id", "hub"));
    all.push(("client_secret", HUB_SECRET));
    let body = crate::harness::form(&all);
    // All start together, so they meet the storage in the same moment.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut handles = Vec::new();
    for _ in 0..n {
        let (router, start) = (app.router.clone(), start.clone());
        let req = axum::http::Request::post("/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        handles.push(tokio::spawn(async move {
            start.wait().await;
            let res = router.oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice(&bytes).unwrap())
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
