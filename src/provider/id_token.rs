//! ID tokens (OpenID Connect Core §2), signed with the client's algorithm.

use serde_json::{Map, Value};

use super::claims::user_claims;
use crate::app::AppState;
use crate::config::ClientConfig;
use crate::crypto::random::{b64url, sha256};
use crate::store::User;

pub struct IdTokenInput<'a> {
    pub client: &'a ClientConfig,
    pub user: &'a User,
    pub scope: &'a str,
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
}

pub fn issue(state: &AppState, input: IdTokenInput<'_>) -> anyhow::Result<String> {
    let now = state.clock.now();
    let mut claims: Map<String, Value> = user_claims(input.user, input.scope);
    claims.insert("iss".into(), state.config.issuer.clone().into());
    claims.insert("aud".into(), input.client.id.clone().into());
    claims.insert("azp".into(), input.client.id.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + state.config.tokens.id_token_lifetime.as_secs() as i64).into());
    claims.insert("auth_time".into(), input.auth_time.into());
    if let Some(nonce) = input.nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    // at_hash: left half of SHA-256 of the access token (Core §3.3.2.11), binds the pair.
    let digest = sha256(input.access_token.as_bytes());
    claims.insert("at_hash".into(), b64url(&digest[..16]).into());
    let ring = state.keys.current();
    let signer = ring
        .signer(input.client.id_token_alg)
        .ok_or_else(|| anyhow::anyhow!("no active {} signing key", input.client.id_token_alg.as_str()))?;
    signer.sign_jwt(&claims)
}
