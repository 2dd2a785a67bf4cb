//! Talking to upstream providers: one HTTP client with timeouts and no redirects (an OAuth client
//! that follows redirects can be steered at internal hosts), bounded retries where a request is
//! safe to repeat, rate-limit answers turned into short waits or clear errors, and `Link`-header
//! pagination that never silently stops early.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::untrusted::printable;
use super::{ConnectorError, UpstreamTokens};
use crate::crypto::Secret;
use crate::metrics::{UpstreamMetrics, UpstreamOutcome};

/// How long a login may wait for an upstream's rate limit to lift before giving up with a
/// clear error (the person is looking at a spinning page meanwhile).
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);
/// Retries after the first attempt, for requests that are safe to repeat.
const RETRIES: u32 = 2;
/// A provider that paginates beyond this is refused loudly rather than read partially.
pub const MAX_PAGES: usize = 50;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(5), request: Duration::from_secs(15) }
    }
}

/// The shared upstream HTTP client.
///
/// Built on first use, not at start: building one loads and parses every CA certificate of the
/// system (≈ 10 ms and ≈ 1 MiB each time), which a broker with only `dev` users never needs.
/// Servers whose connectors talk to a provider call [`Self::ready`] at start, so a machine
/// without CA certificates still fails there, with the reason, not at the first sign-in.
#[derive(Clone)]
pub struct UpstreamHttp {
    client: Arc<LazyClient>,
    /// Backoff before retry `n` (1-based) is `n * retry_backoff`.
    retry_backoff: Duration,
    /// Where each request's latency and failure are counted, and under which connector id.
    metrics: Option<(Arc<UpstreamMetrics>, Arc<str>)>,
}

struct LazyClient {
    timeouts: Timeouts,
    /// The client, or why it could not be built (kept: every later use gets the same answer).
    built: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl UpstreamHttp {
    pub fn new(timeouts: Timeouts) -> anyhow::Result<Self> {
        Ok(Self {
            client: Arc::new(LazyClient { timeouts, built: Default::default() }),
            retry_backoff: Duration::from_millis(250),
            metrics: None,
        })
    }

    /// The same client with other timeouts (a connector's own `timeout`), counted the same way.
    pub fn with_timeouts(&self, timeouts: Timeouts) -> anyhow::Result<Self> {
        Ok(Self { client: Arc::new(LazyClient { timeouts, built: Default::default() }), ..self.clone() })
    }

    /// Counts every request into `metrics` (under connector `-` until [`Self::for_connector`]).
    pub fn with_metrics(mut self, metrics: Arc<UpstreamMetrics>) -> Self {
        self.metrics = Some((metrics, Arc::from("-")));
        self
    }

    /// A handle whose requests are counted under `connector` (a configured id).
    pub fn for_connector(&self, connector: &str) -> Self {
        let mut http = self.clone();
        if let Some((_, label)) = &mut http.metrics {
            *label = Arc::from(connector);
        }
        http
    }

    /// Builds the client now if it is not yet: an error says why it cannot be (e.g. no CA
    /// certificates on this machine).
    pub fn ready(&self) -> anyhow::Result<()> {
        self.client().map(|_| ()).map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))
    }

    /// The client, built on first use.
    pub fn client(&self) -> Result<&reqwest::Client, String> {
        let lazy = &*self.client;
        lazy.built
            .get_or_init(|| build_client(lazy.timeouts).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Records one request made through [`Self::client`] directly, started at `started`.
    pub fn observe(&self, started: Instant, result: Result<StatusCode, &reqwest::Error>) {
        if let Some((metrics, connector)) = &self.metrics {
            let outcome = match result {
                Ok(status) => UpstreamOutcome::Status(status.as_u16()),
                Err(e) if e.is_timeout() => UpstreamOutcome::TimedOut,
                Err(e) if e.is_connect() => UpstreamOutcome::Unreachable,
                Err(_) => UpstreamOutcome::Failed,
            };
            metrics.observe(connector, started.elapsed(), outcome);
        }
    }
}

fn build_client(timeouts: Timeouts) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .user_agent(concat!("hubauth/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// An upstream answer: status, headers and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json<T: for<'de> Deserialize<'de>>(&self, what: &str) -> Result<T, ConnectorError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ConnectorError::failed(format!("{what}: the answer is not the expected JSON ({e})")))
    }
}

/// Who is asking: the person's own token, or none.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// GitHub's `Authorization: token …` is the same as Bearer today; kept as Bearer.
    Basic(&'a str, &'a str),
}

