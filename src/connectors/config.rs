//! The config types of every connector, re-exported by `crate::config`.

use std::path::Path;

pub use super::canvas::CanvasConfig;
pub use super::github::GithubConfig;
pub use super::google::GoogleConfig;
pub use super::oauth2::OAuth2Config;
pub use super::oidc::OidcConfig;
use crate::config::{ConnectorConfig, SecretSource};

/// Every secret a connector's config names, with its key.
pub fn secrets_mut(c: &mut ConnectorConfig) -> Vec<(&'static str, &mut SecretSource)> {
    match c {
        ConnectorConfig::Dev(_) => vec![],
        ConnectorConfig::Oauth2(c) => vec![("client_secret", &mut c.client_secret)],
        ConnectorConfig::Oidc(c) => vec![("client_secret", &mut c.client_secret)],
        ConnectorConfig::Google(c) => vec![("client_secret", &mut c.client_secret)],
        ConnectorConfig::Canvas(c) => vec![("client_secret", &mut c.client_secret)],
        ConnectorConfig::Github(c) => {
            let mut all = vec![("client_secret", &mut c.client_secret)];
            if let Some(credential) = &mut c.organization_credential {
                all.push(("organization_credential", credential));
            }
            all
        }
    }
}

/// Makes a relative `client_secret = { file = … }` relative to the config file's folder.
pub fn anchor_secret_files(c: &mut ConnectorConfig, base_dir: &Path) {
    if let ConnectorConfig::Github(g) = c {
        if let Some(SecretSource::File { file }) = &mut g.organization_credential {
            if file.is_relative() {
                *file = base_dir.join(&*file);
            }
        }
    }
    let secret = match c {
        ConnectorConfig::Dev(_) => return,
        ConnectorConfig::Oauth2(c) => &mut c.client_secret,
        ConnectorConfig::Oidc(c) => &mut c.client_secret,
        ConnectorConfig::Google(c) => &mut c.client_secret,
        ConnectorConfig::Github(c) => &mut c.client_secret,
        ConnectorConfig::Canvas(c) => &mut c.client_secret,
    };
    if let SecretSource::File { file } = secret {
        if file.is_relative() {
            *file = base_dir.join(&*file);
        }
    }
}
