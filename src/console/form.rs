//! What the console's pages share: reading a form or a query string (which never fails: a
//! missing or malformed field is the page's clear error, not a rejection), and showing times.

use std::collections::HashMap;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::clock::UnixTime;
use crate::web::pages::no_store;

/// The fields of an `application/x-www-form-urlencoded` body or a query string (the first of
/// each name counts).
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn parse(raw: &[u8]) -> Self {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Fields(map)
    }

    pub fn query(raw: Option<&str>) -> Self {
        Self::parse(raw.unwrap_or_default().as_bytes())
    }

    /// The field, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The field as sent (the CSRF token is compared as is).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The field or "" (for putting a form back as it was sent).
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }
}

/// A list typed into one field: names separated by commas, spaces or new lines.
pub fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A time for people: `2026-12-02 13:36:00 UTC`.
pub fn time(t: UnixTime) -> String {
    match u64::try_from(t) {
        Ok(s) => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
            humantime::format_rfc3339_seconds(at).to_string().replace('T', " ").replace('Z', " UTC")
        }
        Err(_) => t.to_string(),
    }
}

pub fn time_opt(t: Option<UnixTime>) -> String {
    t.map(time).unwrap_or_default()
}

/// After a change, back to the page (post/redirect/get), with what was done for the notice.
pub fn see_other(location: String) -> Response {
    (StatusCode::SEE_OTHER, no_store(), [(header::LOCATION, location)]).into_response()
}
