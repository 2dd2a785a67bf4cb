//! `oidc`: any OpenID Connect provider (Keycloak, Google, Azure AD, another hubauth), configured
//! from its `issuer` by discovery. The ID token is verified in full — signature against the
//! provider's JWKS (cached as its `Cache-Control` says within bounds, fetched again when a token
//! names a key we have not seen: the provider rotated; see `jwks`),
//! `iss`, `aud`/`azp`, `exp`/`iat` with a small skew, and our `nonce` — and userinfo is merged in.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;

use super::http::{Auth, ClientAuthMethod, ClientCredentials, UpstreamHttp};
use super::jwks::{Pick, ProviderKeys};
use super::oauth2::{identity_from_claims, parse_url, resolve_secret, OAuthClient};
use super::{ConnectorError, LoginAttempt, RedirectConnector, UpstreamLogin, UpstreamTokens};
use crate::clock::UnixTime;
use crate::config::SecretSource;
use crate::crypto::Secret;

/// Clock difference tolerated between hubauth and the provider.
const SKEW: i64 = 120;
/// Discovery is re-read this often (providers change endpoints rarely; keys are handled apart).
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// A key id the cached JWKS lacks triggers a fetch at most this often (seconds), so a provider
/// that signs with a key it does not publish is not asked again at every login…
const JWKS_REFETCH_SAME_KID: i64 = 10;
/// …and unknown key ids, whichever they are, at most this often (a new one at the next second:
/// rotations, even two in a row, are followed on the next sign-in).
const JWKS_REFETCH_ANY_KID: i64 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    /// Exactly as the provider writes it in `iss` (discovery is at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretSource,
    #[serde(default = "default_scope")]
    pub scope: Vec<String>,
    #[serde(default = "default_username_claim", alias = "username_key")]
    pub username_claim: String,
    /// Dot path of the group list, e.g. `groups` or `realm_access.roles` (Keycloak).
    #[serde(default, alias = "claim_groups_key")]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    #[serde(default)]
    pub token_endpoint_auth: ClientAuthMethod,
    /// Merge the userinfo endpoint's claims into the ID token's (default true).
    #[serde(default = "yes")]
    pub userinfo: bool,
}

fn default_scope() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
}

struct Cached<T> {
    value: T,
    fetched: Instant,
}

/// What an OIDC login needs from the provider beyond the standard: Google's `hd` check, etc.
pub struct OidcSettings {
    pub id: String,
    pub issuer: String,
    /// Other `iss` spellings the provider is known to use (Google: `accounts.google.com`).
    pub issuer_aliases: Vec<String>,
    pub client_id: String,
    pub client_secret: Secret,
    pub method: ClientAuthMethod,
    pub scope: Vec<String>,
    pub username_claim: String,
    pub groups_claim: Option<String>,
    pub extra_authorize_params: BTreeMap<String, String>,
    pub userinfo: bool,
}

pub struct OidcConnector {
    settings: OidcSettings,
    http: UpstreamHttp,
    discovery: tokio::sync::Mutex<Option<Cached<Discovery>>>,
    jwks: tokio::sync::Mutex<Option<ProviderKeys>>,
    /// The key id the keys were last fetched again for (they lacked it), and when.
    last_refetch: Mutex<Option<(Option<String>, UnixTime)>>,
}

impl OidcConnector {
    pub fn new(cfg: &OidcConfig, http: &UpstreamHttp) -> Result<Self, (&'static str, String)> {
        let settings = OidcSettings {
            id: cfg.id.clone(),
            issuer: cfg.issuer.clone(),
            issuer_aliases: Vec::new(),
            client_id: cfg.client_id.clone(),
            client_secret: resolve_secret("client_secret", &cfg.client_secret)?,
            method: cfg.token_endpoint_auth,
            scope: cfg.scope.clone(),
            username_claim: cfg.username_claim.clone(),
            groups_claim: cfg.groups_claim.clone(),
            extra_authorize_params: cfg.extra_authorize_params.clone(),
            userinfo: cfg.userinfo,
        };
        Self::with_settings(settings, http)
    }

