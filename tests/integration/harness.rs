//! An in-process hubauth: real router, a real database, a clock the test moves.
//!
//! The database is SQLite in a temp dir, or with `HUBAUTH_TEST_BACKEND=postgres` a throw-away
//! PostgreSQL database (`crate::pg`): `scripts/test` runs the whole suite both ways.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::BodyExt;
use hubauth::app::{router, AppState, SharedState};
use hubauth::clock::MockClock;
use hubauth::config::Config;
use hubauth::store::Store;
use tower::ServiceExt;

pub const ISSUER: &str = "http://127.0.0.1:5556";
pub const HUB_SECRET: &str = "hub-secret-0123456789";
pub const HUB_REDIRECT: &str = "http://127.0.0.1:8000/hub/oauth_callback";
pub const PUBLIC_REDIRECT: &str = "http://127.0.0.1:9000/cb";
pub const ES_REDIRECT: &str = "https://es.example.org/cb";
/// The ES256 client's credentials, for client_secret_basic.
pub const ES_CLIENT: (&str, &str) = ("es", "es-secret-0123456789");
pub const START: i64 = 1_800_000_000;

fn password_hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| {
        (
            hubauth::crypto::password::hash_password("ada-pw").unwrap(),
            hubauth::crypto::password::hash_password("sam-pw").unwrap(),
        )
    })
}

/// The keyring test apps seal upstream tokens with.
pub const TEST_CRYPT_KEY: &str = "5f0e1d2c3b4a59687786950413223140ffeeddccbbaa99887766554433221100";

pub fn test_sealer() -> hubauth::crypto::Sealer {
    hubauth::crypto::Sealer::from_keyring(TEST_CRYPT_KEY).unwrap()
}

pub fn config_toml(db_path: &str) -> String {
    config_toml_with_url(&format!("sqlite://{db_path}"))
}

/// The standard test config on the database at `url`.
pub fn config_toml_with_url(url: &str) -> String {
    let (ada, sam) = password_hashes();
    format!(
        r#"
issuer = "{ISSUER}"
[storage]
url = "{url}"
[[clients]]
id = "hub"
name = "Test Hub"
secret = "{HUB_SECRET}"
redirect_uris = ["{HUB_REDIRECT}", "http://127.0.0.1:8000/other?x=1"]
post_logout_redirect_uris = ["http://127.0.0.1:8000/hub/"]
[[clients]]
id = "es"
secret = "es-secret-0123456789"
redirect_uris = ["{ES_REDIRECT}"]
id_token_signed_response_alg = "ES256"
[[clients]]
id = "pub"
public = true
redirect_uris = ["{PUBLIC_REDIRECT}"]
[[connectors]]
type = "dev"
id = "dev"
[[connectors.users]]
username = "ada"
password_hash = "{ada}"
name = "Ada Lovelace"
email = "ada@example.org"
groups = ["admins"]
[[connectors.users]]
username = "sam"
password_hash = "{sam}"
groups = ["students"]
"#
    )
}

pub struct TestApp {
    pub state: SharedState,
    pub router: Router,
    pub clock: Arc<MockClock>,
    pub store: Arc<dyn Store>,
    pub _dir: tempfile::TempDir,
    /// The PostgreSQL database behind this app, dropped with it.
    pub _db: Option<crate::pg::TestDatabase>,
}

/// Whether this run puts the apps on PostgreSQL (`HUBAUTH_TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("HUBAUTH_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("HUBAUTH_TEST_BACKEND={other:?}: use sqlite or postgres"),
    }
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn location(&self) -> url::Url {
        let loc = self.headers.get(header::LOCATION).expect("a Location header").to_str().unwrap();
        url::Url::parse(loc).unwrap_or_else(|_| url::Url::parse(ISSUER).unwrap().join(loc).unwrap())
    }
    pub fn query(&self) -> HashMap<String, String> {
        self.location().query_pairs().into_owned().collect()
    }
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_string()
    }
}

