//! The TOML configuration, parsed into typed values at the edge.
//!
//! Every problem is reported with the path of the key at fault (`clients[0].redirect_uris[1]`) and
//! why, so `hubauth check-config` can say exactly what to change.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub use crate::connectors::config::{CanvasConfig, GithubConfig, GoogleConfig, OAuth2Config, OidcConfig};
use crate::crypto::{Secret, SigningAlgorithm};
use crate::groups::GroupRule;
use crate::identity::UsernameRule;
use crate::policy::AccessConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
    /// Every problem found, one per line in the same form as `Invalid`.
    #[error("{}", problem_lines(path, problems))]
    Problems { path: PathBuf, problems: Vec<(String, String)> },
}

fn problem_lines(path: &Path, problems: &[(String, String)]) -> String {
    let lines: Vec<String> =
        problems.iter().map(|(key, message)| format!("{}: `{key}`: {message}", path.display())).collect();
    lines.join("\n")
}

/// Which secrets loading the config reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// All of them, from their environment variables and files: what serving needs.
    Resolve,
    /// Only inline ones: for commands that print what the config says and use no secret (the
    /// hub's fragment). An env or file secret is then not looked at, and holds an unguessable
    /// stand-in; such a config is refused by `serve`.
    Skip,
}

/// Reads secret sources the way [`Secrets`] says, relative to the config file's folder.
struct SecretReader<'a> {
    base_dir: &'a Path,
    mode: Secrets,
}

impl SecretReader<'_> {
    /// `Ok(None)`: not read (an env or file secret under [`Secrets::Skip`]), so not checked.
    fn read(&self, source: &SecretSource) -> Result<Option<Secret>, String> {
        match (self.mode, source) {
            (Secrets::Skip, SecretSource::Env { .. } | SecretSource::File { .. }) => Ok(None),
            _ => resolve_secret_at(source, self.base_dir).map(Some),
        }
    }
}

/// Stands in for a secret that was not read: random, so it matches nothing anyone sends.
fn placeholder() -> Secret {
    Secret::new(crate::crypto::random::random_value())
}

/// A secret given inline, or read from an environment variable or a file at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    listen: Option<SocketAddr>,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    tokens: TokenConfig,
    #[serde(default)]
    session: SessionConfig,
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    clients: Vec<RawClient>,
    /// Read as tables and typed one by one (see [`parse_connector`]) so errors name the exact key.
    #[serde(default)]
    connectors: Vec<toml::Table>,
    #[serde(default)]
    access: AccessConfig,
    #[serde(default)]
    invites: InvitesConfig,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    identity: IdentityConfig,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    jupyterhub: RawJupyterHub,
    #[serde(default)]
    report: ReportConfig,
    /// `[[static_groups]]`: groups granted to named users, whatever their connector says.
    #[serde(default)]
    static_groups: Vec<StaticGroup>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (addresses or CIDR ranges).
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    password_login: crate::password_login::PasswordLoginConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default)]
    token: Option<SecretSource>,
    #[serde(default)]
    listen: Option<SocketAddr>,
    #[serde(default = "yes")]
    group_info: bool,
    #[serde(default)]
    namespace: String,
    #[serde(default = "default_usage_interval", with = "humantime_serde")]
    usage_interval: Duration,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            token: None,
            listen: None,
            group_info: true,
            namespace: String::new(),
            usage_interval: default_usage_interval(),
        }
    }
}

fn default_usage_interval() -> Duration {
    Duration::from_secs(15)
}

fn yes() -> bool {
    true
}

/// `[metrics]`: who may scrape `/metrics`, and where.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub token: Option<Secret>,
    /// A second listener for `/metrics`, `/healthz` and `/readyz` (then the main listener no
    /// longer serves `/metrics`).
    pub listen: Option<SocketAddr>,
    /// Whether `hubauth_user_group_info` (one series per user and group) is exported.
    pub group_info: bool,
    /// The `namespace` label of `hubauth_user_group_info` (jupyterhub-groups-exporter's).
    pub namespace: String,
    /// The gauges and the group info are read from the database at most this often, however
    /// often `/metrics` is scraped.
    pub usage_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        RawMetrics::default().with_token(None)
    }
}

impl RawMetrics {
    fn with_token(self, token: Option<Secret>) -> MetricsConfig {
        let Self { token: _, listen, group_info, namespace, usage_interval } = self;
        MetricsConfig { token, listen, group_info, namespace, usage_interval }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJupyterHub {
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    api_token: Option<SecretSource>,
    #[serde(default = "default_hub_timeout", with = "humantime_serde")]
    timeout: Duration,
}

impl Default for RawJupyterHub {
    fn default() -> Self {
        Self { api_url: None, api_token: None, timeout: default_hub_timeout() }
    }
}

fn default_hub_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `[jupyterhub]`: the hub's REST API, where hubauth checks JupyterHub API tokens presented for
/// token exchange (with the presented token) and, with `[access] admit_hub_users`, whether the
/// hub has a user (with `api_token`).
#[derive(Debug, Clone)]
pub struct JupyterHubConfig {
    /// The hub's REST API, e.g. `http://127.0.0.1:8081/hub/api` (hubauth calls `{api_url}/user`
    /// and `{api_url}/users/{name}`).
    pub api_url: Option<String>,
    /// hubauth's own token for the hub's API (a service's, with the `read:users` scope).
    pub api_token: Option<Secret>,
    /// How long a call to the hub's API may take before it counts as unanswered.
    pub timeout: Duration,
}

impl Default for JupyterHubConfig {
    fn default() -> Self {
        Self { api_url: None, api_token: None, timeout: default_hub_timeout() }
    }
}

/// `[report]`: the activity report's optional storage columns, read from a Prometheus that
/// scrapes prometheus-dirsize-exporter (its metric and label names are the defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// e.g. `http://prometheus:9090`; hubauth queries `{prometheus_url}/api/v1/query`. Unset: no
    /// storage columns.
    pub prometheus_url: Option<String>,
    /// Home-directory size in bytes.
    pub size_metric: String,
    /// Newest modification time under the home directory (Unix seconds).
    pub mtime_metric: String,
    /// The label naming the directory (its last path component).
    pub directory_label: String,
    /// The directory a user's home is, from their hub username: `{username}` as is, or
    /// `{escaped_username}` escaped the way KubeSpawner names per-user volumes.
    pub directory: String,
    /// Extra label matchers for both metrics, e.g. `namespace="prod"` (when one Prometheus
    /// scrapes the exporters of several hubs).
    pub selector: String,
    #[serde(with = "humantime_serde")]
    pub prometheus_timeout: Duration,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            prometheus_url: None,
            size_metric: "dirsize_total_size_bytes".into(),
            mtime_metric: "dirsize_latest_mtime".into(),
            directory_label: "directory".into(),
            directory: "{username}".into(),
            selector: String::new(),
            prometheus_timeout: Duration::from_secs(10),
        }
    }
}

