//! `github`: GitHub and GitHub Enterprise Server through an OAuth app (or a GitHub App's user
//! authorization, which works the same way). Config keys follow OAuthenticator's
//! `GitHubOAuthenticator` where one exists (`github_url`, `scope`, `username_claim`).
//!
//! A login exchanges the code at `{github_url}/login/oauth/access_token` (client secret in the
//! body, PKCE S256 — GitHub verifies it since 2025; GitHub answers refusals with 200 and an
//! `error` field, which the token request handles), then reads, with the person's token and all
//! at once:
//!
//! - `GET {api}/user`: `id` (the subject, never reused by GitHub), `login`, `name`;
//! - `GET {api}/user/emails`: the primary address and whether GitHub verified it (a token that may
//!   not read e-mail addresses falls back to the public one, unverified);
//! - `GET {api}/user/memberships/orgs`: organization memberships, active **and pending**
//!   (invited, not yet accepted), with the role;
//! - `GET {api}/user/teams`: teams of active memberships.
//!
//! Pending **team** invitations are invisible to the person's own token. With an
//! `organization_credential` (a token allowed to read the organizations' pending invitations:
//! an owner's token, or a GitHub App's with "Members: read"), hubauth looks up, for each of the
//! listed `organizations` the person is not an active member of, the invitation addressed to their
//! login or a verified address and the teams it will add them to.
//!
//! Every list is read to the end by its `Link` header, 100 items a page. Any list that cannot be
//! read (rate limited, refused, failing) fails the login with a clear error rather than leaving
//! the person with fewer groups than they have. Organizations that restrict OAuth app access and
//! have not approved this app are not shown to it by GitHub at all; approve the app there.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::http::{Answer, Auth, ClientAuthMethod, ClientCredentials, Timeouts, UpstreamHttp};
use super::oauth2::{parse_url, resolve_secret, OAuthClient};
use super::{
    claim_string, same_account, ConnectorError, LoginAttempt, Membership, MembershipState, RedirectConnector,
    UpstreamLogin, UpstreamTokens,
};
use crate::clock::UnixTime;
use crate::config::SecretSource;
use crate::crypto::Secret;
use crate::store::UpstreamIdentity;

const GITHUB_URL: &str = "https://github.com";
const GITHUB_API_URL: &str = "https://api.github.com";
/// Every REST call asks for GitHub's JSON media type and a pinned API version.
const API_HEADERS: [(&str, &str); 2] =
    [("Accept", "application/vnd.github+json"), ("X-GitHub-Api-Version", "2022-11-28")];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    pub client_id: String,
    pub client_secret: SecretSource,
    /// `https://github.com`, or a GitHub Enterprise Server such as `https://ghe.example.org`.
    #[serde(default = "default_github_url")]
    pub github_url: String,
    /// REST API root. Default: `https://api.github.com` for github.com, `{github_url}/api/v3`
    /// for GitHub Enterprise Server.
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default = "default_scope")]
    pub scope: Vec<String>,
    /// A field of `GET /user` (`login`, `id`, …) or `email` (the verified primary address).
    #[serde(default = "default_username_claim", alias = "username_key")]
    pub username_claim: String,
    /// A token that may read the pending invitations of `organizations` (an owner's token, or
    /// a GitHub App's with "Members: read"), to see pending team invitations.
    #[serde(default)]
    pub organization_credential: Option<SecretSource>,
    /// Organization logins whose pending invitations are looked up with `organization_credential`.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// Per-request timeout for GitHub (humantime, e.g. `"10s"`); default 15s.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn default_github_url() -> String {
    GITHUB_URL.into()
}
fn default_scope() -> Vec<String> {
    vec!["read:user".into(), "user:email".into(), "read:org".into()]
}
fn default_username_claim() -> String {
    "login".into()
}

/// The shared client, or one of its own when the connector sets a `timeout`.
pub(super) fn http_for(http: &UpstreamHttp, timeout: Option<Duration>) -> Result<UpstreamHttp, (&'static str, String)> {
    match timeout {
        None => Ok(http.clone()),
        Some(t) if t.is_zero() => Err(("timeout", "must be longer than zero".into())),
        Some(t) => http
            .with_timeouts(Timeouts { connect: t.min(Timeouts::default().connect), request: t })
            .map_err(|e| ("timeout", format!("cannot set up the HTTP client: {e}"))),
    }
}

pub struct GithubConnector {
    id: String,
    oauth: OAuthClient,
    /// REST API root, without a trailing slash.
    api: String,
    username_claim: String,
    org_credential: Option<Secret>,
    organizations: Vec<String>,
    /// Whether the configured scope asks for organization data (then it must be granted).
    wants_org_scope: bool,
}

