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
    /// Last token use per user, written at most once a minute (the activity report).
    pub token_use: crate::provider::token_use::TokenUse,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sealer: Option<Sealer>,
    ) -> anyhow::Result<SharedState> {
        let metrics = crate::metrics::Metrics::new(&config.metrics);
        let http = UpstreamHttp::new(Default::default())?.with_metrics(metrics.upstream());
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
        // Connectors that talk to a provider, and the hub's API, need the HTTP client: built now,
        // so that a machine without CA certificates fails here and not at the first sign-in.
        if connectors.keeps_tokens() || config.jupyterhub.api_url.is_some() {
            http.ready()?;
        }
        let login_throttle = LoginThrottle::new(limits, clock.clone(), &store, sealer.as_ref());
        let sealer = sealer.map(Arc::new);
        let keys = Arc::new(KeyManager::load_or_init(store.clone(), clock.clone(), sealer.clone()).await?);
        let connectors = Arc::new(connectors);
        let started_at = clock.now();
        Ok(Arc::new(Self {
            live: Default::default(),
            refresh_flights: Default::default(),
            token_use: Default::default(),
            metrics,
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

/// For readiness probes: 200 while this replica can do its work — the database answers and a
/// signing key of every algorithm is loaded and signs — 503 with a short reason otherwise (the
/// detail goes to the log).
async fn readyz(State(state): State<SharedState>) -> Response {
    let not_ready = |reason: &'static str, detail: String| {
        tracing::warn!(error = %detail, "readiness check failed: {reason}");
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}")).into_response()
    };
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.health()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return not_ready("storage unavailable", e.to_string()),
        Err(_) => return not_ready("storage unavailable", format!("no answer within {HEALTH_TIMEOUT:?}")),
    }
    let keys = state.keys.current();
    for alg in crate::crypto::SigningAlgorithm::ALL {
        let Some(signer) = keys.signer(alg) else {
            return not_ready("no signing key", format!("no active {} key is loaded", alg.as_str()));
        };
        if let Err(e) = signer.sign_jwt(&serde_json::json!({ "probe": true })) {
            return not_ready("signing key unusable", format!("{} key {} cannot sign: {e}", alg.as_str(), signer.kid));
        }
    }
    "ready".into_response()
}

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
    let text = state.metrics.render(state.store.as_ref(), state.clock.now()).await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// What `[metrics] listen` serves: metrics and probes, at the root (not under the issuer's path).
pub fn operations_router(state: SharedState) -> Router {
    let request_timeout = state.config.server.request_timeout;
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout))
        .layer(RequestBodyLimitLayer::new(1024))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// A request path fit for logs: secrets carried in the path are replaced.
fn loggable_path(path: &str) -> String {
    match path.find("/invite/") {
        Some(i) => format!("{}/invite/[redacted]", &path[..i]),
        None => path.chars().take(200).collect(),
    }
}

