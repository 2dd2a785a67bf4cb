//! Sealing values at rest (upstream tokens) with AES-256-GCM under a rotating keyring.
//!
//! The keyring comes from `HUBAUTH_CRYPT_KEY`: one or more 32-byte keys, hex (64 characters) or
//! base64, separated by `;`. The first key seals; every key opens — the rotation model of
//! JupyterHub's `JUPYTERHUB_CRYPT_KEY`. A sealed value names the key that sealed it (the first
//! bytes of the key's SHA-256), carries a random nonce, and is bound to the row it belongs to by
//! associated data, so a sealed value copied to another row does not open.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use super::random::sha256;

pub const CRYPT_KEY_ENV: &str = "HUBAUTH_CRYPT_KEY";
const VERSION: &str = "v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("{CRYPT_KEY_ENV} is not set")]
    NoKey,
    #[error("{CRYPT_KEY_ENV}: key {0} is not 32 bytes written as 64 hex characters or base64")]
    BadKey(usize),
    /// Wrong keys, a value changed or moved to another row: it does not open.
    #[error("a sealed value could not be opened (wrong key, or the value was altered or moved)")]
    CannotOpen,
    #[error("sealing failed")]
    Seal,
}

struct KeyEntry {
    id: String,
    key: RandomizedNonceKey,
}

/// The keys that seal and open. The first seals.
pub struct Sealer {
    keys: Vec<KeyEntry>,
    /// The first key, as HKDF input for keys that serve other purposes ([`Sealer::derive_key`]).
    derive: hkdf::Prk,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("key_ids", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>()).finish()
    }
}

fn decode_key(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()).collect();
    }
    STANDARD.decode(text).ok().or_else(|| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
}

