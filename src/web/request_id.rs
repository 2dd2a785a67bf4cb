//! A short id for every request: in the `X-Request-Id` response header, in every log line of the
//! request (a tracing span), on error pages and in the audit log — so "it says request 3f9k…"
//! from a person finds the exact log lines and audit entry.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if called inside one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// Unique per process run without a system call per request: a random start, then a counter,
/// spread over 12 lowercase base32 characters. Ids only need to be unique, not secret, so the
/// start comes from std's per-process random hash keys (the OS's random source), not from the
/// CSPRNG: aws-lc gathers CPU-jitter entropy on its first use (≈ 45 ms of CPU), which would
/// otherwise delay the first answer after every start.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let next =
        NEXT.get_or_init(|| AtomicU64::new(std::collections::hash_map::RandomState::new().build_hasher().finish()));
    // A multiplicative mix so consecutive ids do not look consecutive in logs.
    let mut n = next.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(12);
    for _ in 0..12 {
        out.push(ALPHABET[(n & 31) as usize] as char);
        n >>= 5;
    }
    out
}

pub async fn middleware(req: Request, next: Next) -> Response {
    let id = new_id();
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = REQUEST_ID.scope(id.clone(), next.run(req).instrument(span)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}