pub fn router(state: SharedState) -> Router {
    let mut routes = Router::new().route("/", get(home)).route("/healthz", get(healthz)).route("/readyz", get(readyz));
    // With a listener of their own, metrics stay off the public port.
    if state.config.metrics.listen.is_none() {
        routes = routes.route("/metrics", get(metrics));
    }
    let routes = routes
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/jwks", get(discovery::jwks))
        .route("/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/login", get(login::login_page))
        .route("/login/{connector}", post(login::login_submit))
        .route("/callback/{connector}", get(upstream::callback))
        .route("/invite/{token}", get(crate::web::invite::open))
        .route("/admin/login", get(crate::console::gate::login))
        .route("/admin/", get(crate::console::home))
        .route("/admin", get(|| async { axum::response::Redirect::permanent("admin/") }))
        .route("/admin/api/openapi.json", get(crate::admin::openapi::serve))
        .route("/admin/access", get(crate::console::access::list).post(crate::console::access::add))
        .route("/admin/access/{id}/delete", post(crate::console::access::remove))
        .route("/admin/invites", get(crate::console::invites::list).post(crate::console::invites::create))
        .route("/admin/invites/{id}/revoke", post(crate::console::invites::revoke))
        .route("/admin/audit", get(crate::console::audit::list))
        .route("/admin/report", get(crate::console::report::show))
        .route("/admin/report.csv", get(crate::console::report::csv))
        .route("/admin/tokens", get(crate::console::tokens::list).post(crate::console::tokens::create))
        .route("/admin/tokens/{id}/revoke", post(crate::console::tokens::revoke))
        .route("/admin/api/audit", get(crate::admin::api_audit::list_audit))
        .route("/admin/api/invites", get(crate::admin::api::list_invites).post(crate::admin::api::create_invite))
        .route("/admin/api/invites/{id}", axum::routing::delete(crate::admin::api::revoke_invite))
        .route("/admin/api/access", get(crate::admin::api::list_access).post(crate::admin::api::allow_access))
        .route("/admin/api/access/{id}", axum::routing::delete(crate::admin::api::deny_access))
        .route("/admin/api/report/activity", get(crate::admin::api::activity_report))
        .route("/admin/api/tokens", get(crate::admin::api::list_tokens).post(crate::admin::api::create_token))
        .route("/admin/api/tokens/{id}", axum::routing::delete(crate::admin::api::revoke_token))
        .route("/admin/users", get(crate::console::users::list))
        .route("/admin/users/bulk", post(crate::console::users::bulk))
        .route("/admin/users/bulk/apply", post(crate::console::users::bulk_apply))
        .route("/admin/users/{username}", get(crate::console::users::show))
        .route("/admin/users/{username}/{action}", post(crate::console::users::act))
        .route("/admin/api/users", get(crate::admin::api_users::list))
        .route("/admin/api/users/bulk", post(crate::admin::api_users::bulk))
        .route(
            "/admin/api/users/{username}",
            get(crate::admin::api_users::show).delete(crate::admin::api_users::delete),
        )
        .route("/admin/api/users/{username}/block", post(crate::admin::api_users::block))
        .route("/admin/api/users/{username}/unblock", post(crate::admin::api_users::unblock))
        .route("/admin/api/users/{username}/revoke-sessions", post(crate::admin::api_users::revoke_sessions))
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
    let listen = config.listen;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    serve_on(listener, config, sealer).await
}

/// [`serve_with_sealer`] on a listener already bound to `config.listen` (the demo binds before it
/// writes anything, so a busy port fails at once).
pub async fn serve_on(listener: tokio::net::TcpListener, config: Config, sealer: Option<Sealer>) -> anyhow::Result<()> {
    // A config loaded without its secrets holds stand-ins: it describes, it never serves.
    anyhow::ensure!(
        config.secrets == crate::config::Secrets::Resolve,
        "the configuration was loaded without its secrets"
    );
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

    let operations = match state.config.metrics.listen {
        Some(addr) => Some((
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ([metrics] listen): {e}"))?,
            addr,
        )),
        None => None,
    };
    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        crate::systemd::stopping();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let limits = state.config.server.clone();
    let operations = operations.map(|(listener, addr)| {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        // Probes and scrapers need few connections; the bound keeps this port from holding many.
        let limits = crate::config::ServerConfig { max_connections: limits.max_connections.min(64), ..limits.clone() };
        tokio::spawn(crate::server::serve(listener, operations_router(state.clone()), limits, stopped(stop_rx.clone())))
    });
    crate::crypto::random::warm_up();
    tracing::info!(issuer = %state.config.issuer, %listen, "hubauth is listening");
    // Bound, the store open, the keys loaded: connections already wait in the backlog and are
    // accepted from the next line on (`Type=notify` units start their dependents now).
    crate::systemd::ready(&format!("serving {} on {listen}", state.config.issuer));
    let store = state.store.clone();
    crate::server::serve(listener, router(state), limits, stopped(stop_rx)).await;
    if let Some(task) = operations {
        let _ = task.await;
    }
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "could not tidy the storage on the way out; the next start reads through it");
    }
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