fn seconds_header(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// How long the upstream asks us to wait, from `Retry-After` or GitHub's `X-RateLimit-Reset`.
fn asked_wait(answer: &Answer) -> Option<Duration> {
    if let Some(s) = seconds_header(&answer.headers, RETRY_AFTER.as_str()) {
        return Some(Duration::from_secs(s));
    }
    if seconds_header(&answer.headers, "x-ratelimit-remaining") == Some(0) {
        let reset = seconds_header(&answer.headers, "x-ratelimit-reset")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
    }
    None
}

/// Whether an answer is a rate limit, by the conventions of the providers we talk to:
/// 429 anywhere; GitHub's 403 with `X-RateLimit-Remaining: 0` or a secondary-limit message;
/// Canvas's 403 "Rate Limit Exceeded".
pub fn is_rate_limited(answer: &Answer) -> bool {
    if answer.status == StatusCode::TOO_MANY_REQUESTS {
        return true;
    }
    if answer.status != StatusCode::FORBIDDEN {
        return false;
    }
    if seconds_header(&answer.headers, "x-ratelimit-remaining") == Some(0) || answer.headers.contains_key(RETRY_AFTER) {
        return true;
    }
    let body = String::from_utf8_lossy(&answer.body).to_ascii_lowercase();
    body.contains("rate limit")
}

impl UpstreamHttp {
    /// One request, no retries.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        auth: Auth<'_>,
        extra_headers: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
    ) -> Result<Answer, ConnectorError> {
        let client =
            self.client().map_err(|e| ConnectorError::failed(format!("cannot set up the HTTP client: {e}")))?;
        let mut req = client.request(method, url).header(ACCEPT, HeaderValue::from_static("application/json"));
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => req = req.header(AUTHORIZATION, format!("Bearer {token}")),
            Auth::Basic(user, password) => req = req.basic_auth(form_encode(user), Some(form_encode(password))),
        }
        // Replace, not append: a connector's own `Accept` (GitHub's media type) must not travel
        // next to the default one.
        let mut extra = HeaderMap::new();
        for (k, v) in extra_headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ConnectorError::failed(format!("bad header name {k:?}")))?;
            let value = HeaderValue::from_str(v).map_err(|_| ConnectorError::failed(format!("bad value for {k}")))?;
            extra.append(name, value);
        }
        req = req.headers(extra);
        if let Some(form) = form {
            req = req.form(form);
        }
        let started = Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.observe(started, Err(&e));
                return Err(failure(&e, url));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await;
        // The whole answer, body included, is the latency a sign-in waits for.
        self.observe(started, body.as_ref().map(|_| status));
        let body = body.map_err(|e| failure(&e, url))?;
        Ok(Answer { status, headers, body })
    }

    /// A GET (safe to repeat): retried on network errors and 502/503/504 with backoff, waits out
    /// short rate limits, and fails clearly on long ones or any other non-2xx answer.
    pub async fn get(
        &self,
        url: &str,
        auth: Auth<'_>,
        extra_headers: &[(&str, &str)],
    ) -> Result<Answer, ConnectorError> {
        self.get_accepting(url, auth, extra_headers, &[]).await
    }

    /// [`UpstreamHttp::get`], except that an answer with one of the `accept` statuses (a 401 that
    /// means "session over", a 404 that means "not allowed to see") comes back as it is, for the
    /// caller to judge. Rate limits are still recognised and handled first.
    pub async fn get_accepting(
        &self,
        url: &str,
        auth: Auth<'_>,
        extra_headers: &[(&str, &str)],
        accept: &[StatusCode],
    ) -> Result<Answer, ConnectorError> {
        let mut attempt = 0;
        loop {
            let result = self.send(Method::GET, url, auth, extra_headers, None).await;
            let retry_in = match &result {
                // A timeout already cost the person `request` seconds: fail now, don't triple it.
                Err(ConnectorError::TimedOut(_)) => None,
                Err(_) => Some(self.retry_backoff * (attempt + 1)),
                Ok(a) if is_rate_limited(a) => {
                    // Without a stated wait (Canvas sends none), give the quota a second per try to refill.
                    let wait = asked_wait(a).unwrap_or(Duration::from_secs(1) * (attempt + 1));
                    if wait > MAX_RATE_LIMIT_WAIT {
                        return Err(ConnectorError::RateLimited {
                            reason: format!("{} answered {} for {}", host_of(url), a.status, path_of(url)),
                            retry_after: Some(wait.as_secs()),
                        });
                    }
                    Some(wait)
                }
                Ok(a) if matches!(a.status.as_u16(), 502..=504) => Some(self.retry_backoff * (attempt + 1)),
                Ok(_) => None,
            };
            match retry_in {
                Some(wait) if attempt < RETRIES => {
                    tracing::debug!(
                        host = host_of(url),
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "retrying upstream request"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => {
                    let answer = result?;
                    if is_rate_limited(&answer) {
                        return Err(ConnectorError::RateLimited {
                            reason: format!("{} kept answering {} for {}", host_of(url), answer.status, path_of(url)),
                            retry_after: asked_wait(&answer).map(|d| d.as_secs()),
                        });
                    }
                    if !answer.status.is_success() && !accept.contains(&answer.status) {
                        return Err(ConnectorError::failed(format!(
                            "{} answered {} for {}{}",
                            host_of(url),
                            answer.status,
                            path_of(url),
                            error_detail(&answer.body)
                        )));
                    }
                    return Ok(answer);
                }
            }
        }
    }

    /// Every page of a `Link`-paginated JSON array, one request after another. Next links must
    /// stay on the same origin; more than [`MAX_PAGES`] pages is an error, never a silent cut.
    pub async fn get_all_pages(
        &self,
        first_url: &str,
        auth: Auth<'_>,
        extra_headers: &[(&str, &str)],
    ) -> Result<Vec<serde_json::Value>, ConnectorError> {
        match self.get_all_pages_accepting(first_url, auth, extra_headers, &[]).await? {
            Ok(items) => Ok(items),
            Err(answer) => Err(ConnectorError::failed(format!(
                "{} answered {} for {}",
                host_of(first_url),
                answer.status,
                path_of(first_url)
            ))),
        }
    }

    /// [`UpstreamHttp::get_all_pages`], except that a page answered with one of the `accept`
    /// statuses ends the reading with that answer (`Ok(Err(answer))`) for the caller to judge.
    pub async fn get_all_pages_accepting(
        &self,
        first_url: &str,
        auth: Auth<'_>,
        extra_headers: &[(&str, &str)],
        accept: &[StatusCode],
    ) -> Result<Result<Vec<serde_json::Value>, Answer>, ConnectorError> {
        let origin = url::Url::parse(first_url)
            .map_err(|e| ConnectorError::failed(format!("bad URL {first_url}: {e}")))?
            .origin();
        let mut items = Vec::new();
        let mut next = Some(first_url.to_string());
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ConnectorError::failed(format!(
                    "{} returned more than {MAX_PAGES} pages for {}; refusing to read a partial list",
                    host_of(first_url),
                    path_of(first_url)
                )));
            }
            let answer = self.get_accepting(&url, auth, extra_headers, accept).await?;
            if !answer.status.is_success() {
                return Ok(Err(answer));
            }
            match answer.json::<serde_json::Value>(&format!("{} {}", host_of(&url), path_of(&url)))? {
                serde_json::Value::Array(page) => items.extend(page),
                _ => {
                    return Err(ConnectorError::failed(format!(
                        "{} {}: expected a JSON list",
                        host_of(&url),
                        path_of(&url)
                    )))
                }
            }
            if let Some(link) = next_link(&answer.headers) {
                let parsed =
                    url::Url::parse(&link).or_else(|_| url::Url::parse(&url).and_then(|base| base.join(&link)));
                match parsed {
                    Ok(u) if u.origin() == origin => next = Some(u.to_string()),
                    _ => {
                        return Err(ConnectorError::failed(format!(
                            "{}: the next-page link leaves the provider's site; not followed",
                            host_of(&url)
                        )))
                    }
                }
            }
            // Canvas asks clients to slow down as its quota drains (X-Rate-Limit-Remaining).
            if let Some(remaining) = answer
                .headers
                .get("x-rate-limit-remaining")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok())
            {
                if remaining < 100.0 && next.is_some() {
                    tokio::time::sleep(self.retry_backoff).await;
                }
            }
        }
        Ok(Ok(items))
    }

    /// A token request (RFC 6749 §4.1.3 / §6). Never retried: a code is single use.
    pub async fn token_request(
        &self,
        token_url: &str,
        client: &ClientCredentials,
        form: &[(&str, &str)],
    ) -> Result<TokenAnswer, ConnectorError> {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let auth = match client.method {
            ClientAuthMethod::Basic => Auth::Basic(&client.id, client.secret.expose()),
            ClientAuthMethod::Post => {
                fields.push(("client_id", &client.id));
                fields.push(("client_secret", client.secret.expose()));
                Auth::None
            }
        };
        let answer = self.send(Method::POST, token_url, auth, &[], Some(&fields)).await?;
        if is_rate_limited(&answer) {
            return Err(ConnectorError::RateLimited {
                reason: format!("{} token endpoint answered {}", host_of(token_url), answer.status),
                retry_after: asked_wait(&answer).map(|d| d.as_secs()),
            });
        }
        // GitHub answers errors with 200 and an `error` field; others with 400/401.
        let parsed: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|_| {
            ConnectorError::failed(format!(
                "{} token endpoint answered {} without JSON",
                host_of(token_url),
                answer.status
            ))
        })?;
        if let Some(error) = parsed.get("error").and_then(|e| e.as_str()) {
            let description = parsed.get("error_description").and_then(|d| d.as_str()).unwrap_or("");
            return Err(TokenError { error: printable(error, 64), description: printable(description, 200) }.into());
        }
        if !answer.status.is_success() {
            return Err(ConnectorError::failed(format!(
                "{} token endpoint answered {}",
                host_of(token_url),
                answer.status
            )));
        }
        let raw: RawTokenAnswer = serde_json::from_value(parsed).map_err(|e| {
            ConnectorError::failed(format!("{} token endpoint: unexpected answer ({e})", host_of(token_url)))
        })?;
        if raw.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
            return Err(ConnectorError::failed(format!(
                "{} issued a {:?} token; only Bearer tokens are supported",
                host_of(token_url),
                raw.token_type.unwrap_or_default()
            )));
        }
        Ok(TokenAnswer {
            access_token: Secret::new(raw.access_token),
            refresh_token: raw.refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
            expires_in: raw.expires_in.and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))),
            id_token: raw.id_token.map(Secret::new),
            scope: raw.scope,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 §2.3.1).
    #[default]
    #[serde(rename = "client_secret_basic")]
    Basic,
    #[serde(rename = "client_secret_post")]
    Post,
}

