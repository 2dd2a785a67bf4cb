//! Wiring: the shared state every handler receives, the router, and the server loop.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::connectors::http::UpstreamHttp;
use crate::connectors::Connectors;
use crate::crypto::keys::KeyManager;
use crate::crypto::seal::{Sealer, CRYPT_KEY_ENV};
use crate::password_login::{LoginThrottle, PasswordChecks};
use crate::provider::{authorize, discovery, introspect, logout, revoke, token, userinfo};
use crate::store::Store;
use crate::web::pages::{templates, PageError};
use crate::web::{login, upstream};

pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<KeyManager>,
    pub connectors: Arc<Connectors>,
    pub login_throttle: LoginThrottle,
    /// The bound on argon2 checks running at once (shared by every password connector).
    pub password_checks: Arc<PasswordChecks>,
    /// Seals upstream tokens and the signing keys at rest; present whenever a connector keeps
    /// tokens (without it, signing keys are stored in the clear).
    pub sealer: Option<Arc<Sealer>>,
    pub metrics: crate::metrics::Metrics,
    /// The outbound HTTP client (providers, the hub's API).
    pub http: UpstreamHttp,
    /// Per-user re-checks of upstream memberships (one at a time per user).
    pub live: crate::policy::live::LiveChecks,
    /// Upstream token refreshes that ended, for callers that waited on them (token custody).
    pub refresh_flights: crate::custody::RefreshFlights,
    /// When this server started: users last checked before it are re-checked (the config may
    /// have changed).
    pub started_at: crate::clock::UnixTime,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sealer: Option<Sealer>,
    ) -> anyhow::Result<SharedState> {
        let http = UpstreamHttp::new(Default::default())?;
        let limits = &config.password_login;
        let password_checks = Arc::new(PasswordChecks::new(limits.max_concurrent_checks, limits.check_queue_timeout));
        let connectors = Connectors::from_config(&config.connectors, &http, &password_checks)
            .map_err(|e| anyhow::anyhow!("connector setup failed: `{}`: {}", e.key, e.message))?;
        if connectors.keeps_tokens() && sealer.is_none() {
            anyhow::bail!(
                "{CRYPT_KEY_ENV} is not set. Connectors that sign people in at another provider keep that \
                 provider's tokens, and hubauth stores them only encrypted. Set {CRYPT_KEY_ENV} to a random \
                 32-byte key (e.g. the output of `hubauth keys generate-crypt-key`), and keep it: without it \
                 the stored tokens cannot be read."
            );
        }
        let login_throttle = LoginThrottle::new(limits, clock.clone(), &store, sealer.as_ref());
        let sealer = sealer.map(Arc::new);
        let keys = Arc::new(KeyManager::load_or_init(store.clone(), clock.clone(), sealer.clone()).await?);
        let connectors = Arc::new(connectors);
        let started_at = clock.now();
        Ok(Arc::new(Self {
            live: Default::default(),
            refresh_flights: Default::default(),
            metrics: Default::default(),
            http: http.clone(),
            started_at,
            sealer,
            config: Arc::new(config),
            store,
            clock,
            keys,
            connectors,
            login_throttle,
            password_checks,
        }))
    }
}

/// Opens the configured store, migrating its schema unless `[storage] migrate = false`.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let migrate = if config.storage.migrate { crate::store::Migrate::Apply } else { crate::store::Migrate::Refuse };
    crate::store::open(&config.storage, migrate).await
}

async fn home(State(state): State<SharedState>) -> Response {
    templates().render(
        StatusCode::OK,
        "home.html",
        minijinja::context! { discovery_url => state.config.endpoint("/.well-known/openid-configuration") },
    )
}

async fn not_found() -> Response {
    PageError::new(StatusCode::NOT_FOUND, "not_found", "Page not found", "There is nothing at this address.")
        .into_response()
}