/// A group granted to named hub users (after their username rule).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticGroup {
    pub name: String,
    pub users: Vec<String>,
}

/// `[identity]`: how accounts relate across connectors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// A person signing in through a second connector with the same *verified* e-mail address
    /// as an existing user becomes that user (off by default: an e-mail address at one provider
    /// is only as trustworthy as that provider's verification).
    #[serde(default)]
    pub link_by_verified_email: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default)]
    api_tokens: Vec<SecretSource>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin_users: Vec<String>,
    #[serde(default)]
    viewer_groups: Vec<String>,
    #[serde(default)]
    viewer_users: Vec<String>,
}

/// The client id the admin console signs people in as (its sign-ins end on the console, with no
/// authorization code); no configured client may take it.
pub const CONSOLE_CLIENT_ID: &str = "hubauth-console";

/// `[admin]`: who runs the hub's sign-ins. People are admins (or read-only viewers) through their
/// groups or usernames, and sign in to the console like anyone else; scripts use API tokens.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Static tokens for scripts, with full (write) access. Tokens made by `hubauth admin tokens
    /// create` live in the database instead.
    pub api_tokens: Vec<Secret>,
    /// Members of these groups (hubauth's groups, as in the `groups` claim) are console admins.
    pub groups: Vec<String>,
    /// These usernames are console admins.
    pub admin_users: Vec<String>,
    /// Members of these groups may look but not change anything.
    pub viewer_groups: Vec<String>,
    pub viewer_users: Vec<String>,
}

impl AdminConfig {
    /// Whether anyone can sign in to the console (someone is named an admin or viewer).
    pub fn console_enabled(&self) -> bool {
        !(self.groups.is_empty()
            && self.admin_users.is_empty()
            && self.viewer_groups.is_empty()
            && self.viewer_users.is_empty())
    }
}

/// `[invites]`: workshop invitation links.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvitesConfig {
    /// Where the invite page's "Continue" button leads: the hub's sign-in page.
    #[serde(default)]
    pub continue_url: Option<String>,
}

/// `[storage]` as written: the URL may come from the environment or a file (it can hold a
/// password), and so may the password on its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    url: SecretSource,
    password: Option<SecretSource>,
    pool_size: u32,
    #[serde(with = "humantime_serde")]
    statement_timeout: Duration,
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    ssl_mode: Option<String>,
    ssl_root_cert: Option<PathBuf>,
    migrate: bool,
}

impl Default for RawStorage {
    fn default() -> Self {
        let d = StorageConfig::default();
        Self {
            url: SecretSource::Inline(d.url),
            password: None,
            pool_size: d.pool_size,
            statement_timeout: d.statement_timeout,
            connect_timeout: d.connect_timeout,
            ssl_mode: None,
            ssl_root_cert: None,
            migrate: d.migrate,
        }
    }
}

/// `[storage]`: where hubauth keeps its state.
#[derive(Clone)]
pub struct StorageConfig {
    /// `sqlite://path/to/file.db` (a relative path is relative to the config file) or
    /// `postgres://user@host/db`, with any password already filled in.
    pub url: String,
    /// PostgreSQL: connections per replica (another as many are kept for per-user locks).
    pub pool_size: u32,
    /// PostgreSQL: the server cancels a statement running longer.
    pub statement_timeout: Duration,
    /// PostgreSQL: how long to wait for a connection (new or from the pool).
    pub connect_timeout: Duration,
    /// PostgreSQL: `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (over the URL's).
    pub ssl_mode: Option<String>,
    /// PostgreSQL: the CA certificate(s) to verify the server with (PEM).
    pub ssl_root_cert: Option<PathBuf>,
    /// `serve` brings the schema up to date itself (the default); when false it refuses an
    /// outdated schema and `hubauth db migrate` is the explicit step.
    pub migrate: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://hubauth.db".into(),
            pool_size: 10,
            statement_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            ssl_mode: None,
            ssl_root_cert: None,
            migrate: true,
        }
    }
}

impl StorageConfig {
    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.url)
    }

    /// The URL without its password, for logs and messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &self.display_url())
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    #[serde(with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub id_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub authorization_code_lifetime: Duration,
    /// Service-account (client_credentials) access tokens.
    #[serde(with = "humantime_serde")]
    pub service_token_lifetime: Duration,
    /// An upstream access token this close to expiry (at most half its lifetime) is refreshed
    /// before it is handed out.
    #[serde(with = "humantime_serde")]
    pub upstream_refresh_skew: Duration,
    /// How long the refresh token just rotated away may come back (a retry whose answer was
    /// lost) for a fresh pair instead of revoking the login; `0s` disables. At most
    /// [`MAX_REFRESH_TOKEN_REUSE_GRACE`].
    #[serde(with = "humantime_serde")]
    pub refresh_token_reuse_grace: Duration,
}

/// The longest reuse grace: for that long, a stolen, just-rotated refresh token still works once.
pub const MAX_REFRESH_TOKEN_REUSE_GRACE: Duration = Duration::from_secs(60);

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::from_secs(10 * 60),
            id_token_lifetime: Duration::from_secs(10 * 60),
            refresh_token_lifetime: Duration::from_secs(30 * 24 * 3600),
            authorization_code_lifetime: Duration::from_secs(60),
            service_token_lifetime: Duration::from_secs(5 * 60),
            upstream_refresh_skew: Duration::from_secs(60),
            refresh_token_reuse_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// How long a browser stays signed in to hubauth (single sign-on across clients).
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// How long a person has to finish logging in once a client sent them.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Sign-ins one browser may have waiting; starting another drops its oldest.
    pub max_pending_per_browser: u32,
    /// Sign-ins waiting from one address (an IPv6 /64); more are refused (429) until some finish
    /// or lapse. Behind a reverse proxy everyone shares its address: size this for a busy
    /// `login_timeout` at the whole hub.
    pub max_pending_per_address: u32,
    /// Sign-ins waiting in all; more are refused (503). Bounds the database whatever the sources.
    pub max_pending: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(12 * 3600),
            login_timeout: Duration::from_secs(15 * 60),
            max_pending_per_browser: 10,
            max_pending_per_address: 1000,
            max_pending: 50_000,
        }
    }
}

impl SessionConfig {
    pub fn pending_limits(&self) -> crate::store::PendingLimits {
        crate::store::PendingLimits {
            per_browser: self.max_pending_per_browser,
            per_address: self.max_pending_per_address,
            total: self.max_pending,
        }
    }
}

