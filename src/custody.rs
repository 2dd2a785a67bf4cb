//! Token custody: hubauth holds each person's upstream tokens (sealed) and hands out a fresh
//! upstream access token on request — refreshed first when it is within the configured skew of
//! expiry (at most half its lifetime), one refresh at a time per person and connector (callers
//! meanwhile wait for that refresh and take its result: no stampede, and no refresh-token reuse
//! at providers that rotate them).
//!
//! When the provider refuses the refresh (its session is over, the refresh token revoked), the
//! upstream session is marked ended: the stored tokens are dropped and the person's hubauth
//! grants revoked, so their next hub request leads to a new sign-in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::app::AppState;
use crate::clock::UnixTime;
use crate::connectors::sealing::{open_tokens, seal_tokens};
use crate::connectors::untrusted::printable;
use crate::connectors::{Connector, ConnectorError, ConnectorKind, RedirectConnector, UpstreamTokens};
use crate::crypto::Secret;
use crate::metrics::RefreshResult;
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

/// Per person and connector: how many upstream refreshes have ended, and why the last one failed
/// (if it did). A caller that waited while a refresh ran takes that refresh's outcome instead of
/// judging the token again and running another — with tokens that live no longer than the skew,
/// every waiter would otherwise refresh in turn.
#[derive(Default)]
pub struct RefreshFlights {
    flights: Mutex<HashMap<(String, String), Arc<Flight>>>,
}

#[derive(Default)]
struct Flight {
    landed: Mutex<Landed>,
}

#[derive(Default, Clone)]
struct Landed {
    count: u64,
    failure: Option<String>,
}

impl RefreshFlights {
    fn flight(&self, user_id: &str, connector_id: &str) -> Arc<Flight> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Drop flights nobody waits on so the map does not grow with every user ever seen.
        if flights.len() > 1024 {
            flights.retain(|_, f| Arc::strong_count(f) > 1);
        }
        flights.entry((user_id.to_string(), connector_id.to_string())).or_default().clone()
    }
}

impl Flight {
    fn landed(&self) -> Landed {
        self.landed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn land(&self, failure: Option<String>) {
        let mut landed = self.landed.lock().unwrap_or_else(|p| p.into_inner());
        landed.count += 1;
        landed.failure = failure;
    }
}

/// The skew applied to `tokens`: the configured one, but at most half their lifetime, so a token
/// that lives no longer than the skew (1-minute tokens, 60 s skew) is not due again on arrival.
fn refresh_skew(configured: i64, tokens: &UpstreamTokens) -> i64 {
    match (tokens.obtained_at, tokens.expires_at) {
        (Some(obtained), Some(expires)) if expires > obtained => configured.min((expires - obtained) / 2),
        _ => configured,
    }
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
    // Most requests find a current token: handed out without taking any lock.
    if let Some(fresh) = current_token(state, connector, user, connector_id, false).await?.1 {
        return Ok(fresh);
    }
    let flight = state.refresh_flights.flight(&user.id, connector_id);
    let seen = flight.landed().count;

    // One refresh at a time per person (and so per person and connector).
    let lock = state.live.lock_for(&user.id);
    let _guard = lock.lock().await;
    // Other replicas too: one upstream refresh per person across all of them.
    let _shared = state.store.lock_user(&user.id, crate::policy::live::SHARED_LOCK_WAIT).await?;
    let landed = flight.landed();
    let waited_for_refresh = landed.count != seen;
    if let (true, Some(failure)) = (waited_for_refresh, landed.failure) {
        return Err(CustodyError::Unavailable(failure));
    }
    // Read again under the locks: a refresh we (or another replica) waited for may have landed.
    let ((stored, tokens), fresh) = current_token(state, connector, user, connector_id, waited_for_refresh).await?;
    if let Some(fresh) = fresh {
        return Ok(fresh);
    }
    let now = state.clock.now();
    let outcome = refresh(state, upstream.as_ref(), connector, &stored.subject, user, &tokens, now).await;
    flight.land(match &outcome {
        Err(CustodyError::Unavailable(why)) => Some(why.clone()),
        // Waiters find the tokens (new, or dropped when the session ended) in the store.
        _ => None,
    });
    outcome
}

/// The stored tokens of `user` at `connector_id`, and the access token if it is current: not
/// within the skew of expiry, or (`just_refreshed`, what a refresh we waited for brought) not
/// expired.
async fn current_token(
    state: &AppState,
    connector: &Connector,
    user: &User,
    connector_id: &str,
    just_refreshed: bool,
) -> Result<((crate::store::StoredUpstream, UpstreamTokens), Option<FreshToken>), CustodyError> {
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
    let skew = if just_refreshed {
        0
    } else {
        refresh_skew(state.config.tokens.upstream_refresh_skew.as_secs() as i64, &tokens)
    };
    let fresh = tokens.expires_at.is_none_or(|e| e - skew > now).then(|| FreshToken {
        access_token: tokens.access_token.clone(),
        expires_at: tokens.expires_at,
        scope: tokens.scope.clone(),
    });
    Ok(((stored, tokens), fresh))
}

/// Refreshes `tokens` at the provider and stores the outcome.
async fn refresh(
    state: &AppState,
    upstream: &dyn RedirectConnector,
    connector: &Connector,
    subject: &str,
    user: &User,
    tokens: &UpstreamTokens,
    now: UnixTime,
) -> Result<FreshToken, CustodyError> {
    let connector_id = connector.id.as_str();
    match upstream.refresh(tokens, subject, now).await {
        Ok(login) => {
            let sealed = seal_tokens(state.sealer.as_deref(), connector_id, subject, &login.tokens)
                .map_err(|e| CustodyError::Unavailable(e.to_string()))?;
            state.store.update_upstream_tokens(connector_id, subject, Some(&sealed), login.tokens.expires_at).await?;
            state.metrics.upstream_refresh(connector_id, RefreshResult::Ok);
            tracing::debug!(connector = connector_id, user = %user.username, "upstream token refreshed");
            Ok(FreshToken {
                access_token: login.tokens.access_token,
                expires_at: login.tokens.expires_at,
                scope: login.tokens.scope,
            })
        }
        Err(ConnectorError::SessionEnded(reason)) | Err(ConnectorError::Denied(reason)) => {
            state.metrics.upstream_refresh(connector_id, RefreshResult::SessionEnded);
            let quoted = printable(&reason, 400);
            tracing::info!(connector = connector_id, user = %user.username, reason = ?quoted, "upstream session ended");
            state.store.update_upstream_tokens(connector_id, subject, None, None).await?;
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
        Err(e) => {
            state.metrics.upstream_refresh(connector_id, RefreshResult::Failed);
            Err(CustodyError::Unavailable(format!("{}: {e}", connector.display_name)))
        }
    }
}
