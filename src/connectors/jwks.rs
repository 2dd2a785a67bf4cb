//! An upstream provider's published signing keys (its JWKS), as a connector keeps them: for as
//! long as the provider's `Cache-Control: max-age` says, within [`TTL_MIN`]..[`TTL_MAX`]
//! ([`TTL_DEFAULT`] when it says nothing), so a key the provider withdraws stops being trusted
//! without a restart. Which key verifies a token is decided here too: the one its `kid` names,
//! and only when the key's own `alg`, `use` and `key_ops` (when present) allow verifying a
//! signature with the token's algorithm (RFC 7517 §4.2–4.4).

use std::str::FromStr;

use jsonwebtoken::jwk::{Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use reqwest::header::{HeaderMap, AGE, CACHE_CONTROL};

use super::http::Answer;
use super::ConnectorError;
use crate::clock::UnixTime;

/// Seconds keys are kept when the provider does not say.
pub const TTL_DEFAULT: i64 = 5 * 60;
/// However little the provider asks for, keys are kept this long (no fetch per login).
pub const TTL_MIN: i64 = 60;
/// However much the provider allows, keys are fetched again after this long.
pub const TTL_MAX: i64 = 24 * 3600;

/// The keys of one fetch of the provider's JWKS.
pub struct ProviderKeys {
    keys: Vec<Jwk>,
    fetched_at: UnixTime,
    expires_at: UnixTime,
}

/// Which key verifies a token.
pub enum Pick {
    Found(DecodingKey),
    /// The provider publishes no key with the token's `kid`: perhaps it rotated.
    Missing,
    /// The key is published, but not for this (why).
    Unusable(String),
}

impl ProviderKeys {
    /// Reads a JWKS answer. Keys hubauth cannot read (a type or curve it does not know) are
    /// skipped rather than failing the whole set: a provider may publish more than we use.
    pub fn from_answer(answer: &Answer, now: UnixTime) -> Result<Self, ConnectorError> {
        #[derive(serde::Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = answer.json("the provider's JWKS")?;
        let keys = set.keys.into_iter().filter_map(|k| serde_json::from_value::<Jwk>(k).ok()).collect();
        Ok(Self { keys, fetched_at: now, expires_at: now + lifetime(&answer.headers) })
    }

    /// Whether these keys may still be used without fetching them again (a clock that went
    /// backwards counts as expired).
    pub fn is_current(&self, now: UnixTime) -> bool {
        self.fetched_at <= now && now < self.expires_at
    }

    /// The key for a token with this header.
    pub fn pick(&self, header: &Header) -> Pick {
        let candidates: Vec<&Jwk> = match header.kid.as_deref() {
            Some(kid) => self.keys.iter().filter(|k| k.common.key_id.as_deref() == Some(kid)).collect(),
            // No kid: acceptable only when the provider publishes a single key.
            None if self.keys.len() == 1 => vec![&self.keys[0]],
            None if self.keys.is_empty() => vec![],
            None => return Pick::Unusable("it names no key (kid) and the provider publishes several".into()),
        };
        let mut refusal = None;
        for jwk in candidates {
            match usable_for(jwk, header.alg) {
                Ok(key) => return Pick::Found(key),
                Err(why) => refusal = refusal.or(Some(why)),
            }
        }
        refusal.map_or(Pick::Missing, Pick::Unusable)
    }
}

/// The key, if its published parameters allow verifying a signature made with `alg`.
fn usable_for(jwk: &Jwk, alg: Algorithm) -> Result<DecodingKey, String> {
    let common = &jwk.common;
    if common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err("the provider publishes its key for another use than signatures (use)".into());
    }
    if common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return Err("the provider publishes its key for other operations than verifying (key_ops)".into());
    }
    if let Some(key_alg) = common.key_algorithm {
        if Algorithm::from_str(&key_alg.to_string()).ok() != Some(alg) {
            return Err(format!("it is signed with {alg:?}, but the provider's key is for {key_alg} (alg)"));
        }
    }
    DecodingKey::from_jwk(jwk).map_err(|_| "the provider's key cannot be read".to_string())
}

/// How long an answer may be kept: `Cache-Control: max-age` less `Age`, within bounds;
/// `no-cache`/`no-store` mean as short as allowed.
fn lifetime(headers: &HeaderMap) -> i64 {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "no-cache" | "no-store" => max_age = Some(0),
                "max-age" => {
                    if let Ok(seconds) = arg.trim().trim_matches('"').parse::<i64>() {
                        max_age = Some(max_age.map_or(seconds, |m: i64| m.min(seconds)));
                    }
                }
                _ => {}
            }
        }
    }
    let age = headers.get(AGE).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0);
    max_age.map_or(TTL_DEFAULT, |m| m.saturating_sub(age)).clamp(TTL_MIN, TTL_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (reqwest::header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn cache_control_sets_the_lifetime_within_bounds() {
        assert_eq!(lifetime(&HeaderMap::new()), TTL_DEFAULT);
        assert_eq!(lifetime(&headers(&[("cache-control", "public, max-age=3600")])), 3600);
        assert_eq!(lifetime(&headers(&[("cache-control", "max-age=\"900\"")])), 900);
        assert_eq!(lifetime(&headers(&[("cache-control", "max-age=3600"), ("age", "600")])), 3000);
        assert_eq!(lifetime(&headers(&[("cache-control", "max-age=5")])), TTL_MIN);
        assert_eq!(lifetime(&headers(&[("cache-control", "no-store")])), TTL_MIN);
        assert_eq!(lifetime(&headers(&[("cache-control", "max-age=31536000")])), TTL_MAX);
        assert_eq!(lifetime(&headers(&[("cache-control", "max-age=-1")])), TTL_MIN);
        assert_eq!(lifetime(&headers(&[("cache-control", "max-age=soon")])), TTL_DEFAULT);
    }
}