impl TestApp {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hubauth.db");
        Self::with_toml(dir, &config_toml(db.to_str().unwrap())).await
    }

    /// The standard test config plus `extra` (more `[[connectors]]` entries, typically).
    pub async fn with_extra_toml(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hubauth.db");
        let toml = format!("{}\n{extra}", config_toml(db.to_str().unwrap()));
        Self::with_toml(dir, &toml).await
    }

    /// The standard test config on the existing database at `url` (which the caller owns).
    pub async fn at_url(url: &str) -> Self {
        Self::build(tempfile::tempdir().unwrap(), &config_toml_with_url(url), false).await
    }

    /// On SQLite whatever the run's backend: for tests about the file itself.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hubauth.db");
        Self::build(dir, &config_toml(db.to_str().unwrap()), false).await
    }

    pub async fn with_toml(dir: tempfile::TempDir, toml: &str) -> Self {
        Self::build(dir, toml, on_postgres()).await
    }

    async fn build(dir: tempfile::TempDir, toml: &str, on_postgres: bool) -> Self {
        let config_path = dir.path().join("hubauth.toml");
        let mut config = Config::parse(toml, &config_path).expect("test config is valid");
        let db = if on_postgres {
            let db =
                crate::pg::database().await.expect("HUBAUTH_TEST_BACKEND=postgres needs HUBAUTH_TEST_POSTGRES_URL");
            config.storage.url = db.url.clone();
            Some(db)
        } else {
            None
        };
        let store = hubauth::store::open(&config.storage, hubauth::store::Migrate::Apply).await.unwrap();
        let clock = Arc::new(MockClock::new(START));
        let state = AppState::new(config, store.clone(), clock.clone(), Some(test_sealer())).await.unwrap();
        let router = router(state.clone());
        Self { state, router, clock, store, _dir: dir, _db: db }
    }

    /// Runs `sql` on the app's database from the side, as another process would.
    pub async fn sql_execute(&self, sql: &str) {
        let url = self.state.config.storage.url.clone();
        if let Some(path) = url.strip_prefix("sqlite://") {
            rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap();
        } else {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
        }
    }

    /// How many rows `table` holds, read from the side.
    pub async fn sql_count(&self, table: &str) -> i64 {
        let url = self.state.config.storage.url.clone();
        let sql = format!("SELECT count(*) FROM {table}");
        if let Some(path) = url.strip_prefix("sqlite://") {
            rusqlite::Connection::open(path).unwrap().query_row(&sql, [], |r| r.get(0)).unwrap()
        } else {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut conn).await.unwrap()
        }
    }

    pub async fn send(&self, req: Request<Body>) -> TestResponse {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "500 from hubauth: {}", String::from_utf8_lossy(&body));
        TestResponse { status, headers, body }
    }

    pub async fn get(&self, uri: &str) -> TestResponse {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    pub async fn post_form(&self, uri: &str, pairs: &[(&str, &str)], basic: Option<(&str, &str)>) -> TestResponse {
        let body = form(pairs);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            req = req.header(header::AUTHORIZATION, basic_header(id, secret));
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// The token endpoint with the hub client's credentials in the body (as OAuthenticator sends them).
    pub async fn token(&self, pairs: &[(&str, &str)]) -> TestResponse {
        let mut all = pairs.to_vec();
        all.push(("client_id", "hub"));
        all.push(("client_secret", HUB_SECRET));
        self.post_form("/token", &all, None).await
    }

    pub fn browser(&self) -> Browser<'_> {
        Browser { app: self, cookies: HashMap::new(), peer: None, headers: Vec::new() }
    }

    /// A browser whose requests arrive from `peer` (the TCP peer address `serve` would see).
    pub fn browser_from(&self, peer: &str) -> Browser<'_> {
        Browser { peer: Some(peer.parse().expect("an ip:port")), ..self.browser() }
    }

    /// The hub client's code exchange, as OAuthenticator sends it.
    pub async fn exchange(&self, code: &str, pkce: &Pkce) -> TestResponse {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", HUB_REDIRECT),
            ("code_verifier", &pkce.verifier),
        ])
        .await
    }

    /// A code exchange by the `es` client (client_secret_basic) with the given redirect_uri.
    pub async fn exchange_as_es(&self, code: &str, pkce: &Pkce, redirect_uri: &str) -> TestResponse {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &pkce.verifier),
        ];
        self.post_form("/token", &form, Some(ES_CLIENT)).await
    }

    /// A complete login of `user` for the hub client; returns the token response JSON.
    pub async fn login_and_exchange(&self, user: &str, password: &str) -> serde_json::Value {
        let pkce = Pkce::new();
        let code = self.browser().login_for_code(&AuthParams::hub(&pkce), user, password).await;
        let res = self.exchange(&code, &pkce).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()
    }

    pub async fn userinfo(&self, access_token: &str) -> TestResponse {
        self.send(
            Request::get("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {access_token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

pub fn basic_header(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = hubauth::crypto::random::random_value();
        let challenge = URL_SAFE_NO_PAD.encode(hubauth::crypto::random::sha256(verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

/// Authorization request parameters, as an ordered list so tests can add, drop or repeat some.
#[derive(Clone)]
pub struct AuthParams(pub Vec<(String, String)>);

impl AuthParams {
    pub fn hub(pkce: &Pkce) -> Self {
        Self(
            [
                ("response_type", "code"),
                ("client_id", "hub"),
                ("redirect_uri", HUB_REDIRECT),
                ("scope", "openid profile email groups offline_access"),
                ("state", "st-123"),
                ("nonce", "n-456"),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
    }
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.into(), value.into()));
        self
    }
    pub fn without(mut self, key: &str) -> Self {
        self.0.retain(|(k, _)| k != key);
        self
    }
    pub fn uri(&self) -> String {
        let pairs: Vec<(&str, &str)> = self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        format!("/authorize?{}", form(&pairs))
    }
}

/// A browser: keeps cookies between requests.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub cookies: HashMap<String, String>,
    /// The TCP peer its requests come from (`ConnectInfo`), if the test says.
    pub peer: Option<std::net::SocketAddr>,
    /// Headers sent with every request (e.g. a proxy's `X-Forwarded-For`).
    pub headers: Vec<(String, String)>,
}

impl Browser<'_> {
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    async fn send(&self, mut req: axum::http::request::Builder, body: Body) -> TestResponse {
        req = req.header(header::COOKIE, self.cookie_header());
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(peer) = self.peer {
            req = req.extension(axum::extract::ConnectInfo(peer));
        }
        self.app.send(req.body(body).unwrap()).await
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn remember(&mut self, res: &TestResponse) {
        for v in res.headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    pub async fn get(&mut self, uri: &str) -> TestResponse {
        let res = self.send(Request::get(uri), Body::empty()).await;
        self.remember(&res);
        res
    }

    pub async fn post(&mut self, uri: &str, pairs: &[(&str, &str)]) -> TestResponse {
        let req = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        let res = self.send(req, Body::from(form(pairs))).await;
        self.remember(&res);
        res
    }

    /// From `/authorize` to the login form; returns (form action path, request id, csrf).
    pub async fn open_login_form(&mut self, params: &AuthParams) -> (String, String, String) {
        let res = self.get(&params.uri()).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let loc = res.location();
        assert_eq!(loc.path(), "/login");
        let mut page = self.get(&format!("/login?{}", loc.query().unwrap())).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        if !page.text().contains("<form") {
            // Several connectors: the chooser. Pick the password one.
            page = self.get(&format!("/login?{}&connector=dev", loc.query().unwrap())).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        }
        let html = page.text();
        let action = url::Url::parse(&attr_after(&html, "<form", "action")).unwrap().path().to_string();
        (action, input_value(&html, "request"), input_value(&html, "csrf"))
    }

    /// Logs in through the form and returns the code from the redirect.
    pub async fn login_for_code(&mut self, params: &AuthParams, user: &str, password: &str) -> String {
        let res = self.submit_login(params, user, password).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let q = res.query();
        assert_eq!(q.get("iss").map(String::as_str), Some(ISSUER));
        q.get("code").expect("a code in the redirect").clone()
    }

    /// From `/authorize` (with `connector=`) to the upstream's authorization URL.
    pub async fn start_upstream(&mut self, params: &AuthParams, connector: &str) -> url::Url {
        let res = self.get(&params.clone().set("connector", connector).uri()).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let loc = res.location();
        assert_eq!(loc.path(), "/login");
        let res = self.get(&format!("/login?{}", loc.query().unwrap())).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "expected a redirect to the provider: {}", res.text());
        res.location()
    }

    /// The provider sends the browser back to hubauth's callback with `pairs`.
    pub async fn upstream_callback(&mut self, connector: &str, pairs: &[(&str, &str)]) -> TestResponse {
        self.get(&format!("/callback/{connector}?{}", form(pairs))).await
    }

    /// A whole upstream login where the provider approves at once with `code`; returns the
    /// hubauth code (panics with the page text if the login fails).
    pub async fn upstream_login_for_code(&mut self, params: &AuthParams, connector: &str, code: &str) -> String {
        let upstream = self.start_upstream(params, connector).await;
        let state: String = upstream.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).unwrap();
        let res = self.upstream_callback(connector, &[("code", code), ("state", &state)]).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        res.query().get("code").expect("a code in the redirect").clone()
    }

    pub async fn submit_login(&mut self, params: &AuthParams, user: &str, password: &str) -> TestResponse {
        let (action, request, csrf) = self.open_login_form(params).await;
        self.post(&action, &[("request", &request), ("csrf", &csrf), ("username", user), ("password", password)]).await
    }
}

pub fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no input {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

fn attr_after(html: &str, tag: &str, attr: &str) -> String {
    let t = html.find(tag).expect("tag present");
    let marker = format!("{attr}=\"");
    let start = html[t..].find(&marker).unwrap() + t + marker.len();
    html[start..].split('"').next().unwrap().replace("&#x2f;", "/").replace("&#x2F;", "/")
}

/// Verifies a JWT against the JWKS with an independent library (jsonwebtoken), as a client would.
pub async fn verify_jwt(app: &TestApp, jwt: &str, audience: &str) -> serde_json::Value {
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(app.get("/jwks").await.json()).unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let kid = header.kid.expect("a kid in the header");
    let jwk = jwks.find(&kid).expect("the kid is published in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    validation.validate_exp = false; // the mock clock is in the future
    jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation).expect("ID token verifies").claims
}

/// Runs a `hubauth serve`/`demo` command until it logs "hubauth is listening", stops it, and
/// returns its log lines.
pub fn run_until_listening(mut command: std::process::Command) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let mut server = command
        .env_remove("HUBAUTH_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(server.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let listening = line.contains("hubauth is listening");
        lines.push(line);
        if listening {
            break;
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(lines.last().is_some_and(|l| l.contains("hubauth is listening")), "the server did not start: {lines:?}");
    lines
}
