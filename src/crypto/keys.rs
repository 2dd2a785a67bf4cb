//! ID-token signing keys: generation, JWS signing, the published JWKS, and rotation.
//!
//! Keys live in the store (so every replica signs with the same key) and are cached here as parsed
//! key pairs: parsing an RSA key validates it, which costs more than the signature itself.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::key_sealing::{open_private, reseal_signing_keys, seal_private, Reseal};
use super::random::{b64url, random_value};
use super::seal::{Sealer, CRYPT_KEY_ENV};
use crate::clock::{Clock, UnixTime};
use crate::config::Config;
use crate::store::{Store, StoredPrivateKey, StoredSigningKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SigningAlgorithm {
    #[default]
    RS256,
    ES256,
}

impl SigningAlgorithm {
    pub const ALL: [SigningAlgorithm; 2] = [SigningAlgorithm::RS256, SigningAlgorithm::ES256];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::ES256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Self::RS256),
            "ES256" => Some(Self::ES256),
            _ => None,
        }
    }
}

enum KeyMaterial {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlgorithm,
    material: KeyMaterial,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

impl SigningKey {
    /// A fresh key and its PKCS#8 encoding for storage.
    pub fn generate(alg: SigningAlgorithm) -> anyhow::Result<(Self, Vec<u8>)> {
        let pkcs8 = match alg {
            SigningAlgorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?,
            SigningAlgorithm::ES256 => EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| anyhow::anyhow!("EC key generation failed"))?,
        };
        // The kid is random rather than a thumbprint: it only has to be unique, and says nothing.
        let kid = random_value()[..16].to_string();
        let key = Self::from_pkcs8(kid, alg, &pkcs8)?;
        Ok((key, pkcs8))
    }

    pub fn from_pkcs8(kid: String, alg: SigningAlgorithm, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let material = match alg {
            SigningAlgorithm::RS256 => KeyMaterial::Rsa(
                RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| anyhow::anyhow!("stored RSA key {kid} is unusable: {e}"))?,
            ),
            SigningAlgorithm::ES256 => KeyMaterial::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|e| anyhow::anyhow!("stored EC key {kid} is unusable: {e}"))?,
            ),
        };
        Ok(Self { kid, alg, material })
    }

    /// The public half as a JWK (RFC 7517), as published at the JWKS endpoint.
    pub fn public_jwk(&self) -> serde_json::Value {
        match &self.material {
            KeyMaterial::Rsa(k) => {
                let public = k.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url(public.exponent().big_endian_without_leading_zero()),
                })
            }
            KeyMaterial::Ec(k) => {
                // Uncompressed SEC1 point: 0x04 || x || y.
                let point = k.public_key().as_ref();
                json!({
                    "kty": "EC", "use": "sig", "alg": "ES256", "kid": self.kid, "crv": "P-256",
                    "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
                })
            }
        }
    }

    /// A JWS in compact serialisation (RFC 7515 §7.1) over the JSON claims.
    pub fn sign_jwt<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let header = json!({ "alg": self.alg.as_str(), "kid": self.kid, "typ": "JWT" });
        let mut jwt = b64url(&serde_json::to_vec(&header)?);
        jwt.push('.');
        jwt.push_str(&b64url(&serde_json::to_vec(claims)?));
        let sig = match &self.material {
            KeyMaterial::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &SystemRandom::new(), jwt.as_bytes(), &mut sig)
                    .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
                sig
            }
            KeyMaterial::Ec(k) => k
                .sign(&SystemRandom::new(), jwt.as_bytes())
                .map_err(|_| anyhow::anyhow!("EC signing failed"))?
                .as_ref()
                .to_vec(),
        };
        jwt.push('.');
        jwt.push_str(&b64url(&sig));
        Ok(jwt)
    }

    fn verify(&self, signing_input: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Rsa(k) => {
                UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, k.public_key().as_ref())
                    .verify(signing_input, sig)
                    .is_ok()
            }
            KeyMaterial::Ec(k) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, k.public_key().as_ref())
                .verify(signing_input, sig)
                .is_ok(),
        }
    }
}

/// The keys in force at one moment: one active signer per algorithm, every key still published,
/// and the retired keys that no longer are but still vouch for what they signed.
pub struct Keyring {
    active: HashMap<SigningAlgorithm, Arc<SigningKey>>,
    published: Vec<Arc<SigningKey>>,
    /// Out of the JWKS (every ID token they signed has expired), yet a session they signed for
    /// may still be alive, and its RP may send their ID token back as a logout hint.
    retired: Vec<Arc<SigningKey>>,
    jwks: serde_json::Value,
}