/// `[server]`: how long a connection may take and how many may be open, so that idle and
/// half-sent connections cannot pile up (every limit applies to HTTP/1.1 and HTTP/2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A request's head (request line and headers) must arrive within this, counted from its
    /// first byte.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no byte moving is closed after this. Longer
    /// than the usual 60 s keep-alive of reverse proxies and load balancers, so that they, not
    /// hubauth, close idle connections (a close racing a proxy's request would be a 502).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request is answered within this or gets 503. Long enough for a sign-in that calls the
    /// provider several times (each call may take up to 15 s) or waits for a membership re-check.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog until one closes. Keep it
    /// below the process's open-file limit (`ulimit -n`).
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(90),
            max_connections: 10_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    secret: Option<SecretSource>,
    #[serde(default)]
    public: bool,
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    id_token_signed_response_alg: Option<String>,
    #[serde(default)]
    hub: Option<HubHints>,
    /// Browser sign-in (`authorization_code` + `refresh_token`) unless this lists other grants.
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    token_exchange: Option<TokenExchangeConfig>,
    #[serde(default)]
    service_account: Option<ServiceAccountConfig>,
    /// Accept plain-http redirect URIs on hosts other than loopback (codes would cross the
    /// network readable by anyone on the path); off by default.
    #[serde(default)]
    allow_insecure_redirect: bool,
}

/// `[clients.token_exchange]`: which upstream tokens this client may obtain (RFC 8693), for
/// which subject tokens. A subject token must have been meant for exchange: a hubauth access
/// token of a named client with the required scopes, or a JupyterHub token that is the user's
/// own server's or carries the scope the operator granted for it (see docs/token-custody.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// Connector ids whose upstream access tokens may be asked for (`audience` / `resource`).
    pub audiences: Vec<String>,
    /// `access_token` (a hubauth access token, e.g. the hub's for a user) and/or `jupyterhub`
    /// (a JupyterHub API token, e.g. `JUPYTERHUB_API_TOKEN` inside a notebook).
    pub subject_token_types: Vec<String>,
    /// hubauth access tokens are accepted only when issued to one of these clients (required
    /// with `access_token`: an access token some other relying party got is not for this).
    #[serde(default)]
    pub subject_clients: Vec<String>,
    /// ... and only when they carry all of these scopes.
    #[serde(default = "default_subject_scopes")]
    pub subject_scopes: Vec<String>,
    /// JupyterHub tokens: accept a user's own single-user server's `JUPYTERHUB_API_TOKEN` (its
    /// default scopes `users:activity!user` and `access:servers!server`, not an OAuth token).
    #[serde(default = "default_true")]
    pub jupyterhub_server_tokens: bool,
    /// JupyterHub tokens: accept any token of the user that carries this (custom) scope, which
    /// the operator grants for this purpose (`hubauth jupyterhub-config` prints the lines).
    #[serde(default = "default_jupyterhub_scope")]
    pub jupyterhub_scope: String,
}

/// The JupyterHub custom scope that marks a token as meant for exchange at hubauth.
pub const DEFAULT_JUPYTERHUB_EXCHANGE_SCOPE: &str = "custom:hubauth:exchange";

fn default_subject_scopes() -> Vec<String> {
    vec!["openid".into()]
}

fn default_true() -> bool {
    true
}

fn default_jupyterhub_scope() -> String {
    DEFAULT_JUPYTERHUB_EXCHANGE_SCOPE.into()
}

/// `[clients.service_account]`: the client may use `client_credentials` for these scopes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountConfig {
    pub scopes: Vec<String>,
}

/// Hints for `hubauth jupyterhub-config`: what the hub should allow and who is a hub admin.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HubHints {
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// Environment variable the hub reads the client secret from.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Send the hub's users straight to this connector (skipping the chooser).
    #[serde(default)]
    pub connector: Option<String>,
    /// Where the hub itself listens (`c.JupyterHub.bind_url`), e.g. "http://127.0.0.1:8000";
    /// unset: the hub's own default (or whatever the deployment sets).
    #[serde(default)]
    pub bind_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub id: String,
    pub name: String,
    /// `None` for public clients, which must use PKCE.
    pub secret: Option<Secret>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_alg: SigningAlgorithm,
    pub hub: HubHints,
    pub grant_types: Vec<GrantType>,
    pub token_exchange: Option<TokenExchangeConfig>,
    pub service_account: Option<ServiceAccountConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    TokenExchange,
}

impl GrantType {
    pub const TOKEN_EXCHANGE_URN: &'static str = "urn:ietf:params:oauth:grant-type:token-exchange";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "authorization_code" => GrantType::AuthorizationCode,
            "refresh_token" => GrantType::RefreshToken,
            "client_credentials" => GrantType::ClientCredentials,
            Self::TOKEN_EXCHANGE_URN | "token_exchange" => GrantType::TokenExchange,
            _ => return None,
        })
    }
}

impl ClientConfig {
    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

/// One `[[connectors]]` entry: the upstream (`type` and its own keys, see [`ConnectorConfig`]) and
/// what every connector may set: how its memberships become groups, who may sign in with it.
#[derive(Debug, Clone)]
pub struct ConnectorEntry {
    pub kind: ConnectorConfig,
    /// `[[connectors.groups]]`: membership → group name rules (default: [`crate::groups::default_rules`]).
    pub groups: Vec<GroupRule>,
    /// A named rule set used instead of (or before) `groups`: `default`, `canvasauthenticator`.
    pub groups_preset: Option<String>,
    /// Put before every group name this connector produces (its namespace). Default `<id>:`,
    /// or none for password connectors, whose groups the config itself lists.
    pub group_prefix: Option<String>,
    /// `[connectors.access]`: access rules for people signing in through this connector.
    pub access: Option<AccessConfig>,
    /// `[connectors.username]`: how the upstream username becomes the hub username.
    pub username: UsernameRule,
}

impl ConnectorEntry {
    pub fn id(&self) -> &str {
        self.kind.id()
    }

    /// The rules in force: the preset's, then the listed ones; the defaults when neither is set.
    pub fn group_rules(&self) -> Vec<GroupRule> {
        let mut rules = self.groups_preset.as_deref().and_then(crate::groups::preset).unwrap_or_default();
        rules.extend(self.groups.iter().cloned());
        if rules.is_empty() {
            rules = crate::groups::default_rules();
        }
        rules
    }

