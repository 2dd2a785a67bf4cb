//! Random identifiers and bearer values, and the hashes under which bearer values are stored.

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `N` bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source failed");
    bytes
}

/// 256 bits from the system CSPRNG, base64url without padding.
pub fn random_value() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A bearer token: a short readable prefix (so leaked tokens are recognisable) and 256 random bits.
pub fn bearer_value(prefix: &str) -> String {
    format!("{prefix}_{}", random_value())
}

/// Bearer values are stored only as this hash, so a database dump cannot be replayed.
pub fn value_hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, value.as_bytes()))
}

/// PKCE S256 transform (RFC 7636 §4.2) and OIDC `at_hash` both start from SHA-256.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
