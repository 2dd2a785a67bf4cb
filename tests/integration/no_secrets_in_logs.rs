//! Nothing secret reaches the logs: a whole session of sign-ins, an invite, token exchange and
//! refreshes runs with every log level on, and none of the codes, tokens, secrets or invite
//! links it used appears in what was logged.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::*;
use crate::upstream_oidc::{alice, FakeOidc, Twist, UPSTREAM_SECRET};

#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log sink. A global subscriber (not a thread-local default) is used because
/// tracing caches per call site whether anyone listens, across threads: with other tests
/// running, a thread-local subscriber can miss events.
pub fn capture() -> Captured {
    static SINK: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    SINK.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in the tests");
        captured
    })
    .clone()
}

#[tokio::test]
async fn a_full_session_logs_no_token_code_or_secret() {
    let captured = capture();

    let fake = FakeOidc::start().await;
    let admin_token = "admin-token-0123456789abcdef0123456789";
    let extra = format!(
        "[admin]\napi_tokens = [\"{admin_token}\"]\n[tokens]\nupstream_refresh_skew = \"10s\"\n\
         [[clients]]\nid = \"spawner\"\nsecret = \"spawner-secret-0123456789\"\ngrant_types = [\"token_exchange\"]\nredirect_uris = []\n\
         [clients.token_exchange]\naudiences = [\"uni\"]\nsubject_token_types = [\"access_token\"]\nsubject_clients = [\"hub\"]\n{}",
        fake.connector_toml("uni", "")
    );
    let app = TestApp::with_extra_toml(&extra).await;
    let mut secrets: Vec<String> = vec![
        HUB_SECRET.into(),
        UPSTREAM_SECRET.into(),
        admin_token.into(),
        "spawner-secret-0123456789".into(),
        TEST_CRYPT_KEY.into(),
    ];

    // An invite link, opened.
    let res = app
        .send(
            axum::http::Request::post("/admin/api/invites")
                .header("authorization", format!("Bearer {admin_token}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(json!({"expires_in": "1h"}).to_string()))
                .unwrap(),
        )
        .await;
    let link = res.json()["link"].as_str().unwrap().to_string();
    let invite_path = url::Url::parse(&link).unwrap().path().to_string();
    secrets.push(invite_path.rsplit('/').next().unwrap().to_string());
    let mut browser = app.browser();
    assert_eq!(browser.get(&invite_path).await.status, StatusCode::OK);

    // An upstream sign-in, the code exchange, userinfo, a refresh and a token exchange.
    let pkce = Pkce::new();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let upstream_code = fake.approve(&up, alice(), Twist::default());
    let res = browser.upstream_callback("uni", &[("code", &upstream_code), ("state", &state)]).await;
    let code = res.query()["code"].clone();
    secrets.extend([upstream_code, state, code.clone(), pkce.verifier.clone()]);
    let tokens = app.exchange(&code, &pkce).await.json();
    for k in ["access_token", "refresh_token", "id_token"] {
        secrets.push(tokens[k].as_str().unwrap().to_string());
    }
    assert_eq!(app.userinfo(tokens["access_token"].as_str().unwrap()).await.status, StatusCode::OK);
    let refreshed = app
        .token(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
        .await
        .json();
    secrets.push(refreshed["refresh_token"].as_str().unwrap().to_string());
    app.clock.advance(55);
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", refreshed["access_token"].as_str().unwrap()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("audience", "uni"),
    ];
    let exchanged = app.post_form("/token", &form, Some(("spawner", "spawner-secret-0123456789"))).await.json();
    secrets.push(exchanged["access_token"].as_str().expect("an upstream token").to_string());
    secrets.push(refreshed["access_token"].as_str().unwrap().to_string());
    // Wrong credentials are logged as failures, without the credential.
    app.post_form(
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", "hrt_wrong-guess-value")],
        Some(("hub", "wrong-secret-value-123")),
    )
    .await;
    secrets.push("wrong-secret-value-123".into());

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("user logged in") && logs.len() > 1000, "logging was captured: {} bytes", logs.len());
    for s in &secrets {
        assert!(s.len() >= 12, "a meaningful secret: {s}");
        assert!(!logs.contains(s.as_str()), "a secret reached the logs: {}…", &s[..8]);
    }
}
