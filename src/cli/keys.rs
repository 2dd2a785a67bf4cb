//! `hubauth keys`: list and rotate ID-token signing keys; make keys for sealing them and the
//! upstream tokens at rest.

use std::path::PathBuf;

use clap::Subcommand;

use crate::clock::{Clock, SystemClock};
use crate::crypto::key_sealing::{reseal_signing_keys, Reseal};
use crate::crypto::keys::{KeyManager, Retirement};
use crate::crypto::SigningAlgorithm;
use crate::store::StoredPrivateKey;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the signing keys and their state.
    List {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
    /// Replace the active key(s). The old public key stays in the JWKS until every token it
    /// signed has expired; running servers pick the new key up within 30 seconds.
    Rotate {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
        /// RS256 or ES256; both when omitted.
        #[arg(long)]
        alg: Option<String>,
    },
    /// Print a new random key for HUBAUTH_CRYPT_KEY (which seals signing keys and upstream tokens
    /// at rest).
    /// To rotate, put the new key first: HUBAUTH_CRYPT_KEY="NEW;OLD".
    GenerateCryptKey,
    /// Re-encrypt every stored signing key and upstream token under the first key of
    /// HUBAUTH_CRYPT_KEY (sealing keys still stored in the clear), so the older keys can then be
    /// dropped from it.
    Reseal {
        #[arg(long, short, env = "HUBAUTH_CONFIG")]
        config: PathBuf,
    },
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Reseal { config } => {
            let config = super::load_config(&config)?;
            let sealer = crate::crypto::Sealer::from_env()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .ok_or_else(|| anyhow::anyhow!("{} is not set", crate::crypto::seal::CRYPT_KEY_ENV))?;
            let store = crate::app::open_store(&config).await?;
            let keys = reseal_signing_keys(store.as_ref(), &sealer, Reseal::All).await?;
            for kid in &keys.unreadable {
                eprintln!("cannot open signing key {kid} (sealed with a key not in the keyring)");
            }
            println!(
                "signing keys: {} re-sealed, {} already under the first key, {} unreadable",
                keys.resealed,
                keys.current,
                keys.unreadable.len()
            );
            let (mut resealed, mut current, mut unreadable) = (0, 0, 0);
            for (identity, username) in store.all_identities().await? {
                let Some(sealed) = &identity.tokens_sealed else { continue };
                if sealer.is_current(sealed) {
                    current += 1;
                    continue;
                }
                let context = crate::connectors::sealing::token_context(&identity.connector_id, &identity.subject);
                match sealer.open(&context, sealed) {
                    Ok(plain) => {
                        let fresh = sealer.seal(&context, &plain)?;
                        store
                            .update_upstream_tokens(
                                &identity.connector_id,
                                &identity.subject,
                                Some(&fresh),
                                identity.tokens_expire_at,
                            )
                            .await?;
                        resealed += 1;
                    }
                    Err(_) => {
                        eprintln!(
                            "cannot open the tokens of {username} at {} (sealed with a key not in the keyring)",
                            identity.connector_id
                        );
                        unreadable += 1;
                    }
                }
            }
            println!(
                "upstream tokens: {resealed} re-sealed, {current} already under the first key, {unreadable} unreadable"
            );
            let unreadable = unreadable + keys.unreadable.len();
            if unreadable > 0 {
                anyhow::bail!("{unreadable} record(s) could not be opened; keep their key in the keyring or let those people sign in again");
            }
            Ok(())
        }
        KeysCommand::GenerateCryptKey => {
            println!("{}", crate::crypto::Sealer::generate_key());
            Ok(())
        }
        KeysCommand::List { config } => {
            let config = super::load_config(&config)?;
            let store = crate::app::open_store(&config).await?;
            let now = SystemClock.now();
            println!("{:<18} {:<6} {:<10} {:>12}  AT REST", "KID", "ALG", "STATE", "CREATED");
            for k in store.signing_keys().await? {
                let at_rest = match k.private_key {
                    StoredPrivateKey::Sealed(_) => "sealed",
                    StoredPrivateKey::Plain(_) => "in the clear",
                };
                let state = match (k.rotated_at, k.expires_at, k.verify_until) {
                    (None, _, _) => "active".to_string(),
                    (Some(_), Some(e), _) if e > now => format!("published until {e}"),
                    (Some(_), _, Some(v)) if v > now => format!("retired; checks logout hints until {v}"),
                    _ => "expired".to_string(),
                };
                println!("{:<18} {:<6} {:<10} {:>12}  {at_rest}", k.kid, k.alg.as_str(), state, k.created_at);
            }
            Ok(())
        }
        KeysCommand::Rotate { config, alg } => {
            let config = super::load_config(&config)?;
            let algs: Vec<SigningAlgorithm> = match alg.as_deref() {
                None => SigningAlgorithm::ALL.to_vec(),
                Some(a) => vec![SigningAlgorithm::parse(a)
                    .ok_or_else(|| anyhow::anyhow!("unknown algorithm {a:?}; use RS256 or ES256"))?],
            };
            let sealer = crate::crypto::Sealer::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = crate::app::open_store(&config).await?;
            let retirement = Retirement::for_config(&config);
            for alg in algs {
                let kid =
                    KeyManager::rotate(store.as_ref(), SystemClock.now(), alg, retirement, sealer.as_ref()).await?;
                println!(
                    "{}: new active key {kid}; the previous key stays published for {} s and checks logout hints for {} s",
                    alg.as_str(),
                    retirement.published_for,
                    retirement.verifies_for
                );
            }
            Ok(())
        }
    }
}