impl Keyring {
    pub fn signer(&self, alg: SigningAlgorithm) -> Option<&Arc<SigningKey>> {
        self.active.get(&alg)
    }

    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Verifies one of our own JWTs (e.g. an `id_token_hint`) with any key that may have signed
    /// one still in use, published or retired, and returns its claims; expiry is the caller's
    /// business because a logout hint may legitimately be expired.
    pub fn verify_own_jwt(&self, jwt: &str) -> Option<serde_json::Value> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let mut parts = jwt.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let kid = header.get("kid")?.as_str()?;
        let alg = SigningAlgorithm::parse(header.get("alg")?.as_str()?)?;
        let key = self.published.iter().chain(&self.retired).find(|k| k.kid == kid && k.alg == alg)?;
        let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
        let signing_input = &jwt.as_bytes()[..h.len() + 1 + p.len()];
        if !key.verify(signing_input, &sig) {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
    }

    fn build(stored: Vec<StoredSigningKey>, now: UnixTime, sealer: Option<&Sealer>) -> anyhow::Result<Self> {
        let (mut active, mut published, mut retired) = (HashMap::new(), Vec::new(), Vec::new());
        // Newest first, so the first unrotated key of an algorithm is the active one.
        let mut stored = stored;
        stored.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        for s in stored {
            if !still_trusted(&s, now) {
                continue;
            }
            let is_published = s.expires_at.is_none_or(|e| e > now);
            let pkcs8 = open_private(sealer, &s)?;
            let key = Arc::new(SigningKey::from_pkcs8(s.kid, s.alg, &pkcs8)?);
            if s.rotated_at.is_none() {
                active.entry(key.alg).or_insert_with(|| key.clone());
            }
            if is_published {
                published.push(key);
            } else {
                retired.push(key);
            }
        }
        let jwks = json!({ "keys": published.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() });
        Ok(Self { active, published, retired, jwks })
    }
}

/// Published, or retired but still verifying what it signed.
fn still_trusted(key: &StoredSigningKey, now: UnixTime) -> bool {
    key.expires_at.is_none_or(|e| e > now) || key.verify_until.is_some_and(|v| v > now)
}

/// How long a rotated-out key is kept, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retirement {
    /// In the JWKS: a little longer than the ID tokens it signed live.
    pub published_for: i64,
    /// Still verifying our own tokens handed back to us (a logout's `id_token_hint`): as long as a
    /// session it signed for can be alive — a browser session, or a client's refresh-token grant
    /// (its last ID token from before the rotation is the one it sends at logout).
    pub verifies_for: i64,
}

impl Retirement {
    /// Leeway past a token's lifetime, for clocks and requests in flight.
    const SLACK: i64 = 300;

    pub fn for_config(config: &Config) -> Self {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
        let published_for = secs(config.tokens.id_token_lifetime) + Self::SLACK;
        let longest_session = secs(config.session.lifetime).max(secs(config.tokens.refresh_token_lifetime));
        Self { published_for, verifies_for: published_for.max(longest_session + Self::SLACK) }
    }
}

/// Owns the current [`Keyring`] and keeps it in step with the store.
pub struct KeyManager {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Seals the private keys at rest; without it they are stored in the clear.
    sealer: Option<Arc<Sealer>>,
    current: RwLock<Arc<Keyring>>,
}

impl KeyManager {
    /// Loads the stored keys, generating a key for any algorithm that has none (first start).
    /// With a keyring, keys still stored in the clear (by an older version) are sealed first.
    pub async fn load_or_init(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sealer: Option<Arc<Sealer>>,
    ) -> anyhow::Result<Self> {
        let now = clock.now();
        match sealer.as_deref() {
            Some(sealer) => {
                let report = reseal_signing_keys(store.as_ref(), sealer, Reseal::PlainOnly).await?;
                if report.resealed > 0 {
                    tracing::info!(keys = report.resealed, "sealed the signing keys stored in the clear");
                }
            }
            None => tracing::warn!(
                "{CRYPT_KEY_ENV} is not set: the ID-token signing keys are stored unsealed, so anyone with a copy \
                 of the database can sign tokens; set it (`hubauth keys generate-crypt-key`)"
            ),
        }
        let stored = store.signing_keys().await?;
        // Refuse before generating anything: new keys beside unreadable ones would hide the problem.
        for key in stored.iter().filter(|k| still_trusted(k, now)) {
            open_private(sealer.as_deref(), key)?;
        }
        for alg in SigningAlgorithm::ALL {
            let has_active =
                stored.iter().any(|k| k.alg == alg && k.rotated_at.is_none() && k.expires_at.is_none_or(|e| e > now));
            if !has_active {
                let (key, pkcs8) = SigningKey::generate(alg)?;
                let stored = StoredSigningKey {
                    private_key: seal_private(sealer.as_deref(), &key.kid, alg, &pkcs8)?,
                    kid: key.kid.clone(),
                    alg,
                    created_at: now,
                    rotated_at: None,
                    expires_at: None,
                    verify_until: None,
                };
                // Another replica starting at the same moment may have been first: then its key
                // is the one, and this one is dropped unused.
                if store.create_first_signing_key(&stored, now).await? {
                    tracing::info!(kid = %key.kid, alg = alg.as_str(), "generated a new signing key");
                }
            }
        }
        let ring = Keyring::build(store.signing_keys().await?, now, sealer.as_deref())?;
        Ok(Self { store, clock, sealer, current: RwLock::new(Arc::new(ring)) })
    }

