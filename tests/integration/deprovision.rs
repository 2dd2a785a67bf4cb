//! `hubauth deprovision`, run as an operator would: a dry run changes nothing, `--apply` revokes
//! and blocks or deletes, `--delete-from-hub` deletes from JupyterHub's REST API (a fake here that
//! answers like it: 204, a JSON 404 for an unknown user, 403 for a bad token), one person's
//! failure is reported without stopping the others, and a re-run finishes the job.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use axum::{Json, Router};
use serde_json::json;

use crate::harness::*;

const HUB_TOKEN: &str = "hub-admin-token-0123456789";

fn config_for(app: &TestApp, dir: &std::path::Path, extra: &str) -> String {
    let path = dir.join("hubauth.toml");
    std::fs::write(&path, format!("{}\n{extra}", config_toml_with_url(&app.state.config.storage.url))).unwrap();
    path.to_str().unwrap().to_string()
}

async fn hubauth(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || crate::cli::hubauth(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn refresh(app: &TestApp, tokens: &serde_json::Value) -> TestResponse {
    app.token(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())]).await
}

async fn audit_kinds(app: &TestApp) -> Vec<(String, String)> {
    app.store
        .audit_events(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("deprovision"))
        .map(|e| (e.kind, e.username.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_apply_blocks_and_revokes() {
    let app = TestApp::new().await;
    let ada = app.login_and_exchange("ada", "ada-pw").await;
    let sam = app.login_and_exchange("sam", "sam-pw").await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path(), "");

    let (ok, out, stderr) =
        hubauth(args(&["deprovision", "--config", &config, "--user", "ada", "--user", "nobody"])).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("dry run"), "{stderr}");
    assert!(out.contains("ada: would revoke sessions and tokens, and block"), "{out}");
    assert!(out.contains("nobody: not a hubauth user"), "{out}");
    assert_eq!(refresh(&app, &ada).await.status, StatusCode::OK, "the dry run revoked nothing");
    assert!(audit_kinds(&app).await.is_empty());
    let ada = app.login_and_exchange("ada", "ada-pw").await;

    let (ok, out, stderr) =
        hubauth(args(&["deprovision", "--config", &config, "--user", "ada", "--block", "--apply"])).await;
    assert!(ok, "{stderr}");
    assert!(out.contains("ada: blocked ("), "{out}");
    assert_eq!(refresh(&app, &ada).await.error(), "invalid_grant", "her tokens are revoked");
    assert_eq!(app.userinfo(ada["access_token"].as_str().unwrap()).await.status, StatusCode::UNAUTHORIZED);
    let pkce = Pkce::new();
    let again = app.browser().submit_login(&AuthParams::hub(&pkce), "ada", "ada-pw").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN, "a blocked user cannot sign in again");
    assert!(again.text().contains("blocked_user"));
    assert_eq!(refresh(&app, &sam).await.status, StatusCode::OK, "others are untouched");
    assert_eq!(audit_kinds(&app).await, [("user_blocked".to_string(), "ada".to_string())]);

    // Again: nothing breaks, and it says so.
    let (ok, out, _) = hubauth(args(&["deprovision", "--config", &config, "--user", "ada", "--apply"])).await;
    assert!(ok);
    assert!(out.contains("ada: already blocked"), "{out}");
}

#[tokio::test]
async fn apply_delete_removes_the_user_from_a_users_file() {
    let app = TestApp::new().await;
    let ada = app.login_and_exchange("ada", "ada-pw").await;
    let sam = app.login_and_exchange("sam", "sam-pw").await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path(), "");
    let file = dir.path().join("leavers.txt");
    std::fs::write(&file, "# leavers of 2026\nada\n\n").unwrap();
    let file = file.to_str().unwrap();

    let (ok, out, stderr) =
        hubauth(args(&["deprovision", "--config", &config, "--users-file", file, "--delete", "--apply"])).await;
    assert!(ok, "{stderr}");
    assert!(out.contains("ada: deleted ("), "{out}");
    assert!(app.store.user_by_username("ada").await.unwrap().is_none());
    assert_eq!(refresh(&app, &ada).await.error(), "invalid_grant");
    assert_eq!(app.store.activity(START).await.unwrap().len(), 1);
    assert_eq!(refresh(&app, &sam).await.status, StatusCode::OK);
    assert_eq!(audit_kinds(&app).await, [("user_deleted".to_string(), "ada".to_string())]);

    let (ok, out, _) =
        hubauth(args(&["deprovision", "--config", &config, "--users-file", file, "--delete", "--apply"])).await;
    assert!(ok, "a re-run is fine");
    assert!(out.contains("ada: not a hubauth user (already deleted?)"), "{out}");

    // Deleted, ada may sign in again (the access policy admits her) as a new user.
    let back = app.login_and_exchange("ada", "ada-pw").await;
    let old = verify_jwt(&app, ada["id_token"].as_str().unwrap(), "hub").await;
    let new = verify_jwt(&app, back["id_token"].as_str().unwrap(), "hub").await;
    assert_ne!(old["sub"], new["sub"], "a subject is never reused");

    let (ok, _, stderr) = hubauth(args(&["deprovision", "--config", &config, "--block", "--delete"])).await;
    assert!(!ok, "who and one action are required: {stderr}");
}

