//! `google`: OpenID Connect to Google, with the Workspace domain (`hosted_domain`) enforced from
//! the verified `hd` claim of the ID token — never from what the browser sent — and a verified
//! e-mail address required.

use async_trait::async_trait;
use serde::Deserialize;

use super::http::{ClientAuthMethod, UpstreamHttp};
use super::oauth2::resolve_secret;
use super::oidc::{OidcConnector, OidcSettings};
use super::{ConnectorError, LoginAttempt, RedirectConnector, UpstreamLogin, UpstreamTokens};
use crate::clock::UnixTime;
use crate::config::SecretSource;

const GOOGLE_ISSUER: &str = "https://accounts.google.com";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    pub client_id: String,
    pub client_secret: SecretSource,
    /// Workspace domains whose accounts may sign in; empty = any Google account.
    #[serde(default)]
    pub hosted_domain: Vec<String>,
    /// `email` (default) or e.g. `sub`.
    #[serde(default = "default_username_claim", alias = "username_key")]
    pub username_claim: String,
    #[serde(default = "default_scope")]
    pub scope: Vec<String>,
    /// For tests against a stand-in provider; Google's own issuer by default.
    #[serde(default)]
    pub issuer: Option<String>,
}

fn default_username_claim() -> String {
    "email".into()
}
fn default_scope() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

pub struct GoogleConnector {
    oidc: OidcConnector,
    hosted_domains: Vec<String>,
}

impl GoogleConnector {
    pub fn new(cfg: &GoogleConfig, http: &UpstreamHttp) -> Result<Self, (&'static str, String)> {
        let hosted_domains: Vec<String> = cfg.hosted_domain.iter().map(|d| d.trim().to_ascii_lowercase()).collect();
        if hosted_domains.iter().any(|d| d.is_empty() || d.contains('@')) {
            return Err(("hosted_domain", "list domain names such as \"example.edu\"".into()));
        }
        let mut extra_authorize_params = std::collections::BTreeMap::new();
        // A hint for Google's account picker; the check that counts is on the ID token below.
        if let [only] = hosted_domains.as_slice() {
            extra_authorize_params.insert("hd".into(), only.clone());
        }
        let issuer = cfg.issuer.clone().unwrap_or_else(|| GOOGLE_ISSUER.into());
        let settings = OidcSettings {
            id: cfg.id.clone(),
            // Google writes `iss` either way (its docs say so).
            issuer_aliases: if issuer == GOOGLE_ISSUER { vec!["accounts.google.com".into()] } else { vec![] },
            issuer,
            client_id: cfg.client_id.clone(),
            client_secret: resolve_secret("client_secret", &cfg.client_secret)?,
            method: ClientAuthMethod::Post,
            scope: cfg.scope.clone(),
            username_claim: cfg.username_claim.clone(),
            groups_claim: None,
            extra_authorize_params,
            userinfo: false,
        };
        Ok(Self { oidc: OidcConnector::with_settings(settings, http)?, hosted_domains })
    }

    fn check(&self, claims: &serde_json::Value) -> Result<(), ConnectorError> {
        if claims.get("email_verified").and_then(|v| v.as_bool()) != Some(true) {
            return Err(ConnectorError::Denied("this Google account's e-mail address is not verified".into()));
        }
        if !self.hosted_domains.is_empty() {
            let hd = claims.get("hd").and_then(|v| v.as_str()).map(str::to_ascii_lowercase);
            match hd {
                Some(hd) if self.hosted_domains.contains(&hd) => {}
                Some(hd) => {
                    return Err(ConnectorError::Denied(format!(
                        "accounts of {hd} cannot sign in here; use an account of {}",
                        self.hosted_domains.join(" or ")
                    )))
                }
                None => {
                    return Err(ConnectorError::Denied(format!(
                        "personal Google accounts cannot sign in here; use an account of {}",
                        self.hosted_domains.join(" or ")
                    )))
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RedirectConnector for GoogleConnector {
    async fn authorization_url(&self, attempt: &LoginAttempt) -> Result<String, ConnectorError> {
        // Google hands out a refresh token only with access_type=offline.
        self.oidc.authorization_url_with(attempt, &[("access_type", "offline"), ("prompt", "consent")]).await
    }

    async fn complete(
        &self,
        attempt: &LoginAttempt,
        code: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let (claims, tokens) = self.oidc.complete_claims(attempt, code, now).await?;
        self.check(&claims)?;
        self.oidc.login_from(&claims, tokens)
    }

    async fn refresh(
        &self,
        tokens: &UpstreamTokens,
        subject: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let (claims, fresh) = self.oidc.refresh_claims(tokens, subject, now).await?;
        // A refreshed ID token carries `hd` again; without one, the login's check still stands.
        if claims.get("email_verified").is_some() {
            self.check(&claims)?;
        }
        self.oidc.login_from(&claims, fresh)
    }
}