/// For load balancers and Kubernetes probes: 200 once the database answers reads and the write
/// path is alive, 503 otherwise (the reason goes to the log, not to the unauthenticated caller).
async fn healthz(State(state): State<SharedState>) -> Response {
    // A wedged disk must fail the probe, not hang it.
    let failure = match tokio::time::timeout(HEALTH_TIMEOUT, state.store.health()).await {
        Ok(Ok(())) => return "ok".into_response(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {HEALTH_TIMEOUT:?}"),
    };
    tracing::warn!(error = %failure, "health check failed: the database did not answer");
    (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable").into_response()
}

const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

async fn metrics(State(state): State<SharedState>, headers: axum::http::HeaderMap) -> Response {
    // With [metrics] token set, scrapers must send it as a Bearer token.
    if let Some(token) = &state.config.metrics.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token.matches(presented) {
            return (StatusCode::UNAUTHORIZED, "metrics need the configured token").into_response();
        }
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

/// A request path fit for logs: secrets carried in the path are replaced.
fn loggable_path(path: &str) -> String {
    match path.find("/invite/") {
        Some(i) => format!("{}/invite/[redacted]", &path[..i]),
        None => path.chars().take(200).collect(),
    }
}

pub fn router(state: SharedState) -> Router {
    let routes = Router::new()
        .route("/", get(home))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/jwks", get(discovery::jwks))
        .route("/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/login", get(login::login_page))
        .route("/login/{connector}", post(login::login_submit))
        .route("/callback/{connector}", get(upstream::callback))
        .route("/invite/{token}", get(crate::web::invite::open))
        .route("/admin/api/invites", get(crate::admin::api::list_invites).post(crate::admin::api::create_invite))
        .route("/admin/api/invites/{id}", axum::routing::delete(crate::admin::api::revoke_invite))
        .route("/token", post(token::token))
        .route("/userinfo", get(userinfo::userinfo_get).post(userinfo::userinfo_post))
        .route("/revoke", post(revoke::revoke))
        .route("/introspect", post(introspect::introspect))
        .route("/logout", get(logout::logout_get).post(logout::logout_post))
        .fallback(not_found);
    let prefix = state.config.path_prefix();
    let app = if prefix.is_empty() { routes } else { Router::new().nest(&prefix, routes).fallback(not_found) };
    let request_timeout = state.config.server.request_timeout;
    app.with_state(state)
        .layer(axum::middleware::from_fn(crate::web::request_id::middleware))
        // Every request ends: a handler stuck on a slow upstream answers 503 after `[server]
        // request_timeout` instead of holding its connection forever.
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout))
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action *; frame-ancestors 'none'",
            ),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
            // The path only: query strings carry codes and state, and an invite link's path is
            // its secret, so neither reaches the logs.
            tracing::debug_span!("http", method = %req.method(), path = %loggable_path(req.uri().path()))
        }))
}

/// Runs the server until Ctrl-C / SIGTERM, with the housekeeping tasks beside it.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let sealer = Sealer::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    serve_with_sealer(config, sealer).await
}

/// [`serve`] with the crypt keyring given rather than read from the environment (the demo keeps
/// its own).
pub async fn serve_with_sealer(config: Config, sealer: Option<Sealer>) -> anyhow::Result<()> {
    for warning in crate::groups::audit::warnings(&config) {
        tracing::warn!("config: {warning}");
    }
    let store = open_store(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let listen = config.listen;
    let state = AppState::new(config, store, clock, sealer).await?;

    let background = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        let mut rounds: u64 = 0;
        loop {
            tick.tick().await;
            // Pick up keys rotated by the CLI or another replica.
            if let Err(e) = background.keys.reload().await {
                tracing::warn!(error = %e, "could not reload signing keys");
            }
            if rounds.is_multiple_of(20) {
                match background.store.purge_expired(background.clock.now()).await {
                    Ok(n) if n > 0 => tracing::debug!(removed = n, "purged expired rows"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not purge expired rows"),
                }
            }
            rounds += 1;
        }
    });

    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(issuer = %state.config.issuer, %listen, "hubauth is listening");
    let limits = state.config.server.clone();
    crate::server::serve(listener, router(state), limits, shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