/// JupyterHub's `DELETE /hub/api/users/{name}` as the hub answers it. `stopping` is a user
/// whose server is still stopping: refused once (400, as JupyterHub does), then deleted.
#[derive(Clone, Default)]
struct FakeHub {
    users: Arc<Mutex<HashSet<String>>>,
    stopping: Arc<Mutex<HashSet<String>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

async fn hub_delete(State(hub): State<FakeHub>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    hub.calls.lock().unwrap().push(name.clone());
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("token {HUB_TOKEN}") {
        return (StatusCode::FORBIDDEN, Json(json!({"status": 403, "message": "Forbidden"}))).into_response();
    }
    if hub.stopping.lock().unwrap().remove(&name) {
        let message = format!("{name}'s server is in the process of stopping, please wait.");
        return (StatusCode::BAD_REQUEST, Json(json!({"status": 400, "message": message}))).into_response();
    }
    if hub.users.lock().unwrap().remove(&name) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"status": 404, "message": "Not Found"}))).into_response()
    }
}

async fn fake_hub(users: &[&str], stopping: &[&str]) -> (FakeHub, String) {
    let hub = FakeHub::default();
    hub.users.lock().unwrap().extend(users.iter().map(|u| u.to_string()));
    hub.stopping.lock().unwrap().extend(stopping.iter().map(|u| u.to_string()));
    let router = Router::new().route("/hub/api/users/{name}", delete(hub_delete)).with_state(hub.clone());
    let url = crate::fakes::serve(router).await;
    (hub, format!("{url}/hub/api"))
}

#[tokio::test]
async fn delete_from_hub_reports_each_user_and_a_rerun_finishes() {
    let app = TestApp::new().await;
    app.login_and_exchange("ada", "ada-pw").await;
    app.login_and_exchange("sam", "sam-pw").await;
    let (hub, api_url) = fake_hub(&["ada", "sam", "hubonly"], &["sam"]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hub-token"), format!("{HUB_TOKEN}\n")).unwrap();
    let config = config_for(
        &app,
        dir.path(),
        &format!("[jupyterhub]\napi_url = \"{api_url}\"\napi_token = {{ file = \"hub-token\" }}\n"),
    );
    let who = ["--user", "ada", "--user", "sam", "--user", "hubonly", "--user", "gone"];
    let run = |extra: &[&str]| {
        let mut a = args(&["deprovision", "--config", &config, "--delete", "--delete-from-hub"]);
        a.extend(args(&who));
        a.extend(args(extra));
        hubauth(a)
    };

    let (ok, out, stderr) = run(&[]).await;
    assert!(ok, "{stderr}");
    assert!(out.contains("ada: would revoke sessions and tokens, and delete; would delete from the hub"), "{out}");
    assert!(hub.calls.lock().unwrap().is_empty(), "a dry run does not call the hub");

    let (ok, out, stderr) = run(&["--apply"]).await;
    assert!(!ok, "one user failed: the exit code says so");
    assert!(stderr.contains("1 of 4 user(s) failed"), "{stderr}");
    assert!(out.contains("ada: deleted (1 grant(s) revoked); deleted from the hub"), "{out}");
    assert!(out.contains("sam: deleted (1 grant(s) revoked); hub: FAILED: the hub answered HTTP 400: sam's server is in the process of stopping"), "{out}");
    assert!(out.contains("hubonly: not a hubauth user (already deleted?); deleted from the hub"), "{out}");
    assert!(out.contains("gone: not a hubauth user (already deleted?); not on the hub (already deleted?)"), "{out}");
    assert_eq!(*hub.users.lock().unwrap(), HashSet::from(["sam".to_string()]));

    let (ok, out, stderr) = run(&["--apply"]).await;
    assert!(ok, "the re-run finishes: {stderr}\n{out}");
    assert!(out.contains("sam: not a hubauth user (already deleted?); deleted from the hub"), "{out}");
    assert!(out.contains("ada: not a hubauth user (already deleted?); not on the hub"), "{out}");
    assert!(hub.users.lock().unwrap().is_empty());
    let mut audited = audit_kinds(&app).await;
    audited.sort();
    let expected: Vec<(String, String)> = [
        ("hub_user_deleted", "ada"),
        ("hub_user_deleted", "hubonly"),
        ("hub_user_deleted", "sam"),
        ("user_deleted", "ada"),
        ("user_deleted", "sam"),
    ]
    .iter()
    .map(|(k, u)| (k.to_string(), u.to_string()))
    .collect();
    assert_eq!(audited, expected);
}

#[tokio::test]
async fn a_bad_hub_token_fails_every_hub_deletion_and_a_missing_hub_config_stops_before_any_change() {
    let app = TestApp::new().await;
    let ada = app.login_and_exchange("ada", "ada-pw").await;
    let (hub, api_url) = fake_hub(&["ada"], &[]).await;
    let dir = tempfile::tempdir().unwrap();

    let unconfigured = config_for(&app, dir.path(), "");
    let (ok, _, stderr) =
        hubauth(args(&["deprovision", "--config", &unconfigured, "--user", "ada", "--delete-from-hub", "--apply"]))
            .await;
    assert!(!ok && stderr.contains("[jupyterhub] api_url") && stderr.contains("api_token"), "{stderr}");
    assert_eq!(refresh(&app, &ada).await.status, StatusCode::OK, "nothing changed");

    let ada = app.login_and_exchange("ada", "ada-pw").await;
    let config = config_for(
        &app,
        dir.path(),
        &format!("[jupyterhub]\napi_url = \"{api_url}/\"\napi_token = \"not-the-hub-token\"\n"),
    );
    let (ok, out, stderr) =
        hubauth(args(&["deprovision", "--config", &config, "--user", "ada", "--delete-from-hub", "--apply"])).await;
    assert!(!ok);
    assert!(
        out.contains("ada: blocked (") && out.contains("hub: FAILED: the hub refused the token (HTTP 403)"),
        "{out}"
    );
    assert!(!out.contains("not-the-hub-token") && !stderr.contains("not-the-hub-token"));
    assert_eq!(refresh(&app, &ada).await.error(), "invalid_grant", "blocked here all the same");
    assert_eq!(*hub.users.lock().unwrap(), HashSet::from(["ada".to_string()]));
}
