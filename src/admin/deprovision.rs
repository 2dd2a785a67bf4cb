//! Bulk deprovisioning (`hubauth deprovision`): revoke a list of people's sessions and tokens,
//! block or delete them, and optionally delete them from JupyterHub too. Each person is one
//! step that fails alone; running it again finishes what failed and reports what is already
//! done (a user no longer here, a hub user the hub no longer knows).

use std::time::Duration;

use serde::Serialize;

use crate::clock::UnixTime;
use crate::config::JupyterHubConfig;
use crate::crypto::Secret;
use crate::store::{AuditEvent, Store, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Block,
    Delete,
}

/// What happened (or, in a dry run, would happen) to one person here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Local {
    WouldBlock,
    WouldDelete,
    Blocked {
        revoked_grants: u64,
    },
    /// Blocked before; their tokens and sessions are revoked again all the same.
    AlreadyBlocked {
        revoked_grants: u64,
    },
    Deleted {
        revoked_grants: u64,
    },
    /// Not a user here (deleted before, or never signed in).
    NotFound,
    Failed {
        error: String,
    },
}

/// The same at JupyterHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Hub {
    WouldDelete,
    Deleted,
    /// The hub answered 404: nothing to delete.
    NotFound,
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub username: String,
    pub local: Local,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<Hub>,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(self.local, Local::Failed { .. }) || matches!(self.hub, Some(Hub::Failed { .. }))
    }

    /// One line for a terminal.
    pub fn describe(&self) -> String {
        let local = match &self.local {
            Local::WouldBlock => "would revoke sessions and tokens, and block".to_string(),
            Local::WouldDelete => "would revoke sessions and tokens, and delete".to_string(),
            Local::Blocked { revoked_grants } => format!("blocked ({revoked_grants} grant(s) revoked)"),
            Local::AlreadyBlocked { revoked_grants } => {
                format!("already blocked ({revoked_grants} grant(s) revoked now)")
            }
            Local::Deleted { revoked_grants } => format!("deleted ({revoked_grants} grant(s) revoked)"),
            Local::NotFound => "not a hubauth user (already deleted?)".to_string(),
            Local::Failed { error } => format!("FAILED: {error}"),
        };
        let hub = match &self.hub {
            None => String::new(),
            Some(Hub::WouldDelete) => "; would delete from the hub".into(),
            Some(Hub::Deleted) => "; deleted from the hub".into(),
            Some(Hub::NotFound) => "; not on the hub (already deleted?)".into(),
            Some(Hub::Failed { error }) => format!("; hub: FAILED: {error}"),
        };
        format!("{}: {local}{hub}", self.username)
    }
}

/// JupyterHub's REST API with an admin token (`[jupyterhub] api_url`, `api_token`).
pub struct HubApi {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
}

impl HubApi {
    pub fn from_config(config: &JupyterHubConfig) -> anyhow::Result<Self> {
        let (Some(api_url), Some(token)) = (&config.api_url, &config.api_token) else {
            anyhow::bail!(
                "deleting from the hub needs [jupyterhub] api_url (e.g. http://127.0.0.1:8081/hub/api) and \
                 api_token (a hub admin's token with the admin:users scope, e.g. api_token = {{ env = \"JUPYTERHUB_API_TOKEN\" }})"
            );
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, api_url: api_url.trim_end_matches('/').to_string(), token: token.clone() })
    }

    /// `DELETE {api_url}/users/{name}`: 204 deleted, 404 already gone.
    pub async fn delete_user(&self, name: &str) -> Hub {
        let mut url = match url::Url::parse(&self.api_url) {
            Ok(u) => u,
            Err(e) => return Hub::Failed { error: format!("[jupyterhub] api_url is not a URL: {e}") },
        };
        // The name is one path segment, escaped (a `/` or `?` in it cannot reach another route).
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["users", name]);
        }
        let answer = self
            .http
            .delete(url)
            .header(reqwest::header::AUTHORIZATION, format!("token {}", self.token.expose()))
            .send()
            .await;
        let response = match answer {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Hub::Failed { error: "the hub did not answer in time".into() },
            Err(e) if e.is_connect() => return Hub::Failed { error: "cannot connect to the hub".into() },
            Err(e) => return Hub::Failed { error: e.without_url().to_string() },
        };
        let status = response.status();
        match status.as_u16() {
            200..=299 => Hub::Deleted,
            404 => Hub::NotFound,
            401 | 403 => Hub::Failed {
                error: format!(
                    "the hub refused the token (HTTP {}): it needs a hub admin's token with the admin:users scope",
                    status.as_u16()
                ),
            },
            _ => {
                // JupyterHub's errors are {"status": …, "message": …}; show the message, bounded.
                let message = response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["message"].as_str().map(|m| m.chars().take(200).collect::<String>()))
                    .unwrap_or_default();
                Hub::Failed { error: format!("the hub answered HTTP {}: {message}", status.as_u16()) }
            }
        }
    }
}

