//! Access that follows upstream membership without a logout.
//!
//! JupyterHub (OAuthenticator 17) re-reads userinfo every `auth_refresh_age` and falls back to the
//! refresh grant only when userinfo says 401; it never re-runs its own `allowed_groups`. So hubauth
//! re-checks the person itself on those two paths: when the user's data is older than
//! `[access] recheck_after` (or predates this server's start, so a changed config applies), the
//! connector reads identity and memberships again (refreshing the upstream token), groups are
//! recomputed and the policy decides again — with the runtime allow-list and, under
//! `admit_hub_users`, the hub's REST API asked again too, so a removed entry or a user deleted in
//! JupyterHub counts like a lost membership. A person no longer admitted loses every token and
//! browser session at once; userinfo then answers 401 and the refresh grant `invalid_grant`.
//!
//! One re-check runs at a time per user; others asking meanwhile wait and use its result. When the
//! provider is unreachable, the last known memberships stand (logged) and the next try waits a
//! minute — an outage upstream does not lock everyone out of the hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::app::AppState;
use crate::clock::UnixTime;
use crate::connectors::password_memberships;
use crate::connectors::sealing::{open_tokens, seal_login};
use crate::connectors::{ConnectorError, ConnectorKind, Membership, UpstreamLogin};
use crate::login::{self, Arrival};
use crate::metrics::RefreshResult;
use crate::policy::ReasonCode;
use crate::store::{StoreError, UpstreamRecord, User};

/// How long a caller waits for another replica's work on the same person (a provider round trip,
/// bounded by the connectors' own timeouts) before giving up with an error.
pub(crate) const SHARED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// After a failed attempt to reach the provider, wait this long before trying again.
const RETRY_AFTER_FAILURE: UnixTime = 60;

#[derive(Default)]
pub struct LiveChecks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    failed_at: Mutex<HashMap<String, UnixTime>>,
}

pub use crate::login::Current;

impl LiveChecks {
    pub(crate) fn lock_for(&self, user_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Drop locks nobody holds any more so the map does not grow with every user ever seen.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(user_id.to_string()).or_default().clone()
    }

    fn recently_failed(&self, user_id: &str, now: UnixTime) -> bool {
        let failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed.get(user_id).is_some_and(|t| now - t < RETRY_AFTER_FAILURE)
    }

    fn note_failure(&self, user_id: &str, now: UnixTime) {
        let mut failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        if failed.len() > 4096 {
            failed.retain(|_, t| now - *t < RETRY_AFTER_FAILURE);
        }
        failed.insert(user_id.to_string(), now);
    }
}

/// People whose data was read from their provider at or after this time need no re-check now:
/// within `[access] recheck_after`, and since this process started.
pub fn fresh_since(state: &AppState, now: UnixTime) -> UnixTime {
    (now - state.config.access.recheck_after_secs() + 1).max(state.started_at)
}

fn is_stale(state: &AppState, user: &User, now: UnixTime) -> bool {
    user.updated_at < fresh_since(state, now)
}

/// Makes sure `user` is still admitted, re-reading upstream when their data is stale.
pub async fn ensure_current(state: &AppState, user: &User) -> Result<Current, StoreError> {
    let now = state.clock.now();
    if !is_stale(state, user, now) {
        return Ok(Current::Admitted(Box::new(user.clone())));
    }
    let lock = state.live.lock_for(&user.id);
    let _guard = lock.lock().await;
    // Other replicas too: one upstream refresh per person across all of them.
    let _shared = state.store.lock_user(&user.id, crate::policy::live::SHARED_LOCK_WAIT).await?;
    // Someone else may have re-checked while we waited.
    let Some(user) = state.store.user_by_id(&user.id).await? else {
        return Ok(Current::Revoked { code: ReasonCode::NotAllowed, sentence: "the account no longer exists".into() });
    };
    let now = state.clock.now();
    if !is_stale(state, &user, now) {
        return Ok(Current::Admitted(Box::new(user)));
    }
    if state.live.recently_failed(&user.id, now) {
        return Ok(Current::Admitted(Box::new(user)));
    }
    let Some(stored) = state.store.upstream_for_user(&user.id).await? else {
        return Ok(Current::Admitted(Box::new(user)));
    };
    let Some(connector) = state.connectors.get(&stored.connector_id) else {
        return login::revoke(
            state,
            &user,
            ReasonCode::ConnectorRemoved,
            "the sign-in method you used is no longer offered".into(),
            now,
        )
        .await;
    };

    // Read the person again at the source.
    let (identity, memberships, record): (_, Vec<Membership>, UpstreamRecord) = match &connector.kind {
        ConnectorKind::Password(p) => match p.lookup(&stored.subject).await {
            Ok(Some(identity)) => {
                let (memberships, record) = password_memberships(&identity);
                (identity, memberships, record)
            }
            Ok(None) => {
                return login::revoke(
                    state,
                    &user,
                    ReasonCode::UpstreamSessionEnded,
                    "your account no longer exists at the sign-in service".into(),
                    now,
                )
                .await
            }
            Err(e) => {
                tracing::warn!(user = %user.username, error = %e, "re-check failed; keeping the last known memberships");
                state.live.note_failure(&user.id, now);
                return Ok(Current::Admitted(Box::new(user)));
            }
        },
        ConnectorKind::Redirect(upstream) => {
            let tokens = match open_tokens(state.sealer.as_deref(), &stored) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    return login::revoke(
                        state,
                        &user,
                        ReasonCode::UpstreamSessionEnded,
                        "the provider's sign-in is no longer on record".into(),
                        now,
                    )
                    .await
                }
                Err(e) => {
                    // Wrong or missing crypt key: an operator problem, not the person's; say so loudly.
                    tracing::error!(user = %user.username, error = %e, "cannot open stored upstream tokens");
                    state.live.note_failure(&user.id, now);
                    return Ok(Current::Admitted(Box::new(user)));
                }
            };
            let refreshed = upstream.refresh(&tokens, &stored.subject, now).await;
            state.metrics.upstream_refresh(
                &connector.id,
                match &refreshed {
                    Ok(_) => RefreshResult::Ok,
                    Err(ConnectorError::SessionEnded(_)) | Err(ConnectorError::Denied(_)) => {
                        RefreshResult::SessionEnded
                    }
                    Err(_) => RefreshResult::Failed,
                },
            );
            match refreshed {
                Ok(login) => {
                    let record = match seal_login(state.sealer.as_deref(), &login) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "could not seal refreshed upstream tokens");
                            state.live.note_failure(&user.id, now);
                            return Ok(Current::Admitted(Box::new(user)));
                        }
                    };
                    let UpstreamLogin { identity, memberships, .. } = login;
                    (identity, memberships, record)
                }
                Err(ConnectorError::SessionEnded(reason)) | Err(ConnectorError::Denied(reason)) => {
                    tracing::info!(user = %user.username, connector = %stored.connector_id, %reason, "the provider ended the sign-in");
                    return login::revoke(
                        state,
                        &user,
                        ReasonCode::UpstreamSessionEnded,
                        format!("your sign-in at {} has ended", connector.display_name),
                        now,
                    )
                    .await;
                }
                Err(e) => {
                    tracing::warn!(user = %user.username, connector = %stored.connector_id, error = %e, "re-check failed; keeping the last known memberships");
                    state.live.note_failure(&user.id, now);
                    return Ok(Current::Admitted(Box::new(user)));
                }
            }
        }
    };

    let arrival = Arrival { connector, identity, memberships: &memberships, record };
    login::recheck(state, &user, arrival, now).await
}
