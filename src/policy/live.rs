//! Access that follows upstream membership without a logout.
//!
//! JupyterHub (OAuthenticator 17) re-reads userinfo every `auth_refresh_age` and falls back to the
//! refresh grant only when userinfo says 401; it never re-runs its own `allowed_groups`. So hubauth
//! re-checks the person itself on those two paths: when the user's data is older than
//! `[access] recheck_after` (or predates this server's start, so a changed config applies), the
//! connector reads identity and memberships again (refreshing the upstream token), groups are
//! recomputed and the policy decides again. A person no longer admitted loses every token and
//! browser session at once; userinfo then answers 401 and the refresh grant `invalid_grant`.
//!
//! One re-check runs at a time per user; others asking meanwhile wait and use its result. When the
//! provider is unreachable, the last known memberships stand (logged) and the next try waits a
//! minute — an outage upstream does not lock everyone out of the hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::app::AppState;
use crate::clock::UnixTime;
use crate::connectors::sealing::{open_tokens, seal_login};
use crate::connectors::{password_memberships, Connector};
use crate::connectors::{ConnectorError, ConnectorKind, Membership, UpstreamLogin};
use crate::groups;
use crate::policy::{self, Decision, ReasonCode};
use crate::store::{AuditEvent, Invite, StoreError, UpstreamIdentity, UpstreamRecord, User};

/// After a failed attempt to reach the provider, wait this long before trying again.
const RETRY_AFTER_FAILURE: UnixTime = 60;

#[derive(Default)]
pub struct LiveChecks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    failed_at: Mutex<HashMap<String, UnixTime>>,
}

/// The outcome of making sure a user is still who and what the tokens say.
#[derive(Debug)]
pub enum Current {
    /// Still admitted; the user as now stored (groups possibly changed).
    Admitted(Box<User>),
    /// No longer admitted: every token and session of the user has been revoked.
    Revoked { code: ReasonCode, sentence: String },
}

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

fn is_stale(state: &AppState, user: &User, now: UnixTime) -> bool {
    now - user.updated_at >= state.config.access.recheck_after_secs() || user.updated_at < state.started_at
}

/// Makes sure `user` is still admitted, re-reading upstream when their data is stale.
pub async fn ensure_current(state: &AppState, user: &User) -> Result<Current, StoreError> {
    let now = state.clock.now();
    if !is_stale(state, user, now) {
        return Ok(Current::Admitted(Box::new(user.clone())));
    }
    let lock = state.live.lock_for(&user.id);
    let _guard = lock.lock().await;
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
        return revoke(
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
                return revoke(
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
                    return revoke(
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
            match upstream.refresh(&tokens, &stored.subject, now).await {
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
                    return revoke(
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

    let mut identity = identity;
    let mut record = record;
    let raw_username = identity.username.clone();
    identity.username = match connector.usernames.normalize(&raw_username) {
        Ok(name) => name,
        Err(why) => return revoke(state, &user, ReasonCode::UsernameInvalid, why, now).await,
    };
    record.upstream_username = Some(raw_username);
    // Invites this person used keep admitting them (and granting their groups) while they hold.
    let invites = state.store.invites_of_user(&user.id, now).await?;
    let decision = admit(state, connector, &mut identity, &memberships, &invites);
    if !decision.allowed {
        return revoke(state, &user, decision.code, decision.sentence, now).await;
    }
    match state.store.record_recheck(&identity, &record, now).await {
        Ok(updated) => Ok(Current::Admitted(Box::new(updated))),
        Err(StoreError::UsernameTaken(name)) => {
            // The upstream renamed the account onto a name someone else holds: keep the old one.
            tracing::warn!(user = %user.username, new_name = %name, "upstream rename collides with another user; keeping the old username");
            identity.username = user.username.clone();
            Ok(Current::Admitted(Box::new(state.store.record_recheck(&identity, &record, now).await?)))
        }
        Err(e) => Err(e),
    }
}

/// The one decision for a sign-in and for every re-check: groups from the connector's rules,
/// static groups, the invites' groups, then the policy (and the admin group for admins), all
/// written into `identity.groups`.
pub fn admit(
    state: &AppState,
    connector: &Connector,
    identity: &mut UpstreamIdentity,
    memberships: &[Membership],
    invites: &[Invite],
) -> Decision {
    let mut names = groups::compute(&connector.group_rules, memberships);
    groups::add_static(&state.config.static_groups, &identity.username, &mut names);
    add_missing(&mut names, invites.iter().flat_map(|i| i.groups.iter()));
    let subject =
        policy::Subject { username: &identity.username, groups: &names, memberships, invited: !invites.is_empty() };
    let decision = policy::decide(&state.config.access, connector.access.as_ref(), &subject);
    if decision.admin {
        add_missing(&mut names, state.config.access.admin_group.iter());
    }
    identity.groups = names;
    decision
}

fn add_missing<'a>(names: &mut Vec<String>, more: impl Iterator<Item = &'a String>) {
    for g in more {
        if !names.contains(g) {
            names.push(g.clone());
        }
    }
}

async fn revoke(
    state: &AppState,
    user: &User,
    code: ReasonCode,
    sentence: String,
    now: UnixTime,
) -> Result<Current, StoreError> {
    let grants = state.store.revoke_user(&user.id, code.as_str(), now).await?;
    state.metrics.revoked(code.as_str());
    tracing::info!(user = %user.username, reason = code.as_str(), grants, "access revoked");
    let event = AuditEvent {
        at: now,
        kind: "access_revoked".into(),
        reason: Some(code.as_str().into()),
        username: Some(user.username.clone()),
        user_id: Some(user.id.clone()),
        request_id: crate::web::request_id::current(),
        detail: Some(sentence.clone()),
        ..Default::default()
    };
    if let Err(e) = state.store.record_audit(&event).await {
        tracing::error!(error = %e, "could not write the audit log");
    }
    Ok(Current::Revoked { code, sentence })
}
