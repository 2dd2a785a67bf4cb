//! Random identifiers and bearer values, and the hashes under which bearer values are stored.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `N` bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source failed");
    bytes
}

/// aws-lc seeds its CSPRNG from CPU-jitter entropy on first use (≈ 45 ms of CPU on the machines
/// we measured): a server does that on a thread of its own at start, beside its first answers,
/// instead of inside its first sign-in.
pub fn warm_up() {
    let spawned = std::thread::Builder::new().name("hubauth-rng-warm-up".into()).spawn(|| {
        let _ = random_bytes::<1>();
    });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "no thread to warm up the random source; the first use does it");
    }
}

/// 256 bits from the system CSPRNG, base64url without padding.
pub fn random_value() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A bearer token: a short readable prefix (so leaked tokens are recognisable), an id that sorts
/// by time of issue, and 256 random bits. See [`token_key`] for why the id is there.
pub fn bearer_value(prefix: &str) -> String {
    format!("{prefix}_{:016x}{}", ordered_id(), random_value())
}

/// Strictly increasing within this process, and close to the microsecond clock.
fn ordered_id() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => prev = actual,
        }
    }
}

/// The storage key of a bearer value from [`bearer_value`]: its time-ordered id, then its hash.
/// Keys of tokens issued one after another sort next to each other, so storing a batch of new
/// tokens touches the last page of the index rather than one random page per token (what a
/// bare hash costs). The id only says when the token was issued; the hash is what matches.
/// Anything else (old or made-up values) gets its bare hash, which matches nothing issued now.
pub fn token_key(value: &str) -> String {
    if let Some((_, rest)) = value.split_once('_') {
        let id = rest.as_bytes().get(..16);
        if id.is_some_and(|id| id.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))) && rest.len() > 16 {
            return format!("{}.{}", &rest[..16], value_hash(value));
        }
    }
    value_hash(value)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_keys_sort_by_issue_and_still_depend_on_the_whole_token() {
        let a = bearer_value("hat");
        let b = bearer_value("hat");
        assert!(token_key(&a) < token_key(&b), "issued later, sorts later");
        assert_ne!(token_key(&a), token_key(&b));
        let mut forged = a.clone();
        forged.pop();
        forged.push(if a.ends_with('A') { 'B' } else { 'A' });
        assert_ne!(token_key(&a), token_key(&forged), "same id, different secret: different key");
        assert!(!token_key(&a).contains(&a[21..]), "the secret part is not in the key");
        for junk in ["", "_", "hat_", "hat_0123456789abcdef", "hat_XYZ", "hat_0123456789ABCDEFxx", "ünïcødé_ü"] {
            assert_eq!(token_key(junk), value_hash(junk), "{junk:?}");
        }
    }
}
