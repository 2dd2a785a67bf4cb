//! `oauth2`: any OAuth 2.0 provider with a user-data endpoint (Keycloak without OIDC discovery,
//! in-house servers). Config keys follow OAuthenticator's `GenericOAuthenticator`, so an existing
//! `jupyterhub_config.py` ports one to one (`username_key` is accepted for `username_claim`).
//!
//! Also home of [`OAuthClient`], the authorization-code + PKCE + refresh machinery the other
//! redirect connectors share.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;

use super::http::{Auth, ClientAuthMethod, ClientCredentials, UpstreamHttp};
use super::{
    claim_string, claim_strings, same_account, ConnectorError, LoginAttempt, Membership, RedirectConnector,
    UpstreamLogin, UpstreamTokens,
};
use crate::clock::UnixTime;
use crate::config::SecretSource;
use crate::crypto::random::{b64url, sha256};
use crate::crypto::Secret;
use crate::store::UpstreamIdentity;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    pub client_id: String,
    pub client_secret: SecretSource,
    pub authorize_url: String,
    pub token_url: String,
    pub userdata_url: String,
    #[serde(default)]
    pub scope: Vec<String>,
    /// Dot path of the username in the user data (OAuthenticator: `username_claim`).
    #[serde(default = "default_username_claim", alias = "username_key")]
    pub username_claim: String,
    /// Dot path of the stable account id; defaults to `sub`, then `id`, then the username.
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Dot path of a list of group names (OAuthenticator: `claim_groups_key`).
    #[serde(default, alias = "claim_groups_key")]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    /// OAuthenticator's `basic_auth`: send the client secret with HTTP Basic (default) or in the
    /// form body (`false`).
    #[serde(default)]
    pub basic_auth: Option<bool>,
    /// Send a PKCE challenge (default true; turn off only for providers that reject it).
    #[serde(default = "yes")]
    pub pkce: bool,
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn yes() -> bool {
    true
}

/// The authorization-code flow against one upstream, with PKCE S256 and refresh.
pub struct OAuthClient {
    pub http: UpstreamHttp,
    pub credentials: ClientCredentials,
    pub authorize_url: url::Url,
    pub token_url: String,
    pub scope: Vec<String>,
    pub extra_authorize_params: BTreeMap<String, String>,
    pub pkce: bool,
}

/// An http(s) URL; plain http is accepted (seed configs use it inside clusters) with a warning
/// printed by `check-config`.
pub fn parse_url(field: &'static str, value: &str) -> Result<url::Url, (&'static str, String)> {
    let url = url::Url::parse(value).map_err(|e| (field, format!("{value:?} is not an absolute URL ({e})")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            if !is_loopback(&url) {
                // The parsed URL, not `value`: discovery documents are upstream text, and parsing
                // drops the line breaks a raw value could carry into the log.
                tracing::warn!(field, %url, "upstream URL uses plain http: tokens cross the network unencrypted");
            }
            Ok(url)
        }
        other => Err((field, format!("scheme {other:?} is not allowed; use https"))),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub fn resolve_secret(field: &'static str, source: &SecretSource) -> Result<Secret, (&'static str, String)> {
    crate::config::resolve_secret(source).map_err(|m| (field, m))
}

impl OAuthClient {
    pub fn authorization_url(&self, attempt: &LoginAttempt, extra: &[(&str, &str)]) -> String {
        let mut url = self.authorize_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &self.credentials.id);
            q.append_pair("redirect_uri", &attempt.redirect_uri);
            if !self.scope.is_empty() {
                q.append_pair("scope", &self.scope.join(" "));
            }
            q.append_pair("state", &attempt.state);
            if self.pkce {
                q.append_pair("code_challenge", &b64url(&sha256(attempt.pkce_verifier.as_bytes())));
                q.append_pair("code_challenge_method", "S256");
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
            for (k, v) in &self.extra_authorize_params {
                q.append_pair(k, v);
            }
        }
        url.to_string()
    }

    /// The tokens for a callback's `code`.
    pub async fn exchange_code(
        &self,
        attempt: &LoginAttempt,
        code: &str,
        now: UnixTime,
    ) -> Result<UpstreamTokens, ConnectorError> {
        let mut form =
            vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &attempt.redirect_uri)];
        if self.pkce {
            form.push(("code_verifier", &attempt.pkce_verifier));
        }
        self.http
            .token_request(&self.token_url, &self.credentials, &form)
            .await
            .map_err(|e| match e {
                // A refused code at login is not an ended session: say what it is.
                ConnectorError::SessionEnded(text) => {
                    ConnectorError::failed(format!("the provider did not accept the sign-in code ({text})"))
                }
                other => other,
            })
            .map(|answer| answer.into_tokens(now, None))
    }

    /// New tokens from the refresh token in `tokens` (kept when the provider issues none).
    pub async fn refresh(&self, tokens: &UpstreamTokens, now: UnixTime) -> Result<UpstreamTokens, ConnectorError> {
        let Some(refresh_token) = &tokens.refresh_token else {
            return Err(ConnectorError::SessionEnded("the provider gave no refresh token".into()));
        };
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose())];
        let answer = self.http.token_request(&self.token_url, &self.credentials, &form).await?;
        Ok(answer.into_tokens(now, Some(refresh_token)))
    }
}