    pub fn with_settings(settings: OidcSettings, http: &UpstreamHttp) -> Result<Self, (&'static str, String)> {
        parse_url("issuer", &settings.issuer)?;
        if !settings.scope.iter().any(|s| s == "openid") {
            return Err(("scope", "must include \"openid\"".into()));
        }
        Ok(Self {
            settings,
            http: http.clone(),
            discovery: tokio::sync::Mutex::new(None),
            jwks: tokio::sync::Mutex::new(None),
            last_refetch: Mutex::new(None),
        })
    }

    async fn discovery(&self) -> Result<Discovery, ConnectorError> {
        let mut cached = self.discovery.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.fetched.elapsed() < DISCOVERY_TTL) {
            return Ok(c.value.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
        let doc: Discovery = self.http.get(&url, Auth::None, &[]).await?.json("the provider's discovery document")?;
        // OpenID Connect Discovery §4.3: the document must name the issuer we asked.
        if doc.issuer != self.settings.issuer {
            return Err(ConnectorError::failed(format!(
                "the discovery document names issuer {:?}, but hubauth is configured with {:?}",
                doc.issuer, self.settings.issuer
            )));
        }
        for (field, value) in [
            ("authorization_endpoint", Some(&doc.authorization_endpoint)),
            ("token_endpoint", Some(&doc.token_endpoint)),
            ("jwks_uri", Some(&doc.jwks_uri)),
            ("userinfo_endpoint", doc.userinfo_endpoint.as_ref()),
        ] {
            if let Some(v) = value {
                parse_url(field, v).map_err(|(_, m)| ConnectorError::failed(format!("discovery `{field}`: {m}")))?;
            }
        }
        *cached = Some(Cached { value: doc.clone(), fetched: Instant::now() });
        Ok(doc)
    }

    fn oauth(&self, d: &Discovery) -> Result<OAuthClient, ConnectorError> {
        Ok(OAuthClient {
            http: self.http.clone(),
            credentials: ClientCredentials {
                id: self.settings.client_id.clone(),
                secret: self.settings.client_secret.clone(),
                method: self.settings.method,
            },
            authorize_url: url::Url::parse(&d.authorization_endpoint)
                .map_err(|e| ConnectorError::failed(format!("bad authorization_endpoint: {e}")))?,
            token_url: d.token_endpoint.clone(),
            scope: self.settings.scope.clone(),
            extra_authorize_params: self.settings.extra_authorize_params.clone(),
            pkce: true,
        })
    }

    /// Fetches the provider's keys if none are cached yet (failures surface later, in `key_for`,
    /// which also fetches expired ones again).
    async fn warm_keys(&self, d: &Discovery, now: UnixTime) {
        let mut cached = self.jwks.lock().await;
        if cached.is_none() {
            if let Ok(fresh) = self.fetch_keys(d, now).await {
                *cached = Some(fresh);
            }
        }
    }

    async fn fetch_keys(&self, d: &Discovery, now: UnixTime) -> Result<ProviderKeys, ConnectorError> {
        let answer = self.http.get(&d.jwks_uri, Auth::None, &[]).await?;
        ProviderKeys::from_answer(&answer, now)
    }

    /// The key that verifies a token with this header. The cached keys are used while current;
    /// after that they are fetched again (never used stale: a key the provider withdrew must stop
    /// working). A key id they lack triggers a refetch (the provider rotated), rate-limited per
    /// key id and overall ([`JWKS_REFETCH_SAME_KID`], [`JWKS_REFETCH_ANY_KID`]).
    async fn key_for(&self, d: &Discovery, header: &Header, now: UnixTime) -> Result<DecodingKey, ConnectorError> {
        let mut cached = self.jwks.lock().await;
        let mut fetched_now = false;
        let keys = match cached.take().filter(|c| c.is_current(now)) {
            Some(keys) => keys,
            None => {
                fetched_now = true;
                self.fetch_keys(d, now).await?
            }
        };
        let keys = cached.insert(keys);
        match keys.pick(header) {
            Pick::Found(key) => return Ok(key),
            Pick::Unusable(why) => return Err(id_token_invalid(&why)),
            Pick::Missing => {}
        }
        let unknown = || ConnectorError::failed("the ID token is signed with a key the provider does not publish");
        if fetched_now {
            return Err(unknown());
        }
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            let kid = header.kid.clone();
            let too_soon = last.as_ref().is_some_and(|(last_kid, t)| {
                let limit = if *last_kid == kid { JWKS_REFETCH_SAME_KID } else { JWKS_REFETCH_ANY_KID };
                (0..limit).contains(&(now - t))
            });
            if too_soon {
                return Err(unknown());
            }
            *last = Some((kid, now));
        }
        *keys = self.fetch_keys(d, now).await?;
        match keys.pick(header) {
            Pick::Found(key) => Ok(key),
            Pick::Unusable(why) => Err(id_token_invalid(&why)),
            Pick::Missing => Err(unknown()),
        }
    }

