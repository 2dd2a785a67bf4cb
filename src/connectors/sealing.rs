//! Upstream tokens at rest: sealed with the crypt keyring, bound to the identity row they belong
//! to (connector + upstream subject), so a sealed value copied to another identity does not open.

use super::{UpstreamLogin, UpstreamTokens};
use crate::crypto::Sealer;
use crate::store::{StoredUpstream, UpstreamRecord};

/// The associated data a connector's sealed tokens are bound to.
pub fn token_context(connector_id: &str, subject: &str) -> String {
    format!("hubauth/upstream-tokens/v1\0{connector_id}\0{subject}")
}

/// An identity's tokens, sealed for its row.
pub fn seal_tokens(
    sealer: Option<&Sealer>,
    connector_id: &str,
    subject: &str,
    tokens: &UpstreamTokens,
) -> anyhow::Result<String> {
    let sealer = sealer.ok_or_else(|| anyhow::anyhow!("no crypt key: upstream tokens cannot be stored"))?;
    Ok(sealer.seal(&token_context(connector_id, subject), tokens.to_payload().as_bytes())?)
}

/// The login's memberships and its tokens, sealed, ready to store.
pub fn seal_login(sealer: Option<&Sealer>, login: &UpstreamLogin) -> anyhow::Result<UpstreamRecord> {
    let memberships_json = serde_json::to_string(&login.memberships)?;
    let sealed = seal_tokens(sealer, &login.identity.connector_id, &login.identity.subject, &login.tokens)?;
    Ok(UpstreamRecord {
        memberships_json,
        tokens_sealed: Some(sealed),
        tokens_expire_at: login.tokens.expires_at,
        ..Default::default()
    })
}

/// The stored tokens of an identity, opened; `None` if there are none.
pub fn open_tokens(sealer: Option<&Sealer>, stored: &StoredUpstream) -> anyhow::Result<Option<UpstreamTokens>> {
    let Some(sealed) = &stored.tokens_sealed else { return Ok(None) };
    let sealer = sealer.ok_or_else(|| anyhow::anyhow!("no crypt key: stored upstream tokens cannot be opened"))?;
    let plain = sealer.open(&token_context(&stored.connector_id, &stored.subject), sealed)?;
    UpstreamTokens::from_payload(&plain)
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("stored upstream tokens are not readable"))
}