    /// The rules and the namespace this connector's groups are named in.
    pub fn group_naming(&self) -> crate::groups::Naming {
        let prefix = match (&self.group_prefix, &self.kind) {
            (Some(p), _) => p.clone(),
            (None, ConnectorConfig::Dev(_)) => String::new(),
            // The preset exists to keep Berkeley's exact names; they all start `course::{id}`, which
            // no other source's names can.
            (None, _) if self.groups_preset.as_deref() == Some("canvasauthenticator") => String::new(),
            (None, _) => format!("{}:", self.id()),
        };
        crate::groups::Naming { rules: self.group_rules(), prefix }
    }
}

/// The keys every connector has besides its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorCommon {
    #[serde(default)]
    groups: Vec<GroupRule>,
    #[serde(default)]
    groups_preset: Option<String>,
    #[serde(default)]
    group_prefix: Option<String>,
    #[serde(default)]
    access: Option<AccessConfig>,
    #[serde(default)]
    username: Option<UsernameRule>,
}

const COMMON_CONNECTOR_KEYS: [&str; 5] = ["groups", "groups_preset", "group_prefix", "access", "username"];

/// Types one `[[connectors]]` table. Each upstream's struct is deserialised directly (not through
/// a tagged enum, which buffers and loses the path), so an error names e.g.
/// `connectors[1].timeout` rather than just `connectors[1]`.
fn parse_connector(i: usize, mut table: toml::Table) -> Result<ConnectorEntry, (String, String)> {
    fn typed<T: serde::de::DeserializeOwned>(i: usize, table: toml::Table) -> Result<T, (String, String)> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." { format!("connectors[{i}]") } else { format!("connectors[{i}].{path}") };
            (key, e.into_inner().to_string())
        })
    }
    let kind = match table.remove("type") {
        Some(toml::Value::String(t)) => t,
        Some(_) => return Err((format!("connectors[{i}].type"), "must be a string".into())),
        None => {
            return Err((format!("connectors[{i}].type"), "is missing: say which kind of connector this is".into()))
        }
    };
    let mut common = toml::Table::new();
    for k in COMMON_CONNECTOR_KEYS {
        if let Some(v) = table.remove(k) {
            common.insert(k.to_string(), v);
        }
    }
    let kind = match kind.as_str() {
        "dev" => ConnectorConfig::Dev(typed(i, table)?),
        "oauth2" => ConnectorConfig::Oauth2(typed(i, table)?),
        "oidc" => ConnectorConfig::Oidc(typed(i, table)?),
        "google" => ConnectorConfig::Google(typed(i, table)?),
        "github" => ConnectorConfig::Github(typed(i, table)?),
        "canvas" => ConnectorConfig::Canvas(typed(i, table)?),
        other => {
            return Err((
                format!("connectors[{i}].type"),
                format!("unknown connector type {other:?}; use one of dev, oauth2, oidc, google, github, canvas"),
            ))
        }
    };
    let common: ConnectorCommon = typed(i, common)?;
    if let Some(rule) = &common.username {
        crate::identity::Normalizer::new(rule.clone()).map_err(|m| (format!("connectors[{i}].username"), m))?;
    }
    Ok(ConnectorEntry {
        kind,
        groups: common.groups,
        groups_preset: common.groups_preset,
        group_prefix: common.group_prefix,
        access: common.access,
        username: common.username.unwrap_or_default(),
    })
}

/// The upstream of a connector; `type` picks it. Each upstream's keys are documented with its
/// config struct, in its own file under `src/connectors/`.
#[derive(Debug, Clone)]
pub enum ConnectorConfig {
    Dev(DevConnectorConfig),
    Oauth2(OAuth2Config),
    Oidc(OidcConfig),
    Google(GoogleConfig),
    Github(GithubConfig),
    Canvas(CanvasConfig),
}

impl ConnectorConfig {
    /// The configured `name` and `icon`, if any.
    pub fn display(&self) -> (Option<&str>, Option<&str>) {
        match self {
            ConnectorConfig::Dev(c) => (c.name.as_deref(), c.icon.as_deref()),
            ConnectorConfig::Oauth2(c) => (c.name.as_deref(), c.icon.as_deref()),
            ConnectorConfig::Oidc(c) => (c.name.as_deref(), c.icon.as_deref()),
            ConnectorConfig::Google(c) => (c.name.as_deref(), c.icon.as_deref()),
            ConnectorConfig::Github(c) => (c.name.as_deref(), c.icon.as_deref()),
            ConnectorConfig::Canvas(c) => (c.name.as_deref(), c.icon.as_deref()),
        }
    }

