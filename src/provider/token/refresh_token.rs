//! `grant_type=refresh_token` (RFC 6749 §6) with rotation: every use returns a new refresh token
//! and spends the old one; presenting a spent one revokes the whole family (RFC 9700 §4.14.2).
//!
//! The person is re-checked (`ensure_current`, which may wait on the provider) *before* the
//! rotation is committed, so a client that gives up meanwhile still holds a valid token. A lost
//! answer is forgiven once more: the token just rotated away, presented again within `[tokens]
//! refresh_token_reuse_grace` while its successor is unused, gets a fresh pair and the unseen one
//! is withdrawn (as Hydra and Okta do). Older tokens, or any reuse after the grace or once the
//! successor was used, revoke the family.

use super::{mint, respond, Minted, TokenResponse};
use crate::app::SharedState;
use crate::config::ClientConfig;
use crate::crypto::random::token_key;
use crate::policy::live::{self, ensure_current, Current};
use crate::provider::params::Params;
use crate::provider::{scope, ErrorCode, OAuthError};
use crate::store::{Grant, RefreshRotation, User};

pub async fn grant(state: &SharedState, client: &ClientConfig, params: &Params) -> Result<TokenResponse, OAuthError> {
    let presented =
        params.get("refresh_token").ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let asked_scope = params.get("scope");
    let hash = token_key(presented);

    // The usual refresh in one step: an unspent token of someone checked recently enough, with
    // no narrower scope asked, is rotated right away (one round trip on PostgreSQL).
    if asked_scope.is_none() {
        let now = state.clock.now();
        let minted = mint(state, "", true);
        let fresh_since = live::fresh_since(state, now);
        let outcome =
            state.store.rotate_fresh_refresh_token(&hash, &client.id, now, fresh_since, &minted.record).await?;
        if let Some(outcome) = outcome {
            return finish(state, client, outcome, minted);
        }
    }

    // A refresh is where a hub learns of lost access: re-check stale memberships first, while
    // nothing is spent yet. The token is read once; the rotation judges that read.
    let mut seen = match state.store.presented_refresh_token(&hash).await? {
        Some(seen) if seen.holds_for(&client.id, state.clock.now()) => seen,
        _ => return Err(OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")),
    };
    match ensure_current(state, &seen.user).await? {
        Current::Revoked { code, .. } => {
            tracing::info!(client_id = %client.id, reason = code.as_str(), "refresh refused: access withdrawn");
            return Err(OAuthError::invalid_grant("access to this hub was withdrawn; sign in again"));
        }
        // The re-check may have refreshed their name or groups: the new ID token carries those.
        Current::Admitted(user) => seen.user = *user,
    }

    // The tokens are minted up front; which scope they carry is decided inside the rotation, once
    // the grant is known, so checking, spending the old token and recording the new ones are one
    // atomic step.
    let now = state.clock.now();
    let minted = mint(state, "", true);
    let mut record = minted.record.clone();
    let asked_scope = asked_scope.map(str::to_owned);
    let issue = Box::new(move |grant: &Grant, _user: &User| {
        record.access_scope = match asked_scope {
            Some(asked) if !scope::is_subset(&asked, &grant.scope) => return None,
            Some(asked) => scope::normalize(&asked),
            None => grant.scope.clone(),
        };
        Some(record)
    });
    let grace = state.config.tokens.refresh_token_reuse_grace.as_secs() as i64;
    let outcome = state.store.rotate_refresh_token(seen, &client.id, now, grace, issue).await?;
    finish(state, client, outcome, minted)
}

fn finish(
    state: &SharedState,
    client: &ClientConfig,
    outcome: RefreshRotation,
    minted: Minted,
) -> Result<TokenResponse, OAuthError> {
    match outcome {
        RefreshRotation::Rotated { grant, user, scope } => {
            crate::provider::token_use::note(state, &user.id);
            respond(state, client, &user, &scope, grant.auth_time, None, minted)
        }
        RefreshRotation::Retried { grant, user, scope } => {
            tracing::info!(client_id = %client.id, grant_id = %grant.id, "refresh retried within the reuse grace; the unused pair is withdrawn");
            crate::provider::token_use::note(state, &user.id);
            respond(state, client, &user, &scope, grant.auth_time, None, minted)
        }
        RefreshRotation::Declined => {
            Err(OAuthError::new(ErrorCode::InvalidScope, "the requested scope exceeds what was granted"))
        }
        RefreshRotation::Reused { grant_id } => {
            tracing::warn!(client_id = %client.id, grant_id, "refresh token reused; the token family is revoked");
            Err(OAuthError::invalid_grant(
                "the refresh token has already been used; all tokens of this login are revoked",
            ))
        }
        RefreshRotation::Invalid => Err(OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")),
    }
}