pub struct OAuth2Connector {
    id: String,
    oauth: OAuthClient,
    userdata_url: String,
    username_claim: String,
    subject_claim: Option<String>,
    groups_claim: Option<String>,
}

impl OAuth2Connector {
    pub fn new(cfg: &OAuth2Config, http: &UpstreamHttp) -> Result<Self, (&'static str, String)> {
        let secret = resolve_secret("client_secret", &cfg.client_secret)?;
        let authorize_url = parse_url("authorize_url", &cfg.authorize_url)?;
        parse_url("token_url", &cfg.token_url)?;
        parse_url("userdata_url", &cfg.userdata_url)?;
        let method = if cfg.basic_auth == Some(false) { ClientAuthMethod::Post } else { ClientAuthMethod::Basic };
        Ok(Self {
            id: cfg.id.clone(),
            oauth: OAuthClient {
                http: http.clone(),
                credentials: ClientCredentials { id: cfg.client_id.clone(), secret, method },
                authorize_url,
                token_url: cfg.token_url.clone(),
                scope: cfg.scope.clone(),
                extra_authorize_params: cfg.extra_authorize_params.clone(),
                pkce: cfg.pkce,
            },
            userdata_url: cfg.userdata_url.clone(),
            username_claim: cfg.username_claim.clone(),
            subject_claim: cfg.subject_claim.clone(),
            groups_claim: cfg.groups_claim.clone(),
        })
    }

    async fn read_user(&self, tokens: UpstreamTokens) -> Result<UpstreamLogin, ConnectorError> {
        let answer = self.oauth.http.get(&self.userdata_url, Auth::Bearer(tokens.access_token.expose()), &[]).await?;
        let data: serde_json::Value = answer.json("user data")?;
        identity_from_claims(
            &self.id,
            &data,
            &self.username_claim,
            self.subject_claim.as_deref(),
            self.groups_claim.as_deref(),
            tokens,
        )
    }
}

/// The identity in a bag of claims (user data, or merged ID token + userinfo).
pub fn identity_from_claims(
    connector_id: &str,
    claims: &serde_json::Value,
    username_claim: &str,
    subject_claim: Option<&str>,
    groups_claim: Option<&str>,
    tokens: UpstreamTokens,
) -> Result<UpstreamLogin, ConnectorError> {
    let username = claim_string(claims, username_claim).ok_or_else(|| {
        ConnectorError::failed(format!("the provider's user data has no `{username_claim}` to use as the username"))
    })?;
    let subject = match subject_claim {
        Some(path) => claim_string(claims, path)
            .ok_or_else(|| ConnectorError::failed(format!("the provider's user data has no `{path}`")))?,
        None => claim_string(claims, "sub").or_else(|| claim_string(claims, "id")).unwrap_or_else(|| username.clone()),
    };
    let memberships: Vec<Membership> = groups_claim
        .map(|path| claim_strings(claims, path).into_iter().map(|value| Membership::Claim { value }).collect())
        .unwrap_or_default();
    let groups = memberships
        .iter()
        .filter_map(|m| match m {
            Membership::Claim { value } => Some(value.clone()),
            _ => None,
        })
        .collect();
    Ok(UpstreamLogin {
        identity: UpstreamIdentity {
            connector_id: connector_id.to_string(),
            subject,
            username,
            name: claim_string(claims, "name"),
            email: claim_string(claims, "email"),
            email_verified: claims.get("email_verified").and_then(|v| v.as_bool()).unwrap_or(false),
            groups,
        },
        memberships,
        tokens,
    })
}

#[async_trait]
impl RedirectConnector for OAuth2Connector {
    async fn authorization_url(&self, attempt: &LoginAttempt) -> Result<String, ConnectorError> {
        Ok(self.oauth.authorization_url(attempt, &[]))
    }

    async fn complete(
        &self,
        attempt: &LoginAttempt,
        code: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let tokens = self.oauth.exchange_code(attempt, code, now).await?;
        self.read_user(tokens).await
    }

    async fn refresh(
        &self,
        tokens: &UpstreamTokens,
        subject: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let fresh = self.oauth.refresh(tokens, now).await?;
        same_account(self.read_user(fresh).await?, subject)
    }
}