    pub fn id(&self) -> &str {
        match self {
            ConnectorConfig::Dev(c) => &c.id,
            ConnectorConfig::Oauth2(c) => &c.id,
            ConnectorConfig::Oidc(c) => &c.id,
            ConnectorConfig::Google(c) => &c.id,
            ConnectorConfig::Github(c) => &c.id,
            ConnectorConfig::Canvas(c) => &c.id,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConnectorConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub users: Vec<DevUser>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevUser {
    pub username: String,
    /// Argon2 PHC string, e.g. from `hubauth hash-password`.
    pub password_hash: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Exactly as configured; `iss` claims and discovery use this string byte for byte.
    pub issuer: String,
    pub issuer_url: Url,
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    pub tokens: TokenConfig,
    pub session: SessionConfig,
    pub server: ServerConfig,
    pub clients: Vec<ClientConfig>,
    pub connectors: Vec<ConnectorEntry>,
    /// `[access]`: the access policy for every connector.
    pub access: AccessConfig,
    pub invites: InvitesConfig,
    pub admin: AdminConfig,
    pub identity: IdentityConfig,
    pub metrics: MetricsConfig,
    pub static_groups: Vec<StaticGroup>,
    pub jupyterhub: JupyterHubConfig,
    /// `[report]`: the activity report's storage columns.
    pub report: ReportConfig,
    /// `trusted_proxies`: whose `X-Forwarded-For` is believed (nobody's by default).
    pub trusted_proxies: crate::web::client_address::TrustedProxies,
    /// `[password_login]`: throttling and the bound on concurrent password checks.
    pub password_login: crate::password_login::PasswordLoginConfig,
    /// Whether the secrets were read ([`Secrets::Skip`] configs only describe, never serve).
    pub secrets: Secrets,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with(text, path, Secrets::Resolve)
    }

    /// [`Config::load`], reading only the secrets `secrets` says.
    pub fn load_with(path: &Path, secrets: Secrets) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse_with(&text, path, secrets)
    }

    /// Parses and validates; `path` names the file in errors and anchors relative paths. Every
    /// problem that can be found on its own is reported, not only the first.
    pub fn parse_with(text: &str, path: &Path, secrets: Secrets) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid { path: path.into(), key: key.into(), message };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| invalid("(syntax)", e.to_string()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().message().to_string();
            invalid(&key, message)
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let reader = SecretReader { base_dir, mode: secrets };
        // Every problem with its key: `check-config` lists them all in one run.
        let mut problems: Vec<(String, String)> = Vec::new();
        macro_rules! bad {
            ($key:expr, $message:expr) => {
                problems.push((($key).to_string(), $message))
            };
        }
        let mut admin = AdminConfig {
            groups: raw.admin.groups.clone(),
            admin_users: raw.admin.admin_users.clone(),
            viewer_groups: raw.admin.viewer_groups.clone(),
            viewer_users: raw.admin.viewer_users.clone(),
            ..AdminConfig::default()
        };
        for (key, names) in [
            ("admin.groups", &admin.groups),
            ("admin.admin_users", &admin.admin_users),
            ("admin.viewer_groups", &admin.viewer_groups),
            ("admin.viewer_users", &admin.viewer_users),
        ] {
            if let Some(i) = names.iter().position(|n| n.trim().is_empty() || n.trim() != n) {
                bad!(format!("{key}[{i}]"), "must be a name without surrounding spaces".into());
            }
        }
        for (i, source) in raw.admin.api_tokens.iter().enumerate() {
            let key = format!("admin.api_tokens[{i}]");
            match reader.read(source) {
                Ok(Some(token)) if token.expose().len() < 32 => {
                    bad!(key, "is shorter than 32 characters; use a long random value".into())
                }
                Ok(token) => admin.api_tokens.push(token.unwrap_or_else(placeholder)),
                Err(m) => bad!(key, m),
            }
        }
        let mut raw_connectors = Vec::with_capacity(raw.connectors.len());
        let mut connectors_parsed = true;
        for (i, table) in raw.connectors.into_iter().enumerate() {
            match parse_connector(i, table) {
                Ok(c) => raw_connectors.push(c),
                Err((key, message)) => {
                    connectors_parsed = false;
                    bad!(key, message)
                }
            }
        }
        let issuer_url = validate_issuer(&raw.issuer).map_err(|m| bad!("issuer", m)).ok();
        let listen = match (raw.listen, &issuer_url) {
            (Some(l), _) => Some(l),
            (None, Some(url)) => default_listen(url).map_err(|m| bad!("listen", m)).ok(),
            (None, None) => None,
        };
        if let Some(listen) = listen {
            if raw.metrics.listen.is_some_and(|m| m == listen || (m.port() == listen.port() && m.ip().is_unspecified()))
            {
                bad!("metrics.listen", format!("must differ from listen ({listen}): it is a second listener"));
            }
        }
        if raw.tokens.authorization_code_lifetime > Duration::from_secs(60)
            || raw.tokens.authorization_code_lifetime.is_zero()
        {
            bad!(
                "tokens.authorization_code_lifetime",
                "must be between 1s and 60s (codes are short-lived by design, RFC 6749 §4.1.2)".into()
            );
        }
        if raw.tokens.refresh_token_reuse_grace > MAX_REFRESH_TOKEN_REUSE_GRACE {
            bad!(
                "tokens.refresh_token_reuse_grace",
                "must be at most 60s (a just-rotated refresh token works that long for whoever holds it)".into()
            );
        }
        for (key, d) in [
            ("tokens.access_token_lifetime", raw.tokens.access_token_lifetime),
            ("tokens.id_token_lifetime", raw.tokens.id_token_lifetime),
            ("tokens.refresh_token_lifetime", raw.tokens.refresh_token_lifetime),
            ("session.lifetime", raw.session.lifetime),
            ("session.login_timeout", raw.session.login_timeout),
        ] {
            if d.as_secs() == 0 {
                bad!(key, "must be at least one second".into());
            }
        }
        let trusted_proxies = crate::web::client_address::TrustedProxies::parse(&raw.trusted_proxies)
            .map_err(|(i, m)| bad!(format!("trusted_proxies[{i}]"), m))
            .ok();
        if let Err((key, m)) = raw.password_login.validate() {
            bad!(format!("password_login.{key}"), m);
        }
        for (key, d) in [
            ("server.header_read_timeout", raw.server.header_read_timeout),
            ("server.idle_timeout", raw.server.idle_timeout),
            ("server.request_timeout", raw.server.request_timeout),
        ] {
            if d.is_zero() {
                bad!(key, "must be more than zero".into());
            }
        }
        for (key, n) in [
            ("session.max_pending_per_browser", raw.session.max_pending_per_browser),
            ("session.max_pending_per_address", raw.session.max_pending_per_address),
            ("session.max_pending", raw.session.max_pending),
        ] {
            if n == 0 {
                bad!(key, "must be at least 1".into());
            }
        }
        if !(1..=1_000_000).contains(&raw.server.max_connections) {
            bad!("server.max_connections", "must be between 1 and 1000000".into());
        }
        let storage = resolve_storage(raw.storage, &reader).map_err(|(key, m)| bad!(key, m)).ok();

        let mut clients = Vec::new();
        let mut seen = HashSet::new();
        for (i, c) in raw.clients.into_iter().enumerate() {
            let key = |field: &str| format!("clients[{i}].{field}");
            if c.id.trim().is_empty() {
                bad!(key("id"), "must not be empty".into());
            }
            if !seen.insert(c.id.clone()) {
                bad!(key("id"), format!("client id {:?} is used twice", c.id));
            }
            if c.id == CONSOLE_CLIENT_ID {
                bad!(key("id"), format!("{CONSOLE_CLIENT_ID:?} is reserved for hubauth's admin console"));
            }
            let secret = match (&c.secret, c.public) {
                (Some(_), true) => {
                    bad!(key("secret"), "a public client has no secret; remove one of `public` and `secret`".into());
                    None
                }
                (None, false) => {
                    bad!(key("secret"), "a confidential client needs a secret (or set `public = true`)".into());
                    Some(placeholder())
                }
                (Some(s), false) => match reader.read(s) {
                    Ok(Some(secret)) if secret.expose().len() < 16 => {
                        bad!(key("secret"), "is shorter than 16 characters; use a long random value".into());
                        Some(secret)
                    }
                    Ok(secret) => Some(secret.unwrap_or_else(placeholder)),
                    Err(m) => {
                        bad!(key("secret"), m);
                        Some(placeholder())
                    }
                },
                (None, true) => None,
            };
            let grant_types = match &c.grant_types {
                None => {
                    let mut g = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
                    if c.token_exchange.is_some() {
                        g.push(GrantType::TokenExchange);
                    }
                    if c.service_account.is_some() {
                        g.push(GrantType::ClientCredentials);
                    }
                    g
                }
                Some(list) => {
                    let mut g = Vec::new();
                    for (j, name) in list.iter().enumerate() {
                        match GrantType::parse(name) {
                            Some(grant) => g.push(grant),
                            None => bad!(
                                key(&format!("grant_types[{j}]")),
                                format!("{name:?} is not a grant hubauth supports: authorization_code, refresh_token, client_credentials, token_exchange")
                            ),
                        }
                    }
                    g
                }
            };
            if grant_types.contains(&GrantType::TokenExchange) && c.token_exchange.is_none() {
                bad!(
                    key("token_exchange"),
                    "is needed to allow token_exchange: say which audiences and subject token types".into()
                );
            }
            if grant_types.contains(&GrantType::ClientCredentials) && c.service_account.is_none() {
                bad!(key("service_account"), "is needed to allow client_credentials: list its scopes".into());
            }
            if grant_types.contains(&GrantType::ClientCredentials) && c.public {
                bad!(key("service_account"), "a public client cannot be a service account".into());
            }
            if let Some(x) = &c.token_exchange {
                if let Err((field, m)) = validate_exchange_rule(x) {
                    bad!(key(&format!("token_exchange.{field}")), m);
                }
            }
            if c.redirect_uris.is_empty() && grant_types.contains(&GrantType::AuthorizationCode) {
                bad!(key("redirect_uris"), "must list at least one URI".into());
            }
            let insecure_ok = c.allow_insecure_redirect;
            for (j, uri) in c.redirect_uris.iter().enumerate() {
                if let Err(m) = validate_redirect_uri(uri, insecure_ok) {
                    bad!(key(&format!("redirect_uris[{j}]")), m);
                }
            }
            for (j, uri) in c.post_logout_redirect_uris.iter().enumerate() {
                if let Err(m) = validate_redirect_uri(uri, insecure_ok) {
                    bad!(key(&format!("post_logout_redirect_uris[{j}]")), m);
                }
            }
            let id_token_alg = match c.id_token_signed_response_alg.as_deref() {
                None => SigningAlgorithm::RS256,
                Some(a) => SigningAlgorithm::parse(a).unwrap_or_else(|| {
                    bad!(
                        key("id_token_signed_response_alg"),
                        format!("{a:?} is not supported; use \"RS256\" or \"ES256\"")
                    );
                    SigningAlgorithm::RS256
                }),
            };
            if let Some(connector) = c.hub.as_ref().and_then(|h| h.connector.as_deref()) {
                if connectors_parsed && !raw_connectors.iter().any(|k| k.id() == connector) {
                    bad!(key("hub.connector"), format!("there is no connector {connector:?}"));
                }
            }
            if let Some(bind) = c.hub.as_ref().and_then(|h| h.bind_url.as_deref()) {
                let usable = Url::parse(bind).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.query().is_none()
                        && u.fragment().is_none()
                });
                if !usable {
                    bad!(
                        key("hub.bind_url"),
                        format!("{bind:?} is not an http(s) URL such as \"http://127.0.0.1:8000\"")
                    );
                }
            }
            clients.push(ClientConfig {
                name: c.name.unwrap_or_else(|| c.id.clone()),
                id: c.id,
                secret,
                redirect_uris: c.redirect_uris,
                post_logout_redirect_uris: c.post_logout_redirect_uris,
                id_token_alg,
                hub: c.hub.unwrap_or_default(),
                grant_types,
                token_exchange: c.token_exchange,
                service_account: c.service_account,
            });
        }

