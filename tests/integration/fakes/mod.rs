//! Stand-ins for upstream providers, as their public API documentation describes them: small
//! HTTP servers on 127.0.0.1, one per test, that record every request and can be told to
//! misbehave (rate limits, errors, slowness) on chosen paths.

pub mod canvas;
pub mod github;

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::harness::{AuthParams, Browser, TestResponse};

/// A request as a fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The full path, including any API prefix (`/api/v3/user`).
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub form: Vec<(String, String)>,
}

impl Seen {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    pub fn field(&self, key: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    /// Every value of a header (to catch duplicates).
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap_or_default().to_string()).collect()
    }
}

/// Ways a fake can misbehave.
#[derive(Clone, Debug)]
pub enum Fault {
    /// GitHub's primary rate limit: 403, `X-RateLimit-Remaining: 0`, reset in `reset_in` seconds.
    GithubRateLimit { reset_in: u64 },
    /// 429 Too Many Requests with `Retry-After`.
    TooManyRequests { retry_after: u64 },
    /// Canvas throttling: 403 with the text body `403 Forbidden (Rate Limit Exceeded)`.
    CanvasThrottled,
    /// This status with this JSON body.
    Status(u16, serde_json::Value),
    /// Answer normally, but only after this long.
    Delay(Duration),
    /// Answer normally once a request to `path` has arrived too (the client asks both at once);
    /// 500 if none comes within `within` (the client asks one after the other).
    WaitFor { path: String, within: Duration },
}

struct Rule {
    path: String,
    /// Only this page (`page=` value); any page when `None`.
    page: Option<String>,
    fault: Fault,
    /// How many more times it applies; forever when `None`.
    remaining: Option<u32>,
}

/// What every fake shares: the request log and the fault rules.
#[derive(Default)]
pub struct Recorder {
    seen: Mutex<Vec<Seen>>,
    rules: Mutex<Vec<Rule>>,
}