/// The person as `GET /user` and `GET /user/emails` describe them.
struct Profile {
    user: Value,
    login: String,
    subject: String,
    email: Option<String>,
    email_verified: bool,
    verified_emails: Vec<String>,
}

fn is_org_login(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 39
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl GithubConnector {
    pub fn new(cfg: &GithubConfig, http: &UpstreamHttp) -> Result<Self, (&'static str, String)> {
        let secret = resolve_secret("client_secret", &cfg.client_secret)?;
        let github_url = parse_url("github_url", &cfg.github_url)?;
        if github_url.query().is_some() || github_url.fragment().is_some() {
            return Err(("github_url", "must not have a query or fragment".into()));
        }
        let base = github_url.as_str().trim_end_matches('/').to_string();
        let api = match &cfg.api_url {
            Some(api) => api.trim_end_matches('/').to_string(),
            None if github_url.host_str() == Some("github.com") => GITHUB_API_URL.into(),
            None => format!("{base}/api/v3"),
        };
        parse_url("api_url", &api)?;
        let authorize_url = parse_url("github_url", &format!("{base}/login/oauth/authorize"))?;
        if cfg.username_claim.trim().is_empty() {
            return Err(("username_claim", "must name a field of GitHub's user data, such as \"login\"".into()));
        }
        let org_credential =
            cfg.organization_credential.as_ref().map(|s| resolve_secret("organization_credential", s)).transpose()?;
        if let Some(bad) = cfg.organizations.iter().find(|o| !is_org_login(o)) {
            return Err(("organizations", format!("{bad:?} is not a GitHub organization login")));
        }
        match (&org_credential, cfg.organizations.is_empty()) {
            (Some(_), true) => {
                return Err((
                    "organizations",
                    "list the organizations whose pending invitations organization_credential may read".into(),
                ))
            }
            (None, false) => {
                return Err((
                    "organization_credential",
                    "is needed to look up pending invitations of `organizations`".into(),
                ))
            }
            _ => {}
        }
        let wants_org_scope = cfg.scope.iter().any(|s| matches!(s.as_str(), "read:org" | "write:org" | "admin:org"));
        Ok(Self {
            id: cfg.id.clone(),
            oauth: OAuthClient {
                http: http_for(http, cfg.timeout)?,
                credentials: ClientCredentials { id: cfg.client_id.clone(), secret, method: ClientAuthMethod::Post },
                authorize_url,
                token_url: format!("{base}/login/oauth/access_token"),
                scope: cfg.scope.clone(),
                extra_authorize_params: Default::default(),
                pkce: true,
            },
            api,
            username_claim: cfg.username_claim.clone(),
            org_credential,
            organizations: cfg.organizations.clone(),
            wants_org_scope,
        })
    }

    fn http(&self) -> &UpstreamHttp {
        &self.oauth.http
    }

    /// One whole list read with the person's token; a 401 means GitHub no longer accepts it.
    async fn list(&self, path: &str, token: &str) -> Result<Vec<Value>, ConnectorError> {
        let url = format!("{}{path}", self.api);
        match self
            .http()
            .get_all_pages_accepting(&url, Auth::Bearer(token), &API_HEADERS, &[StatusCode::UNAUTHORIZED])
            .await?
        {
            Ok(items) => Ok(items),
            Err(answer) => Err(token_refused(&answer)),
        }
    }

    async fn user(&self, token: &str) -> Result<Value, ConnectorError> {
        let url = format!("{}/user", self.api);
        let answer =
            self.http().get_accepting(&url, Auth::Bearer(token), &API_HEADERS, &[StatusCode::UNAUTHORIZED]).await?;
        if !answer.status.is_success() {
            return Err(token_refused(&answer));
        }
        answer.json("GitHub user data")
    }

    /// The person's addresses, or `None` when the token may not read them (a GitHub App without
    /// the "Email addresses" permission, a token without `user:email`).
    async fn emails(&self, token: &str) -> Result<Option<Vec<Value>>, ConnectorError> {
        let url = format!("{}/user/emails?per_page=100", self.api);
        let accept = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND];
        match self.http().get_all_pages_accepting(&url, Auth::Bearer(token), &API_HEADERS, &accept).await? {
            Ok(items) => Ok(Some(items)),
            Err(answer) if answer.status == StatusCode::UNAUTHORIZED => Err(token_refused(&answer)),
            Err(answer) => {
                tracing::warn!(
                    status = answer.status.as_u16(),
                    "GitHub did not let hubauth read the e-mail addresses (is user:email in scope?); using the public one"
                );
                Ok(None)
            }
        }
    }

    fn profile(&self, user: Value, emails: Option<Vec<Value>>) -> Result<Profile, ConnectorError> {
        let login = user
            .get("login")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| ConnectorError::failed("GitHub's user data has no login"))?
            .to_string();
        let subject =
            claim_string(&user, "id").ok_or_else(|| ConnectorError::failed("GitHub's user data has no id"))?;
        let (email, email_verified, verified_emails) = match emails {
            Some(list) => {
                let verified_emails: Vec<String> = list
                    .iter()
                    .filter(|e| e.get("verified").and_then(Value::as_bool) == Some(true))
                    .filter_map(|e| e.get("email").and_then(Value::as_str).map(str::to_string))
                    .collect();
                let primary = list.iter().find(|e| e.get("primary").and_then(Value::as_bool) == Some(true));
                match primary.and_then(|p| p.get("email").and_then(Value::as_str)) {
                    Some(address) => {
                        let verified = primary.and_then(|p| p.get("verified")).and_then(Value::as_bool) == Some(true);
                        (Some(address.to_string()), verified, verified_emails)
                    }
                    None => (None, false, verified_emails),
                }
            }
            None => (claim_string(&user, "email"), false, Vec::new()),
        };
        Ok(Profile { user, login, subject, email, email_verified, verified_emails })
    }

    /// Pending team invitations (and the pending organization membership they come with), read
    /// with the organization credential for the configured organizations the person is not an
    /// active member of.
    async fn pending_invitations(
        &self,
        profile: &Profile,
        memberships: &mut Vec<Membership>,
    ) -> Result<(), ConnectorError> {
        let Some(credential) = &self.org_credential else { return Ok(()) };
        let auth = Auth::Bearer(credential.expose());
        // Organizations are independent: look them all up at once.
        let lookups = self.organizations.iter().filter_map(|org| {
            let known = memberships.iter().find_map(|m| match m {
                Membership::GithubOrg { org: o, state, .. } if o.eq_ignore_ascii_case(org) => Some((o.clone(), *state)),
                _ => None,
            });
            // Members are added to teams directly; there is no invitation to find.
            (!matches!(known, Some((_, MembershipState::Active))))
                .then(|| self.invitation_of(org, known, profile, auth))
        });
        let found = futures_util::future::try_join_all(lookups).await?;
        for (listed, pending) in found.into_iter().flatten() {
            // The pending org membership comes first; skip it when the org is already listed.
            memberships.extend(pending.into_iter().skip(usize::from(listed)));
        }
        Ok(())
    }

    /// One organization's pending invitation of this person: (whether the org is already listed,
    /// [the pending org membership, then its pending teams]).
    async fn invitation_of(
        &self,
        org: &str,
        known: Option<(String, MembershipState)>,
        profile: &Profile,
        auth: Auth<'_>,
    ) -> Result<Option<(bool, Vec<Membership>)>, ConnectorError> {
        let refused = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND];
        let url = format!("{}/orgs/{org}/invitations?per_page=100", self.api);
        let invitations = self
            .http()
            .get_all_pages_accepting(&url, auth, &API_HEADERS, &refused)
            .await?
            .map_err(|answer| credential_refused(org, &answer))?;
        let mine = invitations.iter().find(|i| {
            let by_login =
                i.get("login").and_then(Value::as_str).is_some_and(|l| l.eq_ignore_ascii_case(&profile.login));
            let by_email = i
                .get("email")
                .and_then(Value::as_str)
                .is_some_and(|e| profile.verified_emails.iter().any(|v| v.eq_ignore_ascii_case(e)));
            by_login || by_email
        });
        let Some(invitation) = mine else { return Ok(None) };
        let id = claim_string(invitation, "id")
            .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ConnectorError::failed(format!("GitHub listed an invitation to {org} without an id")))?;
        let url = format!("{}/orgs/{org}/invitations/{id}/teams?per_page=100", self.api);
        let teams = self
            .http()
            .get_all_pages_accepting(&url, auth, &API_HEADERS, &refused)
            .await?
            .map_err(|answer| credential_refused(org, &answer))?;
        let listed = known.is_some();
        let org_name = known.map(|(o, _)| o).unwrap_or_else(|| org.to_string());
        let role = match invitation.get("role").and_then(Value::as_str) {
            Some("admin") => "admin",
            _ => "member",
        };
        let mut pending =
            vec![Membership::GithubOrg { org: org_name.clone(), state: MembershipState::Pending, role: role.into() }];
        for team in &teams {
            let slug = str_field(team, "slug", "invited team")?;
            pending.push(Membership::GithubTeam {
                org: org_name.clone(),
                team: slug.clone(),
                name: team.get("name").and_then(Value::as_str).unwrap_or(&slug).to_string(),
                state: MembershipState::Pending,
            });
        }
        Ok(Some((listed, pending)))
    }

    /// Identity and memberships behind `tokens`.
    async fn read(&self, tokens: UpstreamTokens) -> Result<UpstreamLogin, ConnectorError> {
        if self.wants_org_scope {
            if let Some(granted) = tokens.scope.as_deref().filter(|s| !s.trim().is_empty()) {
                let has_org =
                    granted.split([',', ' ']).any(|s| matches!(s.trim(), "read:org" | "write:org" | "admin:org"));
                if !has_org {
                    return Err(ConnectorError::failed(
                        "GitHub did not grant the read:org scope, so organization and team memberships cannot be read",
                    ));
                }
            }
        }
        let token = tokens.access_token.expose();
        let (user, emails, orgs, teams) = tokio::try_join!(
            self.user(token),
            self.emails(token),
            self.list("/user/memberships/orgs?per_page=100", token),
            self.list("/user/teams?per_page=100", token),
        )?;
        let profile = self.profile(user, emails)?;

        let mut memberships = Vec::with_capacity(orgs.len() + teams.len());
        for m in &orgs {
            let org = m.get("organization").and_then(|o| o.get("login")).and_then(Value::as_str).ok_or_else(|| {
                ConnectorError::failed("GitHub listed an organization membership without an organization")
            })?;
            memberships.push(Membership::GithubOrg {
                org: org.to_string(),
                state: match m.get("state").and_then(Value::as_str) {
                    Some("active") => MembershipState::Active,
                    _ => MembershipState::Pending,
                },
                role: m.get("role").and_then(Value::as_str).unwrap_or("member").to_string(),
            });
        }
        for t in &teams {
            let org = t
                .get("organization")
                .and_then(|o| o.get("login"))
                .and_then(Value::as_str)
                .ok_or_else(|| ConnectorError::failed("GitHub listed a team without its organization"))?;
            let slug = str_field(t, "slug", "team")?;
            memberships.push(Membership::GithubTeam {
                org: org.to_string(),
                name: t.get("name").and_then(Value::as_str).unwrap_or(&slug).to_string(),
                team: slug,
                state: MembershipState::Active,
            });
        }
        self.pending_invitations(&profile, &mut memberships).await?;

        let username = if self.username_claim == "email" {
            match (&profile.email, profile.email_verified) {
                (Some(e), true) => e.clone(),
                _ => return Err(ConnectorError::Denied(
                    "this GitHub account has no verified primary e-mail address, which this hub uses as the username"
                        .into(),
                )),
            }
        } else {
            claim_string(&profile.user, &self.username_claim).ok_or_else(|| {
                ConnectorError::failed(format!(
                    "GitHub's user data has no `{}` to use as the username",
                    self.username_claim
                ))
            })?
        };

        let mut groups: Vec<String> = Vec::new();
        for m in &memberships {
            let g = match m {
                Membership::GithubOrg { org, state: MembershipState::Active, .. } => org.clone(),
                Membership::GithubTeam { org, team, state: MembershipState::Active, .. } => format!("{org}:{team}"),
                _ => continue,
            };
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        Ok(UpstreamLogin {
            identity: UpstreamIdentity {
                connector_id: self.id.clone(),
                subject: profile.subject,
                username,
                name: claim_string(&profile.user, "name"),
                email: profile.email,
                email_verified: profile.email_verified,
                groups,
            },
            memberships,
            tokens,
        })
    }
}