        for (i, c) in clients.iter().enumerate() {
            if let Some(x) = &c.token_exchange {
                if let Err((j, m)) = validate_subject_clients(x, &clients) {
                    bad!(format!("clients[{i}].token_exchange.subject_clients[{j}]"), m);
                }
            }
        }

        let mut seen = HashSet::new();
        // The keys name each connector by its place in the file, so only when all of them parsed.
        for (i, c) in raw_connectors.iter().enumerate().filter(|_| connectors_parsed) {
            let id = c.id();
            if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
                bad!(
                    format!("connectors[{i}].id"),
                    "must be non-empty and use only letters, digits, '-' and '_'".into()
                );
            }
            if !seen.insert(id.to_string()) {
                bad!(format!("connectors[{i}].id"), format!("connector id {id:?} is used twice"));
            }
            if let Some(p) = c.groups_preset.as_deref() {
                if crate::groups::preset(p).is_none() {
                    bad!(
                        format!("connectors[{i}].groups_preset"),
                        format!("there is no preset {p:?}; use \"default\" or \"canvasauthenticator\"")
                    );
                }
            }
            for (j, rule) in c.groups.iter().enumerate() {
                if let Err(m) = crate::groups::validate_rule(rule) {
                    bad!(format!("connectors[{i}].groups[{j}].name"), m);
                }
            }
            if let Some(prefix) = &c.group_prefix {
                if let Err(m) = crate::groups::validate_prefix(prefix) {
                    bad!(format!("connectors[{i}].group_prefix"), m);
                }
            }
            if let Some(a) = &c.access {
                for (field, set) in [
                    ("policy_url", a.policy_url.is_some()),
                    ("contact", a.contact.is_some()),
                    ("admin_group", a.admin_group.is_some()),
                ] {
                    if set {
                        bad!(
                            format!("connectors[{i}].access.{field}"),
                            "belongs in the global [access] section".into()
                        );
                    }
                }
            }
            if let ConnectorConfig::Dev(dev) = &c.kind {
                let mut names = HashSet::new();
                for (j, u) in dev.users.iter().enumerate() {
                    if u.username.is_empty() || !names.insert(u.username.as_str()) {
                        bad!(format!("connectors[{i}].users[{j}].username"), "must be non-empty and unique".into());
                    }
                    if let Err(m) = crate::crypto::password::validate_hash(&u.password_hash) {
                        bad!(
                            format!("connectors[{i}].users[{j}].password_hash"),
                            format!("is not an argon2 PHC string ({m}); make one with `hubauth hash-password`")
                        );
                    }
                }
            }
        }
        if raw_connectors.is_empty() && connectors_parsed {
            bad!("connectors", "at least one connector is needed so people can log in".into());
        }
        let mut connectors = raw_connectors;
        for c in &mut connectors {
            crate::connectors::config::anchor_secret_files(&mut c.kind, base_dir);
        }
        if connectors_parsed {
            // Every connector's secrets first, each with its key (all of them, not the first)...
            let mut stand_ins = connectors.clone();
            for (i, c) in stand_ins.iter_mut().enumerate() {
                for (field, source) in crate::connectors::config::secrets_mut(&mut c.kind) {
                    if let Err(m) = reader.read(source) {
                        bad!(format!("connectors[{i}].{field}"), m);
                    }
                    // ...then each connector is built (no network) with stand-ins for its secrets:
                    // bad URLs and the like are reported here, with their key, not at the first login.
                    *source = SecretSource::Inline(placeholder().expose().to_string());
                }
            }
            match crate::connectors::http::UpstreamHttp::new(Default::default()) {
                Err(e) => bad!("connectors", format!("cannot set up the HTTP client: {e}")),
                Ok(http) => {
                    for (i, c) in stand_ins.iter().enumerate() {
                        if let Err(e) = crate::connectors::Connectors::from_config(
                            std::slice::from_ref(c),
                            &http,
                            &Default::default(),
                        ) {
                            // Built alone, it is connectors[0]: give it its place in the file.
                            bad!(e.key.replacen("connectors[0]", &format!("connectors[{i}]"), 1), e.message);
                        }
                    }
                }
            }
        }

        let mut read_optional = |source: Option<&SecretSource>, key: &str| match source.map(|s| reader.read(s)) {
            None => None,
            Some(Ok(secret)) => Some(secret.unwrap_or_else(placeholder)),
            Some(Err(m)) => {
                bad!(key, m);
                Some(placeholder())
            }
        };
        let jupyterhub = JupyterHubConfig {
            api_token: read_optional(raw.jupyterhub.api_token.as_ref(), "jupyterhub.api_token"),
            api_url: raw.jupyterhub.api_url,
            timeout: raw.jupyterhub.timeout,
        };
        let metrics_token = read_optional(raw.metrics.token.as_ref(), "metrics.token");
        if let Err((key, m)) = validate_hub_api(&jupyterhub, &raw.access, &connectors) {
            bad!(key, m);
        }
        let report = validate_report(raw.report).map_err(|(k, m)| bad!(format!("report.{k}"), m)).ok();

        match (issuer_url, listen, storage, trusted_proxies, report) {
            (Some(issuer_url), Some(listen), Some(storage), Some(trusted_proxies), Some(report))
                if problems.is_empty() =>
            {
                Ok(Config {
                    issuer: raw.issuer,
                    issuer_url,
                    listen,
                    storage,
                    tokens: raw.tokens,
                    session: raw.session,
                    server: raw.server,
                    clients,
                    connectors,
                    access: raw.access,
                    invites: raw.invites,
                    admin,
                    identity: raw.identity,
                    metrics: raw.metrics.with_token(metrics_token),
                    static_groups: raw.static_groups,
                    jupyterhub,
                    report,
                    trusted_proxies,
                    password_login: raw.password_login,
                    secrets,
                })
            }
            // A missing value always came with its problem.
            _ => Err(ConfigError::Problems { path: path.into(), problems }),
        }
    }

    pub fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// An absolute URL under the issuer, e.g. `endpoint("/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer.trim_end_matches('/'), path)
    }

    /// The path prefix all routes live under (empty when the issuer is a bare origin).
    pub fn path_prefix(&self) -> String {
        self.issuer_url.path().trim_end_matches('/').to_string()
    }

    /// Cookies are `Secure` whenever the issuer is https; plain http is only accepted on loopback.
    pub fn secure_cookies(&self) -> bool {
        self.issuer_url.scheme() == "https"
    }
}