/// hubauth's own credentials at an upstream.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: Secret,
    pub method: ClientAuthMethod,
}

#[derive(Deserialize)]
struct RawTokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    /// A number per RFC 6749; some providers send a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// A successful token answer.
pub struct TokenAnswer {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<i64>,
    pub id_token: Option<Secret>,
    pub scope: Option<String>,
}

impl TokenAnswer {
    /// As tokens to keep. On refresh, `previous_refresh` is kept when the answer carries none
    /// (Canvas, and any provider that does not rotate refresh tokens).
    pub fn into_tokens(self, now: i64, previous_refresh: Option<&Secret>) -> UpstreamTokens {
        UpstreamTokens {
            access_token: self.access_token,
            refresh_token: self.refresh_token.or_else(|| previous_refresh.cloned()),
            expires_at: self.expires_in.filter(|s| *s > 0).map(|s| now + s),
            id_token: self.id_token,
            scope: self.scope,
            obtained_at: Some(now),
        }
    }
}

/// An OAuth error answer from a token endpoint (RFC 6749 §5.2).
#[derive(Debug)]
pub struct TokenError {
    pub error: String,
    pub description: String,
}

impl From<TokenError> for ConnectorError {
    fn from(e: TokenError) -> Self {
        let text = if e.description.is_empty() { e.error.clone() } else { format!("{}: {}", e.error, e.description) };
        match e.error.as_str() {
            // On a refresh: the upstream session is over. On a code: a stale or replayed code.
            "invalid_grant" | "bad_refresh_token" | "bad_verification_code" => ConnectorError::SessionEnded(text),
            // Canvas's answer to a refresh token it no longer has (revoked, or deleted with its
            // access token when the person removed the integration).
            "invalid_request" if e.description == "refresh_token not found" => ConnectorError::SessionEnded(text),
            "access_denied" => ConnectorError::Denied(text),
            // hubauth's own credentials at the provider are wrong: only an administrator can fix it.
            "invalid_client" | "unauthorized_client" => ConnectorError::Failed(format!(
                "the provider does not accept hubauth's client credentials ({text}); the connector's client_id or client_secret needs fixing"
            )),
            _ => ConnectorError::Failed(format!("the provider refused the token request ({text})")),
        }
    }
}