impl Recorder {
    pub fn record(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// `fault` on `path` (full path), on every page or only `page`, `times` times (or forever).
    pub fn add(&self, path: &str, page: Option<&str>, fault: Fault, times: Option<u32>) {
        self.rules.lock().unwrap().push(Rule {
            path: path.to_string(),
            page: page.map(str::to_string),
            fault,
            remaining: times,
        });
    }

    /// The fault that applies to this request, if any (used up by one).
    pub fn fault_for(&self, path: &str, page: Option<&str>) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules
            .iter_mut()
            .find(|r| r.path == path && r.remaining != Some(0) && r.page.as_deref().is_none_or(|p| Some(p) == page))?;
        if let Some(n) = &mut rule.remaining {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }
}

/// Serves `router` on a free loopback port; returns `http://127.0.0.1:PORT`.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

pub fn parse_pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

pub fn json_response(status: u16, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub fn add_header(res: &mut Response<Body>, name: &'static str, value: &str) {
    res.headers_mut().append(name, HeaderValue::from_str(value).unwrap());
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", hubauth::crypto::random::random_value())
}

/// RFC 7636 S256.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(hubauth::crypto::random::sha256(verifier.as_bytes()))
}

/// How a provider lays out its `Link` header.
#[derive(Clone, Copy)]
pub enum LinkStyle {
    /// `<…page=2>; rel="next", <…page=5>; rel="last"` (+ `prev`, `first` after page 1).
    Github,
    /// `<…>; rel="current",<…>; rel="next",<…>; rel="first",<…>; rel="last"`.
    Canvas,
}

/// One page of `items` as the provider would serve it: `per_page` (default `default_per_page`,
/// at most `max_per_page`) and `page` (1-based) from the request's query, links that keep the
/// request's other parameters.
pub fn paginate(
    items: &[serde_json::Value],
    base: &str,
    path: &str,
    query: &[(String, String)],
    default_per_page: usize,
    max_per_page: usize,
    style: LinkStyle,
) -> Response<Body> {
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let per_page =
        get("per_page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(default_per_page).clamp(1, max_per_page);
    let page = get("page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<serde_json::Value> = items.iter().skip((page - 1) * per_page).take(per_page).cloned().collect();
    let link = |p: usize| {
        let mut pairs: Vec<(String, String)> =
            query.iter().filter(|(k, _)| k != "page" && k != "per_page").cloned().collect();
        match style {
            LinkStyle::Github => {
                pairs.push(("per_page".into(), per_page.to_string()));
                pairs.push(("page".into(), p.to_string()));
            }
            LinkStyle::Canvas => {
                pairs.insert(0, ("page".into(), p.to_string()));
                pairs.push(("per_page".into(), per_page.to_string()));
            }
        }
        let q = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        format!("{base}{path}?{q}")
    };
    let mut rels: Vec<(String, &str)> = Vec::new();
    match style {
        LinkStyle::Github => {
            if page > 1 {
                rels.push((link(page - 1), "prev"));
            }
            if page < last {
                rels.push((link(page + 1), "next"));
                rels.push((link(last), "last"));
            }
            if page > 1 {
                rels.push((link(1), "first"));
            }
        }
        LinkStyle::Canvas => {
            rels.push((link(page), "current"));
            if page < last {
                rels.push((link(page + 1), "next"));
            }
            if page > 1 {
                rels.push((link(page - 1), "prev"));
            }
            rels.push((link(1), "first"));
            rels.push((link(last), "last"));
        }
    }
    let sep = match style {
        LinkStyle::Github => ", ",
        LinkStyle::Canvas => ",",
    };
    let header = rels.iter().map(|(u, rel)| format!("<{u}>; rel=\"{rel}\"")).collect::<Vec<_>>().join(sep);
    let mut res = json_response(200, &serde_json::Value::Array(slice));
    if !header.is_empty() {
        add_header(&mut res, "link", &header);
    }
    res
}

/// The answer a fault calls for (`None` for `Delay`, which the fake applies itself).
pub fn fault_response(fault: &Fault) -> Option<Response<Body>> {
    match fault {
        Fault::GithubRateLimit { reset_in } => {
            let mut res = json_response(
                403,
                &serde_json::json!({
                    "message": "API rate limit exceeded for user ID 1001. If you reach out to GitHub Support for help, please include the request ID.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                    "status": "403"
                }),
            );
            add_header(&mut res, "x-ratelimit-limit", "5000");
            add_header(&mut res, "x-ratelimit-remaining", "0");
            add_header(&mut res, "x-ratelimit-used", "5000");
            add_header(&mut res, "x-ratelimit-reset", &(now_unix() + reset_in).to_string());
            add_header(&mut res, "x-ratelimit-resource", "core");
            Some(res)
        }
        Fault::TooManyRequests { retry_after } => {
            let mut res = json_response(429, &serde_json::json!({"message": "Too Many Requests"}));
            add_header(&mut res, "retry-after", &retry_after.to_string());
            Some(res)
        }
        Fault::CanvasThrottled => Some(
            Response::builder()
                .status(StatusCode::FORBIDDEN)
                .header("content-type", "text/plain; charset=utf-8")
                .header("x-rate-limit-remaining", "0.0")
                .body(Body::from("403 Forbidden (Rate Limit Exceeded)\n"))
                .unwrap(),
        ),
        Fault::Status(status, body) => Some(json_response(*status, body)),
        Fault::Delay(_) | Fault::WaitFor { .. } => None,
    }
}

/// Applies a fault that delays rather than replaces the answer; `Some` answer when it gives up.
/// A request as a fake handler needs it, once recorded.
pub struct Incoming {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

/// Records the request, then answers with the fault the test set for its path and page, if any
/// (`Err`); otherwise hands the parsed request to the fake (`Ok`).
pub async fn intake(
    recorder: &Recorder,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Incoming, Response<Body>> {
    let path = uri.path().to_string();
    let query = parse_pairs(uri.query().unwrap_or(""));
    let form =
        if method == axum::http::Method::POST { parse_pairs(&String::from_utf8_lossy(body)) } else { Vec::new() };
    recorder.record(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: headers.clone(),
        form: form.clone(),
    });
    let page = query.iter().find(|(k, _)| k == "page").map(|(_, v)| v.as_str());
    if let Some(fault) = recorder.fault_for(&path, page) {
        if let Some(res) = fault_response(&fault) {
            return Err(res);
        }
        if let Some(res) = delay_for(&fault, recorder).await {
            return Err(res);
        }
    }
    Ok(Incoming { path, query, form })
}

pub async fn delay_for(fault: &Fault, recorder: &Recorder) -> Option<Response<Body>> {
    match fault {
        Fault::Delay(d) => {
            tokio::time::sleep(*d).await;
            None
        }
        Fault::WaitFor { path, within } => {
            let started = std::time::Instant::now();
            while started.elapsed() < *within {
                if recorder.requests().iter().any(|r| &r.path == path) {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Some(json_response(
                500,
                &serde_json::json!({"message": format!("no request to {path} while this one waited")}),
            ))
        }
        _ => None,
    }
}

/// From hubauth's `/authorize` (preselecting `connector`) to the provider and back: `approve`
/// gets the authorization URL hubauth sent the browser to and returns the code the provider
/// would hand back. Returns hubauth's answer to the callback.
pub async fn round_trip(
    browser: &mut Browser<'_>,
    params: &AuthParams,
    connector: &str,
    approve: impl FnOnce(&url::Url) -> String,
) -> TestResponse {
    let upstream = browser.start_upstream(params, connector).await;
    let state = query_value(&upstream, "state").expect("a state sent upstream");
    let code = approve(&upstream);
    browser.upstream_callback(connector, &[("code", &code), ("state", &state)]).await
}

/// The hubauth code in a successful callback answer.
pub fn hub_code(res: &TestResponse) -> String {
    assert_eq!(res.status, StatusCode::SEE_OTHER, "the login failed: {}", res.text());
    res.query().get("code").expect("a code in the redirect to the hub").clone()
}

/// An HTML page's text with the entities hubauth's templates escape turned back.
pub fn page_text(res: &TestResponse) -> String {
    res.text()
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub fn query_value(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}
