//! Token custody: hubauth holds each person's upstream tokens (sealed) and hands out a fresh
//! upstream access token on request — refreshed first when it is within the configured skew of
//! expiry, one refresh at a time per person and connector (callers meanwhile wait for that
//! refresh's result: no stampede, and no refresh-token reuse at providers that rotate them).
//!
//! When the provider refuses the refresh (its session is over, the refresh token revoked), the
//! upstream session is marked ended: the stored tokens are dropped and the person's hubauth
//! grants revoked, so their next hub request leads to a new sign-in.

use crate::app::AppState;
use crate::clock::UnixTime;
use crate::connectors::sealing::{open_tokens, seal_tokens};
use crate::connectors::{ConnectorError, ConnectorKind};
use crate::crypto::Secret;
use crate::store::{AuditEvent, StoreError, User};

/// A fresh upstream access token.
pub struct FreshToken {
    pub access_token: Secret,
    pub expires_at: Option<UnixTime>,
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    #[error("the user has no sign-in at {0}")]
    NoIdentity(String),
    #[error("{0} is not a connector that keeps tokens")]
    NotRedirect(String),
    /// The provider ended the session: the person must sign in again.
    #[error("the sign-in at {connector} has ended: {reason}")]
    SessionEnded { connector: String, reason: String },
    /// The provider could not be reached or answered badly; try again later.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A current upstream access token of `user` at `connector_id`.
pub async fn fresh_upstream_token(
    state: &AppState,
    user: &User,
    connector_id: &str,
) -> Result<FreshToken, CustodyError> {
    let connector = state.connectors.get(connector_id).ok_or_else(|| CustodyError::NotRedirect(connector_id.into()))?;
    let ConnectorKind::Redirect(upstream) = &connector.kind else {
        return Err(CustodyError::NotRedirect(connector_id.into()));
    };
    let skew = state.config.tokens.upstream_refresh_skew.as_secs() as i64;
    let usable = |expires_at: Option<UnixTime>, now: UnixTime| expires_at.is_none_or(|e| e - skew > now);

    // One refresh at a time per person (and so per person and connector).
    let lock = state.live.lock_for(&user.id);
    let _guard = lock.lock().await;
    let stored = state
        .store
        .identity_of_user(&user.id, connector_id)
        .await?
        .ok_or_else(|| CustodyError::NoIdentity(connector.display_name.clone()))?;
    let tokens = open_tokens(state.sealer.as_deref(), &stored)
        .map_err(|e| {
            tracing::error!(error = %e, connector = connector_id, "cannot open stored upstream tokens");
            CustodyError::Unavailable("hubauth cannot read the stored upstream tokens".into())
        })?
        .ok_or_else(|| CustodyError::SessionEnded {
            connector: connector.display_name.clone(),
            reason: "no upstream sign-in is on record".into(),
        })?;
    let now = state.clock.now();
    if usable(tokens.expires_at, now) {
        return Ok(FreshToken {
            access_token: tokens.access_token,
            expires_at: tokens.expires_at,
            scope: tokens.scope,
        });
    }
    match upstream.refresh(&tokens, &stored.subject, now).await {
        Ok(login) => {
            let sealed = seal_tokens(state.sealer.as_deref(), connector_id, &stored.subject, &login.tokens)
                .map_err(|e| CustodyError::Unavailable(e.to_string()))?;
            state
                .store
                .update_upstream_tokens(connector_id, &stored.subject, Some(&sealed), login.tokens.expires_at)
                .await?;
            tracing::debug!(connector = connector_id, user = %user.username, "upstream token refreshed");
            Ok(FreshToken {
                access_token: login.tokens.access_token,
                expires_at: login.tokens.expires_at,
                scope: login.tokens.scope,
            })
        }
        Err(ConnectorError::SessionEnded(reason)) | Err(ConnectorError::Denied(reason)) => {
            tracing::info!(connector = connector_id, user = %user.username, %reason, "upstream session ended");
            state.store.update_upstream_tokens(connector_id, &stored.subject, None, None).await?;
            let grants = state.store.revoke_user(&user.id, "upstream session ended", now).await?;
            state.metrics.revoked("upstream_session_ended");
            let event = AuditEvent {
                at: now,
                kind: "upstream_session_ended".into(),
                reason: Some("upstream_session_ended".into()),
                username: Some(user.username.clone()),
                user_id: Some(user.id.clone()),
                connector_id: Some(connector_id.into()),
                request_id: crate::web::request_id::current(),
                detail: Some(format!("the provider refused the refresh; {grants} grant(s) revoked")),
                ..Default::default()
            };
            if let Err(e) = state.store.record_audit(&event).await {
                tracing::error!(error = %e, "could not write the audit log");
            }
            Err(CustodyError::SessionEnded { connector: connector.display_name.clone(), reason })
        }
        Err(e) => Err(CustodyError::Unavailable(format!("{}: {e}", connector.display_name))),
    }
}