    /// Verifies an ID token and returns its claims.
    async fn verify_id_token(
        &self,
        d: &Discovery,
        id_token: &str,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<serde_json::Value, ConnectorError> {
        let bad = id_token_invalid;
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| bad("it is not a signed JWT"))?;
        let allowed = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        if !allowed.contains(&header.alg) {
            return Err(bad(&format!("algorithm {:?} is not accepted", header.alg)));
        }
        let key = self.key_for(d, &header, now).await?;
        // Time and audience are checked below against hubauth's clock, with clear reasons.
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(id_token, &key, &validation)
            .map_err(|e| bad(&format!("signature check failed ({e})")))?;
        let claims = data.claims;
        let iss = claims.get("iss").and_then(|v| v.as_str()).unwrap_or("");
        if iss != self.settings.issuer && !self.settings.issuer_aliases.iter().any(|a| a == iss) {
            return Err(bad(&format!("issued by {iss:?}, expected {:?}", self.settings.issuer)));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => vec![],
        };
        if !audiences.contains(&self.settings.client_id.as_str()) {
            return Err(bad("it was issued to another client (aud)"));
        }
        // OIDC Core §3.1.3.7 items 4–5: a token for several audiences must name us as the party
        // it was issued to, and an `azp` that names another client is refused whatever `aud` says.
        match claims.get("azp").and_then(|v| v.as_str()) {
            Some(azp) if azp != self.settings.client_id => {
                return Err(bad("it was issued to another client (azp)"));
            }
            None if audiences.len() > 1 => {
                return Err(bad("it is for several audiences but names no authorized party (azp)"));
            }
            _ => {}
        }
        let exp = claims.get("exp").and_then(|v| v.as_i64()).ok_or_else(|| bad("no exp"))?;
        if exp + SKEW < now {
            return Err(bad("it has expired (check the clocks of hubauth and the provider)"));
        }
        let iat = claims.get("iat").and_then(|v| v.as_i64()).ok_or_else(|| bad("no iat"))?;
        if iat - SKEW > now {
            return Err(bad("it was issued in the future (check the clocks of hubauth and the provider)"));
        }
        if let Some(expected) = nonce {
            if claims.get("nonce").and_then(|v| v.as_str()) != Some(expected) {
                return Err(bad("the nonce does not match this sign-in"));
            }
        }
        if claims.get("sub").and_then(|v| v.as_str()).is_none_or(str::is_empty) {
            return Err(bad("no sub"));
        }
        Ok(claims)
    }