    pub fn current(&self) -> Arc<Keyring> {
        self.current.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Re-reads the store, picking up rotations done by `hubauth keys rotate` or another replica.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let ring =
            Arc::new(Keyring::build(self.store.signing_keys().await?, self.clock.now(), self.sealer.as_deref())?);
        match self.current.write() {
            Ok(mut g) => *g = ring,
            Err(p) => *p.into_inner() = ring,
        }
        Ok(())
    }

    /// Replaces the active key of `alg`; the old one is kept as `retirement` says. The new key
    /// is sealed with `sealer`; without one, only while no stored key is sealed (a key in the
    /// clear beside sealed ones would undo them).
    pub async fn rotate(
        store: &dyn Store,
        now: UnixTime,
        alg: SigningAlgorithm,
        retirement: Retirement,
        sealer: Option<&Sealer>,
    ) -> anyhow::Result<String> {
        if sealer.is_none()
            && store.signing_keys().await?.iter().any(|k| matches!(k.private_key, StoredPrivateKey::Sealed(_)))
        {
            anyhow::bail!("the stored signing keys are sealed; set {CRYPT_KEY_ENV} so that the new key is sealed too");
        }
        let (key, pkcs8) = SigningKey::generate(alg)?;
        let private_key = seal_private(sealer, &key.kid, alg, &pkcs8)?;
        let verify_until = now + retirement.published_for.max(retirement.verifies_for);
        let new = StoredSigningKey {
            kid: key.kid.clone(),
            alg,
            private_key,
            created_at: now,
            rotated_at: None,
            expires_at: None,
            verify_until: None,
        };
        store.rotate_signing_key(&new, now, now + retirement.published_for, verify_until).await?;
        Ok(key.kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring_with(keys: &[(&SigningKey, &[u8])]) -> Keyring {
        let stored = keys
            .iter()
            .enumerate()
            .map(|(i, (k, der))| StoredSigningKey {
                kid: k.kid.clone(),
                alg: k.alg,
                private_key: StoredPrivateKey::Plain(der.to_vec()),
                created_at: i as i64,
                rotated_at: None,
                expires_at: None,
                verify_until: None,
            })
            .collect();
        Keyring::build(stored, 100, None).unwrap()
    }

    #[test]
    fn signed_jwts_verify_and_tampering_is_detected() {
        for alg in SigningAlgorithm::ALL {
            let (key, der) = SigningKey::generate(alg).unwrap();
            let ring = keyring_with(&[(&key, &der)]);
            let jwt = key.sign_jwt(&json!({"sub": "x"})).unwrap();
            assert_eq!(ring.verify_own_jwt(&jwt).unwrap()["sub"], "x");
            let mut tampered = jwt.clone();
            tampered.replace_range(jwt.len() - 5..jwt.len() - 4, if jwt.ends_with('A') { "B" } else { "A" });
            let forged = format!(
                "{}.{}.{}",
                jwt.split('.').next().unwrap(),
                b64url(br#"{"sub":"y"}"#),
                jwt.split('.').nth(2).unwrap()
            );
            assert!(ring.verify_own_jwt(&forged).is_none());
            assert!(ring.verify_own_jwt("a.b").is_none());
            assert!(ring.verify_own_jwt("").is_none());
        }
    }

    #[test]
    fn a_retired_key_verifies_after_leaving_the_jwks_until_its_sessions_are_over() {
        let (old, der) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
        let hint = old.sign_jwt(&json!({"sub": "x"})).unwrap();
        let retired = |now| {
            let stored = StoredSigningKey {
                kid: old.kid.clone(),
                alg: old.alg,
                private_key: StoredPrivateKey::Plain(der.clone()),
                created_at: 0,
                rotated_at: Some(10),
                expires_at: Some(50),
                verify_until: Some(500),
            };
            Keyring::build(vec![stored], now, None).unwrap()
        };
        let published = retired(40);
        assert_eq!(published.jwks()["keys"].as_array().unwrap().len(), 1);
        assert!(published.signer(SigningAlgorithm::ES256).is_none(), "a retired key never signs");
        let unpublished = retired(60);
        assert_eq!(unpublished.jwks()["keys"].as_array().unwrap().len(), 0);
        assert_eq!(unpublished.verify_own_jwt(&hint).unwrap()["sub"], "x");
        assert!(retired(500).verify_own_jwt(&hint).is_none(), "no session it signed for is left");
    }

    #[test]
    fn jwk_has_the_fields_clients_need() {
        let (rsa, _) = SigningKey::generate(SigningAlgorithm::RS256).unwrap();
        let jwk = rsa.public_jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["kid"], rsa.kid.as_str());
        let (ec, _) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
        let jwk = ec.public_jwk();
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
    }
}
