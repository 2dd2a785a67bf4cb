//! ID-token signing keys at rest: the private half sealed with the crypt keyring
//! (`HUBAUTH_CRYPT_KEY`, as upstream tokens are), bound to the key's kid and algorithm, so a copy
//! of the database, or a value moved to another row, yields no key.

use super::seal::{Sealer, CRYPT_KEY_ENV};
use super::SigningAlgorithm;
use crate::store::{Store, StoredPrivateKey, StoredSigningKey};

/// The associated data a signing key's sealed private half is bound to.
pub fn signing_key_context(kid: &str, alg: SigningAlgorithm) -> String {
    format!("hubauth/signing-key/v1\0{kid}\0{}", alg.as_str())
}

/// A new key's PKCS#8 as it is to be stored: sealed when there is a keyring.
pub fn seal_private(
    sealer: Option<&Sealer>,
    kid: &str,
    alg: SigningAlgorithm,
    pkcs8: &[u8],
) -> anyhow::Result<StoredPrivateKey> {
    Ok(match sealer {
        Some(sealer) => StoredPrivateKey::Sealed(sealer.seal(&signing_key_context(kid, alg), pkcs8)?),
        None => StoredPrivateKey::Plain(pkcs8.to_vec()),
    })
}

/// A stored key's PKCS#8.
pub fn open_private(sealer: Option<&Sealer>, key: &StoredSigningKey) -> anyhow::Result<Vec<u8>> {
    match &key.private_key {
        StoredPrivateKey::Plain(der) => Ok(der.clone()),
        StoredPrivateKey::Sealed(sealed) => {
            let sealer = sealer.ok_or_else(|| {
                anyhow::anyhow!(
                    "signing key {} is sealed and {CRYPT_KEY_ENV} is not set; set it to the keyring that sealed it",
                    key.kid
                )
            })?;
            sealer.open(&signing_key_context(&key.kid, key.alg), sealed).map_err(|e| {
                anyhow::anyhow!("signing key {}: {e}; {CRYPT_KEY_ENV} must hold the key that sealed it", key.kid)
            })
        }
    }
}

/// Which stored keys [`reseal_signing_keys`] re-seals under the first key of the keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reseal {
    /// Only keys kept in the clear (every start with a keyring: the upgrade path).
    PlainOnly,
    /// Also keys sealed with an older crypt key (`hubauth keys reseal`).
    All,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    pub resealed: usize,
    pub current: usize,
    /// Sealed with a key the keyring lacks: left as they are.
    pub unreadable: Vec<String>,
}

/// Seals (or re-seals) stored signing keys under the first key of `sealer`. The key itself, its
/// kid and so the JWKS stay the same.
pub async fn reseal_signing_keys(store: &dyn Store, sealer: &Sealer, which: Reseal) -> anyhow::Result<ResealReport> {
    let mut report = ResealReport::default();
    for key in store.signing_keys().await? {
        let due = match &key.private_key {
            StoredPrivateKey::Plain(_) => true,
            StoredPrivateKey::Sealed(sealed) => which == Reseal::All && !sealer.is_current(sealed),
        };
        if !due {
            report.current += 1;
            continue;
        }
        let Ok(pkcs8) = open_private(Some(sealer), &key) else {
            report.unreadable.push(key.kid);
            continue;
        };
        let sealed = seal_private(Some(sealer), &key.kid, key.alg, &pkcs8)?;
        store.replace_signing_key_private(&key.kid, &sealed).await?;
        report.resealed += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(kid: &str, alg: SigningAlgorithm, private_key: StoredPrivateKey) -> StoredSigningKey {
        StoredSigningKey {
            kid: kid.into(),
            alg,
            private_key,
            created_at: 0,
            rotated_at: None,
            expires_at: None,
            verify_until: None,
        }
    }

    #[test]
    fn a_sealed_key_opens_only_for_its_own_kid_and_algorithm() {
        let sealer = Sealer::from_keyring(&Sealer::generate_key()).unwrap();
        let sealed = seal_private(Some(&sealer), "k1", SigningAlgorithm::ES256, b"der").unwrap();
        let StoredPrivateKey::Sealed(text) = &sealed else { panic!("not sealed") };
        assert!(!text.contains("der"));
        assert_eq!(
            open_private(Some(&sealer), &stored("k1", SigningAlgorithm::ES256, sealed.clone())).unwrap(),
            b"der"
        );
        assert!(open_private(Some(&sealer), &stored("k2", SigningAlgorithm::ES256, sealed.clone())).is_err());
        assert!(open_private(Some(&sealer), &stored("k1", SigningAlgorithm::RS256, sealed.clone())).is_err());
        let err = open_private(None, &stored("k1", SigningAlgorithm::ES256, sealed)).unwrap_err();
        assert!(err.to_string().contains(CRYPT_KEY_ENV), "{err}");
    }

    #[test]
    fn without_a_keyring_keys_stay_in_the_clear() {
        let plain = seal_private(None, "k1", SigningAlgorithm::RS256, b"der").unwrap();
        assert!(plain == StoredPrivateKey::Plain(b"der".to_vec()));
        assert_eq!(open_private(None, &stored("k1", SigningAlgorithm::RS256, plain)).unwrap(), b"der");
    }
}
