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

fn new_id() -> String {
    // 60 random bits in 12 lowercase base32 characters: short enough to read out, unique enough.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bytes = crate::crypto::random::random_bytes::<8>();
    let mut n = u64::from_le_bytes(bytes);
    (0..12)
        .map(|_| {
            let c = ALPHABET[(n & 31) as usize] as char;
            n >>= 5;
            c
        })
        .collect()
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