/// `admit_hub_users` needs the hub's API and a token for it; a URL given must be usable.
fn validate_hub_api(
    hub: &JupyterHubConfig,
    access: &AccessConfig,
    connectors: &[ConnectorEntry],
) -> Result<(), (String, String)> {
    if let Some(api) = &hub.api_url {
        match Url::parse(api) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base() => {}
            _ => {
                return Err((
                    "jupyterhub.api_url".into(),
                    format!("{api:?} is not an http(s) URL such as \"http://127.0.0.1:8081/hub/api\""),
                ))
            }
        }
    }
    if hub.timeout.is_zero() || hub.timeout > Duration::from_secs(60) {
        return Err(("jupyterhub.timeout".into(), "must be between 1ms and 60s".into()));
    }
    let mut wanted = access.admit_hub_users.then(|| "access.admit_hub_users".to_string());
    for (i, c) in connectors.iter().enumerate() {
        if wanted.is_none() && c.access.as_ref().is_some_and(|a| a.admit_hub_users) {
            wanted = Some(format!("connectors[{i}].access.admit_hub_users"));
        }
    }
    if let Some(key) = wanted {
        if hub.api_url.is_none() || hub.api_token.is_none() {
            return Err((
                key,
                "needs the hub's REST API: set [jupyterhub] api_url (e.g. \"http://127.0.0.1:8081/hub/api\") and \
                 api_token (a token of a hub service with the read:users scope, e.g. { env = \"HUBAUTH_HUB_API_TOKEN\" })"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// One `[clients.token_exchange]` rule on its own; errors name the field at fault.
fn validate_exchange_rule(x: &TokenExchangeConfig) -> Result<(), (String, String)> {
    for (j, t) in x.subject_token_types.iter().enumerate() {
        if !matches!(t.as_str(), "access_token" | "jupyterhub") {
            return Err((
                format!("subject_token_types[{j}]"),
                format!("{t:?}: use \"access_token\" or \"jupyterhub\""),
            ));
        }
    }
    if x.subject_token_types.iter().any(|t| t == "access_token") && x.subject_clients.is_empty() {
        return Err((
            "subject_clients".into(),
            "is needed with subject_token_types \"access_token\": name the clients whose access tokens may be exchanged, e.g. [\"jupyterhub\"] (the hub's client)".into(),
        ));
    }
    for (j, s) in x.subject_scopes.iter().enumerate() {
        if !crate::provider::scope::SUPPORTED.contains(&s.as_str()) {
            return Err((
                format!("subject_scopes[{j}]"),
                format!(
                    "{s:?} is not a scope hubauth grants; use some of {}",
                    crate::provider::scope::SUPPORTED.join(", ")
                ),
            ));
        }
    }
    let scope = &x.jupyterhub_scope;
    if scope.is_empty() || scope.contains('!') || scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            "jupyterhub_scope".into(),
            format!("{scope:?} is not a JupyterHub scope name (no filter, no spaces), e.g. \"{DEFAULT_JUPYTERHUB_EXCHANGE_SCOPE}\""),
        ));
    }
    Ok(())
}

/// `subject_clients` name clients that sign people in (only those hold people's access tokens).
fn validate_subject_clients(x: &TokenExchangeConfig, clients: &[ClientConfig]) -> Result<(), (usize, String)> {
    for (j, id) in x.subject_clients.iter().enumerate() {
        match clients.iter().find(|c| &c.id == id) {
            None => return Err((j, format!("there is no client {id:?}"))),
            Some(c) if !c.allows(GrantType::AuthorizationCode) => {
                return Err((
                    j,
                    format!(
                    "client {id:?} does not sign people in (no authorization_code), so it holds no one's access token"
                ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `localhost` or a loopback address: where plain http is acceptable.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn validate_issuer(issuer: &str) -> Result<Url, String> {
    let url = Url::parse(issuer).map_err(|e| format!("{issuer:?} is not an absolute URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err("must use https (plain http is only allowed on a loopback address such as 127.0.0.1)".into())
        }
        other => return Err(format!("scheme {other:?} is not allowed; use https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment (OpenID Connect Discovery §3)".into());
    }
    if issuer.ends_with('/') {
        return Err("must not end with '/': clients compare the issuer byte for byte".into());
    }
    Ok(url)
}

fn default_listen(issuer: &Url) -> Result<SocketAddr, String> {
    if is_loopback(issuer) {
        let port = issuer.port_or_known_default().unwrap_or(80);
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    } else {
        Err("is required when the issuer is not a loopback address (e.g. listen = \"0.0.0.0:5556\")".into())
    }
}

/// A registered redirect URI: absolute, no fragment, no wildcard (matching is exact, RFC 9700
/// §4.1.3, so a `*` would only ever match itself and hints at a misunderstanding), and https
/// unless on loopback or `allow_insecure` (the client's `allow_insecure_redirect`).
pub fn validate_redirect_uri(uri: &str, allow_insecure: bool) -> Result<(), String> {
    if uri.contains('*') {
        return Err(format!(
            "{uri:?} contains a wildcard `*`; redirect URIs are matched exactly (RFC 9700 §4.1.3): list each one in full"
        ));
    }
    let url = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URL ({e})"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} must not contain a fragment (RFC 6749 §3.1.2)"));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        if !allow_insecure {
            return Err(format!(
                "{uri:?} uses plain http on a host other than loopback, so codes and tokens would cross the \
                 network readable; use https, or set `allow_insecure_redirect = true` on this client to accept it"
            ));
        }
        tracing::warn!(uri, "redirect URI uses plain http on a non-loopback host (allow_insecure_redirect)");
    }
    Ok(())
}

fn validate_report(r: ReportConfig) -> Result<ReportConfig, (&'static str, String)> {
    if let Some(url) = &r.prometheus_url {
        let parsed = Url::parse(url).map_err(|e| ("prometheus_url", format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(("prometheus_url", "must be an http:// or https:// URL".into()));
        }
    }
    if !r.directory.contains("{username}") && !r.directory.contains("{escaped_username}") {
        return Err(("directory", "must contain {username} or {escaped_username}".into()));
    }
    for (key, name) in
        [("size_metric", &r.size_metric), ("mtime_metric", &r.mtime_metric), ("directory_label", &r.directory_label)]
    {
        let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || (c == ':' && key != "directory_label"));
        if !ok {
            return Err((key, format!("{name:?} is not a Prometheus name")));
        }
    }
    Ok(r)
}

/// Resolves a secret whose `file` path (if any) is already absolute or relative to the working
/// directory; [`Config::parse`] anchors connector secret files at the config file's folder.
pub fn resolve_secret(source: &SecretSource) -> Result<Secret, String> {
    resolve_secret_at(source, Path::new(""))
}

fn resolve_secret_at(source: &SecretSource, base_dir: &Path) -> Result<Secret, String> {
    match source {
        SecretSource::Inline(s) => Ok(Secret::new(s.clone())),
        SecretSource::Env { env } => std::env::var(env)
            .map(|v| Secret::new(v.trim().to_string()))
            .map_err(|_| format!("environment variable {env} is not set")),
        SecretSource::File { file } => {
            let p = base_dir.join(file);
            std::fs::read_to_string(&p)
                .map(|v| Secret::new(v.trim().to_string()))
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))
        }
    }
}

fn resolve_storage(raw: RawStorage, reader: &SecretReader) -> Result<StorageConfig, (String, String)> {
    let invalid = |key: &str, message: String| (key.to_string(), message);
    let base_dir = reader.base_dir;
    let Some(url) = reader.read(&raw.url).map_err(|m| invalid("storage.url", m))? else {
        // Not read (Secrets::Skip): nothing to check, and nothing will open it.
        return Ok(StorageConfig { url: "sqlite://(not read)".into(), ..StorageConfig::default() });
    };
    let url = url.expose().to_string();
    if !is_postgres_url(&url) {
        if raw.password.is_some() || raw.ssl_mode.is_some() || raw.ssl_root_cert.is_some() {
            return Err(invalid("storage", "password, ssl_mode and ssl_root_cert apply to postgres:// only".into()));
        }
        let url = resolve_sqlite_url(&url, base_dir).map_err(|m| invalid("storage.url", m))?;
        return Ok(StorageConfig { url, migrate: raw.migrate, ..StorageConfig::default() });
    }
    let mut parsed = url::Url::parse(&url).map_err(|e| invalid("storage.url", format!("{}: {e}", redact_url(&url))))?;
    if let Some(password) = &raw.password {
        let password = reader
            .read(password)
            .map_err(|m| invalid("storage.password", m))?
            .unwrap_or_else(|| Secret::new(String::new()));
        parsed
            .set_password(Some(password.expose()))
            .map_err(|()| invalid("storage.password", "the URL cannot carry a password".into()))?;
    }
    if raw.pool_size == 0 || raw.pool_size > 1000 {
        return Err(invalid("storage.pool_size", "must be between 1 and 1000".into()));
    }
    if raw.statement_timeout < Duration::from_millis(100) {
        return Err(invalid("storage.statement_timeout", "must be at least 100ms".into()));
    }
    const SSL_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];
    if let Some(mode) = &raw.ssl_mode {
        if !SSL_MODES.contains(&mode.as_str()) {
            return Err(invalid("storage.ssl_mode", format!("{mode:?} is not one of {}", SSL_MODES.join(", "))));
        }
    }
    let ssl_root_cert = raw.ssl_root_cert.map(|p| base_dir.join(p));
    if let Some(ca) = &ssl_root_cert {
        if !ca.is_file() {
            return Err(invalid("storage.ssl_root_cert", format!("{} is not a readable file", ca.display())));
        }
    }
    Ok(StorageConfig {
        url: parsed.to_string(),
        pool_size: raw.pool_size,
        statement_timeout: raw.statement_timeout,
        connect_timeout: raw.connect_timeout,
        ssl_mode: raw.ssl_mode,
        ssl_root_cert,
        migrate: raw.migrate,
    })
}

fn resolve_sqlite_url(url: &str, base_dir: &Path) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Err(format!("{url:?} is not supported; use sqlite://PATH or postgres://…"));
    };
    if rest.is_empty() {
        return Err("needs a file path after sqlite://".into());
    }
    let (file, query) = rest.split_once('?').map(|(f, q)| (f, Some(q))).unwrap_or((rest, None));
    let path = if Path::new(file).is_absolute() { PathBuf::from(file) } else { base_dir.join(file) };
    Ok(match query {
        Some(q) => format!("sqlite://{}?{q}", path.display()),
        None => format!("sqlite://{}", path.display()),
    })
}