/// `Link: <url>; rel="next", <url>; rel="last"` → the `next` URL.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| r.trim_matches('"').split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
                    .unwrap_or(false)
            });
            if is_next {
                if let Some(url) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
                    return Some(url.to_string());
                }
            }
        }
    }
    None
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn host_of(url: &str) -> String {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| "the provider".into())
}

/// The path only: query strings can carry tokens and must not reach logs or pages.
pub fn path_of(url: &str) -> String {
    url::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default()
}

/// A short, safe excerpt of an error body (`message` / `error_description` / `errors`).
fn error_detail(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return String::new() };
    let msg = v
        .get("message")
        .or_else(|| v.get("error_description"))
        .or_else(|| v.get("error"))
        .or_else(|| v.get("errors").and_then(|e| e.get(0)).and_then(|e| e.get("message")))
        .and_then(|m| m.as_str());
    match msg {
        Some(m) => format!(": {}", printable(m, 160)),
        None => String::new(),
    }
}

fn failure(e: &reqwest::Error, url: &str) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::TimedOut(describe(e, url))
    } else {
        ConnectorError::Failed(describe(e, url))
    }
}

fn describe(e: &reqwest::Error, url: &str) -> String {
    let host = host_of(url);
    if e.is_timeout() {
        format!("{host} did not answer in time")
    } else if e.is_connect() {
        format!("could not connect to {host}")
    } else if e.is_redirect() {
        format!("{host} answered with a redirect, which is not followed")
    } else {
        format!("request to {host} failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn next_link_is_found_among_others() {
        let h = headers(&[(
            "link",
            r#"<https://api.github.com/user/teams?per_page=100&page=2>; rel="next", <https://api.github.com/user/teams?per_page=100&page=3>; rel="last""#,
        )]);
        assert_eq!(next_link(&h).as_deref(), Some("https://api.github.com/user/teams?per_page=100&page=2"));
        let canvas = headers(&[(
            "link",
            r#"<https://c.edu/api/v1/courses?page=1&per_page=100>; rel="current",<https://c.edu/api/v1/courses?page=2&per_page=100>; rel="next",<https://c.edu/api/v1/courses?page=1&per_page=100>; rel="first""#,
        )]);
        assert_eq!(next_link(&canvas).as_deref(), Some("https://c.edu/api/v1/courses?page=2&per_page=100"));
        assert_eq!(next_link(&headers(&[("link", r#"<https://x/a>; rel="last""#)])), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn rate_limits_are_recognised_by_each_providers_convention() {
        let answer = |status: u16, h: HeaderMap, body: &'static str| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: bytes::Bytes::from_static(body.as_bytes()),
        };
        assert!(is_rate_limited(&answer(429, HeaderMap::new(), "")));
        assert!(is_rate_limited(&answer(403, headers(&[("x-ratelimit-remaining", "0")]), "{}")));
        assert!(is_rate_limited(&answer(
            403,
            headers(&[("retry-after", "3")]),
            r#"{"message":"You have exceeded a secondary rate limit"}"#
        )));
        assert!(is_rate_limited(&answer(403, HeaderMap::new(), "403 Forbidden (Rate Limit Exceeded)\n")));
        assert!(!is_rate_limited(&answer(
            403,
            headers(&[("x-ratelimit-remaining", "4999")]),
            r#"{"message":"Must have admin rights"}"#
        )));
        assert!(!is_rate_limited(&answer(500, HeaderMap::new(), "")));
    }

    #[test]
    fn error_text_never_carries_query_strings() {
        assert_eq!(path_of("https://h/api/v1/x?access_token=secret"), "/api/v1/x");
    }
}