    /// ID token claims (verified) merged with userinfo; `sub` must agree (OIDC Core §5.3.2).
    async fn claims(
        &self,
        d: &Discovery,
        tokens: &UpstreamTokens,
        nonce: Option<&str>,
        previous_sub: Option<&str>,
        now: UnixTime,
    ) -> Result<serde_json::Value, ConnectorError> {
        let mut claims = match &tokens.id_token {
            Some(t) => self.verify_id_token(d, t.expose(), nonce, now).await?,
            None if previous_sub.is_some() => serde_json::json!({ "sub": previous_sub }),
            None => return Err(ConnectorError::failed("the provider returned no ID token (is `openid` in scope?)")),
        };
        if let Some(prev) = previous_sub {
            if claims.get("sub").and_then(|v| v.as_str()) != Some(prev) {
                return Err(ConnectorError::failed("the provider's refreshed ID token is for another account"));
            }
        }
        // Without a fresh ID token (a refresh answer need not carry one), userinfo is the only
        // current source of the profile.
        let want_userinfo = self.settings.userinfo || tokens.id_token.is_none();
        if let (true, Some(url)) = (want_userinfo, &d.userinfo_endpoint) {
            let info: serde_json::Value =
                self.http.get(url, Auth::Bearer(tokens.access_token.expose()), &[]).await?.json("userinfo")?;
            if info.get("sub") != claims.get("sub") {
                return Err(ConnectorError::failed("the provider's userinfo is about another account (sub differs)"));
            }
            if let (Some(target), Some(extra)) = (claims.as_object_mut(), info.as_object()) {
                for (k, v) in extra {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(claims)
    }

    /// The whole login from verified claims: for wrappers (Google) that add checks.
    pub async fn complete_claims(
        &self,
        attempt: &LoginAttempt,
        code: &str,
        now: UnixTime,
    ) -> Result<(serde_json::Value, UpstreamTokens), ConnectorError> {
        let d = self.discovery().await?;
        // On a cold cache, fetch the provider's keys while the code is exchanged, not after.
        let oauth = self.oauth(&d)?;
        let (answer, ()) = tokio::join!(oauth.exchange_code(attempt, code, now), self.warm_keys(&d, now));
        let tokens = answer?;
        let claims = self.claims(&d, &tokens, Some(&attempt.nonce), None, now).await?;
        Ok((claims, tokens))
    }

    pub async fn refresh_claims(
        &self,
        tokens: &UpstreamTokens,
        previous_sub: &str,
        now: UnixTime,
    ) -> Result<(serde_json::Value, UpstreamTokens), ConnectorError> {
        let d = self.discovery().await?;
        let fresh = self.oauth(&d)?.refresh(tokens, now).await?;
        // A refreshed ID token has no nonce (OIDC Core §12.2) and must be for the same `sub`.
        let claims = self.claims(&d, &fresh, None, Some(previous_sub), now).await?;
        Ok((claims, fresh))
    }

    pub fn login_from(
        &self,
        claims: &serde_json::Value,
        tokens: UpstreamTokens,
    ) -> Result<UpstreamLogin, ConnectorError> {
        identity_from_claims(
            &self.settings.id,
            claims,
            &self.settings.username_claim,
            Some("sub"),
            self.settings.groups_claim.as_deref(),
            tokens,
        )
    }

    pub async fn authorization_url_with(
        &self,
        attempt: &LoginAttempt,
        extra: &[(&str, &str)],
    ) -> Result<String, ConnectorError> {
        let d = self.discovery().await?;
        let mut params = vec![("nonce", attempt.nonce.as_str())];
        params.extend_from_slice(extra);
        Ok(self.oauth(&d)?.authorization_url(attempt, &params))
    }
}

#[async_trait]
impl RedirectConnector for OidcConnector {
    async fn authorization_url(&self, attempt: &LoginAttempt) -> Result<String, ConnectorError> {
        self.authorization_url_with(attempt, &[]).await
    }

    async fn complete(
        &self,
        attempt: &LoginAttempt,
        code: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let (claims, tokens) = self.complete_claims(attempt, code, now).await?;
        self.login_from(&claims, tokens)
    }

    async fn refresh(
        &self,
        tokens: &UpstreamTokens,
        subject: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let (claims, fresh) = self.refresh_claims(tokens, subject, now).await?;
        self.login_from(&claims, fresh)
    }
}

fn id_token_invalid(why: &str) -> ConnectorError {
    ConnectorError::failed(format!("the provider's ID token is not valid: {why}"))
}
