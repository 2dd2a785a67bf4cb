//! Usernames at the hub: the per-connector rule, collisions refused, the provider's own name
//! kept beside the hub's.

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::*;
use crate::upstream_oidc::{FakeOidc, Twist};

const RULE: &str = r#"username_claim = "email"
[connectors.username]
email = "strip"
allowed = "posix"
max_length = 20
pattern = "^[a-z][a-z0-9._-]*$"
"#;

async fn login(app: &TestApp, fake: &FakeOidc, claims: serde_json::Value) -> TestResponse {
    let pkce = Pkce::new();
    let mut browser = app.browser();
    let up = browser.start_upstream(&AuthParams::hub(&pkce), "uni").await;
    let state = up.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let code = fake.approve(&up, claims, Twist::default());
    browser.upstream_callback("uni", &[("code", &code), ("state", &state)]).await
}

#[tokio::test]
async fn e_mail_usernames_become_posix_names_and_collisions_are_refused() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&fake.connector_toml("uni", RULE)).await;
    let res = login(&app, &fake, json!({"sub": "s1", "email": "Ada.Lovelace@Uni.Example"})).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    let user = app.store.user_by_username("ada.lovelace").await.unwrap().expect("normalised name");
    let stored = app.store.upstream_of("uni", "s1").await.unwrap().unwrap();
    assert_eq!(stored.upstream_username.as_deref(), Some("Ada.Lovelace@Uni.Example"), "the provider's name is kept");

    // Another account whose address normalises to the same name is refused, not merged.
    let res = login(&app, &fake, json!({"sub": "s2", "email": "ada.lovelace@other.example"})).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.text().contains("ada.lovelace"));
    // The first person is untouched and still signs in.
    let res = login(&app, &fake, json!({"sub": "s1", "email": "Ada.Lovelace@Uni.Example"})).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(app.store.user_by_username("ada.lovelace").await.unwrap().unwrap().id, user.id, "same sub");
}

#[tokio::test]
async fn a_name_the_rule_cannot_make_usable_is_refused_with_the_reason() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&fake.connector_toml("uni", RULE)).await;
    let res = login(&app, &fake, json!({"sub": "s3", "email": "9to5@uni.example"})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let page = res.text();
    assert!(page.contains("username_invalid") && page.contains("9to5"), "{page}");
    assert!(app.store.upstream_of("uni", "s3").await.unwrap().is_none(), "nothing recorded");
}

#[test]
fn a_bad_username_rule_is_named_in_the_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config_toml("hubauth.db").replace(
        "type = \"dev\"\nid = \"dev\"\n",
        "type = \"dev\"\nid = \"dev\"\n[connectors.username]\npattern = \"([\"\n",
    );
    let err = hubauth::config::Config::parse(&toml, &dir.path().join("h.toml")).unwrap_err().to_string();
    assert!(err.contains("connectors[0].username") && err.contains("regular expression"), "{err}");
}