fn str_field(v: &Value, key: &str, what: &str) -> Result<String, ConnectorError> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ConnectorError::failed(format!("GitHub listed a {what} without a {key}")))
}

/// GitHub's `message` in an error answer, shortened.
fn message_of(answer: &Answer) -> String {
    serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(|m| super::untrusted::printable(m, 160)))
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

fn token_refused(answer: &Answer) -> ConnectorError {
    ConnectorError::SessionEnded(format!(
        "GitHub no longer accepts this sign-in's token ({}{})",
        answer.status,
        message_of(answer)
    ))
}

fn credential_refused(org: &str, answer: &Answer) -> ConnectorError {
    ConnectorError::failed(format!(
        "GitHub refused hubauth's organization credential for {org} ({}{}), so pending invitations cannot be \
         checked; the organization_credential must be a valid token of an owner of {org} or of a GitHub App \
         installed there with \"Members: read\"",
        answer.status,
        message_of(answer)
    ))
}

#[async_trait]
impl RedirectConnector for GithubConnector {
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
        self.read(tokens).await
    }

    /// OAuth-app tokens do not expire and come without a refresh token: the memberships are read
    /// again with the token in hand (a revoked token ends the session). Expiring user tokens of
    /// GitHub Apps are refreshed first.
    async fn refresh(
        &self,
        tokens: &UpstreamTokens,
        subject: &str,
        now: UnixTime,
    ) -> Result<UpstreamLogin, ConnectorError> {
        let current = match &tokens.refresh_token {
            Some(_) => self.oauth.refresh(tokens, now).await?,
            None => tokens.clone(),
        };
        same_account(self.read(current).await?, subject)
    }
}