impl Sealer {
    /// Parses a keyring such as `HUBAUTH_CRYPT_KEY` holds.
    pub fn from_keyring(keyring: &str) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        let mut derive = None;
        for (i, part) in keyring.split(';').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
            let bytes = decode_key(part).filter(|b| b.len() == 32).ok_or(SealError::BadKey(i + 1))?;
            derive.get_or_insert_with(|| hkdf::Salt::new(hkdf::HKDF_SHA256, b"hubauth derived keys").extract(&bytes));
            let id = hex_prefix(&sha256(&bytes));
            let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey(i + 1))?;
            keys.push(KeyEntry { id, key });
        }
        match derive {
            Some(derive) => Ok(Self { keys, derive }),
            None => Err(SealError::NoKey),
        }
    }

    /// A 32-byte key for `purpose` (HKDF-SHA-256 of the sealing key): the same in every process
    /// given the same `HUBAUTH_CRYPT_KEY`, and of no use for opening sealed values.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        // 32 bytes is the digest length, always a valid HKDF output.
        let info = [purpose.as_bytes()];
        let okm = self.derive.expand(&info, hkdf::HKDF_SHA256).expect("a valid HKDF length");
        okm.fill(&mut key).expect("a valid HKDF length");
        key
    }

    /// From the environment, or `None` when `HUBAUTH_CRYPT_KEY` is unset or empty.
    pub fn from_env() -> Result<Option<Self>, SealError> {
        match std::env::var(CRYPT_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::from_keyring(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A fresh random key, hex encoded, for `demo` and for operators (`hubauth keys generate-crypt-key`).
    pub fn generate_key() -> String {
        let bytes = super::random::random_bytes::<32>();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Seals `plaintext` for the row described by `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let entry = &self.keys[0];
        let mut data = plaintext.to_vec();
        let nonce = entry
            .key
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&data);
        Ok(format!("{VERSION}.{}.{}", entry.id, URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value sealed by any key of the ring for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SealError::CannotOpen);
        };
        let entry = self.keys.iter().find(|k| k.id == key_id).ok_or(SealError::CannotOpen)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealError::CannotOpen)?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::CannotOpen);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::CannotOpen)?;
        let mut data = ciphertext.to_vec();
        let plain = entry
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SealError::CannotOpen)?;
        Ok(plain.to_vec())
    }

    /// True when `sealed` was sealed by the current (first) key: nothing to re-seal.
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed.split('.').nth(1) == Some(self.keys[0].id.as_str())
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    #[test]
    fn derived_keys_follow_the_first_key_and_the_purpose() {
        let one = Sealer::from_keyring(K1).unwrap();
        let same = Sealer::from_keyring(&format!("{K1};{K2}")).unwrap();
        let other = Sealer::from_keyring(&format!("{K2};{K1}")).unwrap();
        assert_eq!(one.derive_key("a"), same.derive_key("a"), "another process with the same sealing key");
        assert_ne!(one.derive_key("a"), other.derive_key("a"));
        assert_ne!(one.derive_key("a"), one.derive_key("b"));
        assert_ne!(one.derive_key("a").to_vec(), decode_key(K1).unwrap(), "not the sealing key itself");
    }

    #[test]
    fn round_trip_and_context_binding() {
        let s = Sealer::from_keyring(K1).unwrap();
        let sealed = s.seal("upstream:u1:github", b"token").unwrap();
        assert!(!sealed.contains("token"));
        assert_eq!(s.open("upstream:u1:github", &sealed).unwrap(), b"token");
        assert_eq!(s.open("upstream:u2:github", &sealed), Err(SealError::CannotOpen), "moved to another row");
        assert_ne!(sealed, s.seal("upstream:u1:github", b"token").unwrap(), "fresh nonce every time");
    }

    #[test]
    fn wrong_key_fails_closed() {
        let sealed = Sealer::from_keyring(K1).unwrap().seal("c", b"x").unwrap();
        assert_eq!(Sealer::from_keyring(K2).unwrap().open("c", &sealed), Err(SealError::CannotOpen));
    }

    #[test]
    fn rotated_keyring_opens_old_values_and_seals_with_the_new_key() {
        let old = Sealer::from_keyring(K1).unwrap();
        let sealed = old.seal("c", b"x").unwrap();
        let rotated = Sealer::from_keyring(&format!("{K2};{K1}")).unwrap();
        assert_eq!(rotated.open("c", &sealed).unwrap(), b"x");
        assert!(!rotated.is_current(&sealed));
        let resealed = rotated.seal("c", b"x").unwrap();
        assert!(rotated.is_current(&resealed));
        assert_eq!(old.open("c", &resealed), Err(SealError::CannotOpen), "the old ring lacks the new key");
    }

    #[test]
    fn tampering_fails_closed() {
        let s = Sealer::from_keyring(K1).unwrap();
        let sealed = s.seal("c", b"secret value").unwrap();
        let (head, body) = sealed.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let tampered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&raw));
            assert_eq!(s.open("c", &tampered), Err(SealError::CannotOpen), "byte {i} flipped");
            raw[i] ^= 1;
        }
        for junk in ["", "v1", "v1.x.y", "v2.abcd.AAAA", &sealed[..sealed.len() - 4]] {
            assert_eq!(s.open("c", junk), Err(SealError::CannotOpen), "{junk:?}");
        }
    }

    #[test]
    fn keyrings_parse_hex_and_base64_and_reject_bad_keys() {
        let b64 = STANDARD.encode([7u8; 32]);
        assert!(Sealer::from_keyring(&format!(" {K1} ; {b64} ")).is_ok());
        assert_eq!(Sealer::from_keyring("").unwrap_err(), SealError::NoKey);
        assert_eq!(Sealer::from_keyring("abcd").unwrap_err(), SealError::BadKey(1));
        assert_eq!(Sealer::from_keyring(&format!("{K1};short")).unwrap_err(), SealError::BadKey(2));
        assert_eq!(Sealer::from_keyring(&Sealer::generate_key()).map(|_| ()), Ok(()));
    }
}
