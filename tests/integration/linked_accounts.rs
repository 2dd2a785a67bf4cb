//! A person with several linked accounts is one user to the policy: `blocked_users`,
//! `admin_users`, `allowed_users` and static groups are judged on the user who gets the tokens,
//! not on the name of the account they happened to sign in with — at sign-in and at every
//! re-check.

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::*;

/// A second password connector, `lab`, whose account `ada2` has ada's (verified) address, so
/// with linking on it signs in as ada.
fn lab_connector() -> String {
    let hash = hubauth::crypto::password::hash_password("lab-pw").unwrap();
    format!(
        r#"
[[connectors]]
type = "dev"
id = "lab"
[[connectors.users]]
username = "ada2"
password_hash = "{hash}"
email = "ada@example.org"
"#
    )
}

fn app_toml(access: &str) -> String {
    format!("[identity]\nlink_by_verified_email = true\n[access]\n{access}\n{}", lab_connector())
}

/// ada as she was recorded before the policy changed (she signed in at `dev` once).
async fn ada_known(app: &TestApp) {
    let identity = hubauth::store::UpstreamIdentity {
        connector_id: "dev".into(),
        subject: "ada".into(),
        username: "ada".into(),
        name: Some("Ada Lovelace".into()),
        email: Some("ada@example.org".into()),
        email_verified: true,
        groups: vec![],
    };
    app.store.record_upstream_login(&identity, &Default::default(), START).await.unwrap();
}

async fn lab_login(app: &TestApp) -> TestResponse {
    let pkce = Pkce::new();
    app.browser().submit_login(&AuthParams::hub(&pkce).set("connector", "lab"), "ada2", "lab-pw").await
}

#[tokio::test]
async fn a_blocked_user_cannot_sign_in_through_a_linked_account() {
    let app = TestApp::with_extra_toml(&app_toml("allow_all = true\nblocked_users = [\"ada\"]")).await;
    ada_known(&app).await;
    let res = lab_login(&app).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    let page = res.text();
    assert!(page.contains("blocked_user"), "{page}");
    assert!(app.store.upstream_of("lab", "ada2").await.unwrap().is_none(), "the account was not linked");
    let audit = app.store.audit_events(5).await.unwrap();
    let denied = audit.iter().find(|e| e.kind == "login_denied").expect("the refusal is audited");
    assert_eq!(denied.username.as_deref(), Some("ada"), "audited under the user who would have got the tokens");
    assert_eq!(denied.reason.as_deref(), Some("blocked_user"));
}

#[tokio::test]
async fn allowed_users_admin_users_and_static_groups_follow_the_linked_user() {
    let app = TestApp::with_extra_toml(&format!(
        "{}\n[[static_groups]]\nname = \"mentors\"\nusers = [\"ada\"]\n",
        app_toml(
            "allowed_users = [\"ada\"]\nadmin_users = [\"ada\"]\nadmin_group = \"hub-admins\"\nrecheck_after = \"1m\""
        )
    ))
    .await;
    ada_known(&app).await;
    let pkce = Pkce::new();
    let code = app.browser().login_for_code(&AuthParams::hub(&pkce).set("connector", "lab"), "ada2", "lab-pw").await;
    let tokens = app.exchange(&code, &pkce).await.json();
    let access = tokens["access_token"].as_str().unwrap();
    let info = app.userinfo(access).await.json();
    assert_eq!(info["preferred_username"], json!("ada"));
    let groups = info["groups"].as_array().unwrap();
    assert!(groups.contains(&json!("hub-admins")) && groups.contains(&json!("mentors")), "{info}");

    // A re-check reads the linked account again and judges ada, not ada2.
    app.clock.advance(120);
    let res = app.userinfo(access).await;
    assert_eq!(res.status, StatusCode::OK, "still admitted as ada: {}", res.text());
    let groups = res.json()["groups"].clone();
    let groups = groups.as_array().unwrap();
    assert!(groups.contains(&json!("hub-admins")) && groups.contains(&json!("mentors")), "{groups:?}");
}