pub use super::Actor;

/// Deprovisions `usernames` in order, each on its own. Without `apply` nothing changes: each
/// outcome says what would happen.
pub async fn run(
    store: &dyn Store,
    usernames: &[String],
    action: Action,
    hub: Option<&HubApi>,
    apply: bool,
    actor: &Actor,
    now: impl Fn() -> UnixTime,
) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(usernames.len());
    for username in usernames {
        let local = match one(store, username, action, apply, actor, now()).await {
            Ok(l) => l,
            Err(e) => Local::Failed { error: e.to_string() },
        };
        let hub = match hub {
            None => None,
            Some(_) if !apply => Some(Hub::WouldDelete),
            // Removing someone from the hub while they can still sign in here would let them back.
            Some(_) if matches!(local, Local::Failed { .. }) => {
                Some(Hub::Failed { error: "not tried: removing them from hubauth failed".into() })
            }
            Some(api) => {
                let result = api.delete_user(username).await;
                if result == Hub::Deleted {
                    audit(store, actor, now(), "hub_user_deleted", username, None, "deleted from JupyterHub").await;
                }
                Some(result)
            }
        };
        out.push(Outcome { username: username.clone(), local, hub });
    }
    out
}

async fn one(
    store: &dyn Store,
    username: &str,
    action: Action,
    apply: bool,
    actor: &Actor,
    now: UnixTime,
) -> StoreResult<Local> {
    let Some(user) = store.user_by_username(username).await? else {
        return Ok(Local::NotFound);
    };
    if !apply {
        return Ok(match action {
            Action::Block => Local::WouldBlock,
            Action::Delete => Local::WouldDelete,
        });
    }
    // Revoke first: whatever happens next, their tokens and sessions no longer work.
    let revoked_grants = store.revoke_user(&user.id, "deprovisioned", now).await?;
    let (kind, local) = match action {
        Action::Block if store.block_user(&user.id, now).await? => ("user_blocked", Local::Blocked { revoked_grants }),
        Action::Block => ("user_blocked", Local::AlreadyBlocked { revoked_grants }),
        Action::Delete => {
            if !store.delete_user(&user.id).await? {
                return Ok(Local::NotFound); // deleted by someone else just now
            }
            ("user_deleted", Local::Deleted { revoked_grants })
        }
    };
    let detail = format!("deprovisioned; {revoked_grants} grant(s) revoked");
    audit(store, actor, now, kind, username, Some(&user.id), &detail).await;
    Ok(local)
}

async fn audit(
    store: &dyn Store,
    actor: &Actor,
    now: UnixTime,
    kind: &str,
    username: &str,
    user_id: Option<&str>,
    what: &str,
) {
    let event = AuditEvent {
        at: now,
        kind: kind.into(),
        reason: Some("deprovision".into()),
        username: Some(username.into()),
        user_id: user_id.map(str::to_owned),
        detail: Some(format!("{what}, by {}", actor.name)),
        actor: Some(actor.name.clone()),
        request_id: actor.request_id.clone(),
        ..Default::default()
    };
    if let Err(e) = store.record_audit(&event).await {
        tracing::error!(error = %e, kind, user = username, "could not write the audit log");
    }
}