/// `hubauth users plan-rename` on a thousand known users: switching to a rule that strips
/// e-mail domains renames most, flags the people who would share a name, and checks the hub's
/// own user list.
#[tokio::test]
async fn plan_rename_on_a_thousand_users_flags_every_collision() {
    use hubauth::store::{SqliteStore, UpstreamIdentity, UpstreamRecord, UserStore};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubauth.db");
    let store = SqliteStore::open(&format!("sqlite://{}", db.display())).await.unwrap();
    let mut people: Vec<String> = (0..980).map(|i| format!("user{i}@uni.example")).collect();
    for j in 0..10 {
        people.push(format!("dup{j}@uni.example"));
        people.push(format!("Dup{j}@partner.org"));
    }
    assert_eq!(people.len(), 1000);
    for (i, email) in people.iter().enumerate() {
        let identity = UpstreamIdentity {
            connector_id: "google".into(),
            subject: format!("g{i}"),
            username: email.to_lowercase(),
            name: None,
            email: Some(email.clone()),
            email_verified: true,
            groups: vec![],
        };
        let record = UpstreamRecord { upstream_username: Some(email.clone()), ..Default::default() };
        store.record_upstream_login(&identity, &record, 1).await.unwrap();
    }
    drop(store);

    let toml = format!(
        "{}\n[[connectors]]\ntype = \"google\"\nid = \"google\"\nclient_id = \"x\"\nclient_secret = \"y\"\n\
         [connectors.username]\nemail = \"strip\"\nallowed = \"posix\"\n",
        config_toml(db.to_str().unwrap())
    );
    let config = dir.path().join("hubauth.toml");
    std::fs::write(&config, toml).unwrap();
    let hub_users = dir.path().join("users.json");
    std::fs::write(&hub_users, r#"[{"name": "user7@uni.example"}, {"name": "user8"}, {"name": "ghost"}]"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubauth"))
        .args([
            "users",
            "plan-rename",
            "--config",
            config.to_str().unwrap(),
            "--hub-users",
            hub_users.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.splitn(7, ',').collect()).collect();
    let status = |s: &str| rows.iter().filter(|r| r[5] == s).count();
    assert_eq!(rows.len(), 1002, "1000 people and the two hub accounts hubauth has not seen");
    assert_eq!(status("collision"), 20, "ten pairs share a local part");
    assert_eq!(status("hub_conflict"), 1, "user8 is taken on the hub by someone hubauth does not know");
    assert_eq!(status("hub_only"), 2, "ghost, and user8 (whose name user8@uni.example would take)");
    assert_eq!(status("renamed"), 1000 - 20 - 1);
    let r7 = rows.iter().find(|r| r[3] == "user7@uni.example").unwrap();
    assert_eq!((r7[4], r7[5]), ("user7", "renamed"), "the hub's user7@uni.example is this person: no conflict");
    let dup = rows.iter().find(|r| r[3] == "dup3@partner.org").unwrap();
    assert_eq!(dup[4], "dup3");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("1000 users") && summary.contains("20 collisions"), "{summary}");
}

#[tokio::test]
async fn an_explicit_link_lets_a_second_account_sign_in_as_the_same_user() {
    let fake = FakeOidc::start().await;
    let app = TestApp::with_extra_toml(&fake.connector_toml("uni", "")).await;
    let ada = app.login_and_exchange("ada", "ada-pw").await;
    let ada_sub = verify_jwt(&app, ada["id_token"].as_str().unwrap(), "hub").await["sub"].clone();
    let user = app.store.user_by_username("ada").await.unwrap().unwrap();
    app.store.link_identity(&user.id, "uni", "kc-ada", START).await.unwrap();
    // Signing in at the provider as a different name still lands on ada, same sub, name kept.
    let res = login(&app, &fake, json!({"sub": "kc-ada", "preferred_username": "a.lovelace"})).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(app.store.user_by_username("ada").await.unwrap().unwrap().id, user.id);
    assert!(app.store.user_by_username("a.lovelace").await.unwrap().is_none());
    assert_eq!(ada_sub, json!(user.id));
    // The same upstream account cannot be linked to a second user.
    app.login_and_exchange("sam", "sam-pw").await;
    let sam_user = app.store.user_by_username("sam").await.unwrap().unwrap();
    assert!(app.store.link_identity(&sam_user.id, "uni", "kc-ada", START).await.is_err());
}

#[tokio::test]
async fn linking_by_verified_email_is_opt_in() {
    let fake = FakeOidc::start().await;
    let claims =
        json!({"sub": "kc-1", "preferred_username": "ada2", "email": "ada@example.org", "email_verified": true});
    // Off (default): a second account with ada's address is a separate user.
    let app = TestApp::with_extra_toml(&fake.connector_toml("uni", "")).await;
    app.login_and_exchange("ada", "ada-pw").await;
    assert_eq!(login(&app, &fake, claims.clone()).await.status, StatusCode::SEE_OTHER);
    assert!(app.store.user_by_username("ada2").await.unwrap().is_some());
    // On: it becomes ada.
    let app = TestApp::with_extra_toml(&format!(
        "[identity]\nlink_by_verified_email = true\n{}",
        fake.connector_toml("uni", "")
    ))
    .await;
    app.login_and_exchange("ada", "ada-pw").await;
    assert_eq!(login(&app, &fake, claims.clone()).await.status, StatusCode::SEE_OTHER);
    assert!(app.store.user_by_username("ada2").await.unwrap().is_none());
    let ada = app.store.user_by_username("ada").await.unwrap().unwrap();
    assert_eq!(app.store.upstream_of("uni", "kc-1").await.unwrap().unwrap().user_id, ada.id);
    // An unverified address never links.
    let mut unverified = claims.clone();
    unverified["sub"] = json!("kc-2");
    unverified["preferred_username"] = json!("ada3");
    unverified["email_verified"] = json!(false);
    assert_eq!(login(&app, &fake, unverified).await.status, StatusCode::SEE_OTHER);
    assert!(app.store.user_by_username("ada3").await.unwrap().is_some());
}
