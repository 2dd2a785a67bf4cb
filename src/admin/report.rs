//! The activity report (`hubauth report activity`, `GET /admin/api/report/activity`): who signed
//! in or used a token when, who is inactive, and — when `[report] prometheus_url` names a
//! Prometheus that scrapes prometheus-dirsize-exporter — what their home directory holds.
//!
//! A user's home directory is found by name: the exporter labels each top-level directory under
//! the parent it watches with its last path component (`directory="ada"`), and `[report]
//! directory` says which name the hub gives a user's (`{username}` as is, the default, or
//! `{escaped_username}` the way KubeSpawner escapes it).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::clock::UnixTime;
use crate::config::ReportConfig;
use crate::store::{Store, StoreResult, UserActivity};

/// At most this much of a Prometheus answer is read (a vector of one series per home directory).
const MAX_PROMETHEUS_ANSWER: usize = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!("unknown format {s:?}: use table, csv or json")),
        }
    }
}

/// `90d`, `12h`, `2w`… as seconds.
pub fn parse_age(s: &str) -> Result<UnixTime, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration like 90d: {e}"))?;
    i64::try_from(d.as_secs()).map_err(|_| format!("{s:?} is too long"))
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Row {
    pub username: String,
    pub connectors: Vec<String>,
    pub groups: Vec<String>,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    #[schema(value_type = Option<i64>)]
    pub last_login_at: Option<UnixTime>,
    #[schema(value_type = Option<i64>)]
    pub last_token_use_at: Option<UnixTime>,
    /// The latest of sign-in, token use and (for who never did either) creation.
    #[schema(value_type = i64)]
    pub last_active_at: UnixTime,
    pub hub_session_live: bool,
    pub sso_session_live: bool,
    #[schema(value_type = Option<i64>)]
    pub blocked_at: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_directory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_size_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_last_change_at: Option<f64>,
    #[serde(skip)]
    pub user_id: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    #[schema(value_type = i64)]
    pub generated_at: UnixTime,
    /// Only users inactive for this many seconds (sign-in and token use) are listed.
    #[schema(value_type = Option<i64>)]
    pub inactive_since_seconds: Option<UnixTime>,
    /// Whether the storage columns (`home_*`) are present: Prometheus was asked and answered.
    pub storage: bool,
    pub users: Vec<Row>,
    /// Why something is missing (e.g. Prometheus unreachable); never fatal.
    pub notes: Vec<String>,
}

impl Row {
    fn new(a: UserActivity) -> Self {
        let last_active_at = a.last_login_at.max(a.last_token_use_at).unwrap_or(a.created_at);
        Self {
            username: a.username,
            connectors: a.connectors,
            groups: a.groups,
            created_at: a.created_at,
            last_login_at: a.last_login_at,
            last_token_use_at: a.last_token_use_at,
            last_active_at,
            hub_session_live: a.hub_session_live,
            sso_session_live: a.sso_session_live,
            blocked_at: a.blocked_at,
            home_directory: None,
            home_size_bytes: None,
            home_last_change_at: None,
            user_id: a.user_id,
        }
    }
}

/// The users to report at `now`: everyone, or those inactive for `inactive_since` seconds.
pub async fn rows(store: &dyn Store, now: UnixTime, inactive_since: Option<UnixTime>) -> StoreResult<Vec<Row>> {
    let cutoff = inactive_since.map(|age| now.saturating_sub(age));
    Ok(store
        .activity(now)
        .await?
        .into_iter()
        .map(Row::new)
        .filter(|r| cutoff.is_none_or(|c| r.last_active_at < c))
        .collect())
}

/// The whole report: [`rows`], joined with the storage columns when Prometheus answers.
pub async fn build(
    store: &dyn Store,
    config: &ReportConfig,
    now: UnixTime,
    inactive_since: Option<UnixTime>,
) -> StoreResult<Report> {
    let mut report = Report {
        generated_at: now,
        inactive_since_seconds: inactive_since,
        storage: false,
        users: rows(store, now, inactive_since).await?,
        notes: Vec::new(),
    };
    if let Some(url) = &config.prometheus_url {
        match storage(url, config).await {
            Ok((sizes, mtimes)) => {
                report.storage = true;
                let mut unmatched = 0;
                for row in &mut report.users {
                    let dir = home_directory(&config.directory, &row.username);
                    row.home_size_bytes = sizes.get(&dir).copied();
                    row.home_last_change_at = mtimes.get(&dir).copied();
                    if row.home_size_bytes.is_none() && row.home_last_change_at.is_none() {
                        unmatched += 1;
                    }
                    row.home_directory = Some(dir);
                }
                if unmatched > 0 {
                    report.notes.push(format!(
                        "{unmatched} user(s) have no home directory in Prometheus' {} series (no directory yet, or \
                         [report] directory does not name it the way the hub does)",
                        config.size_metric
                    ));
                }
            }
            Err(why) => report
                .notes
                .push(format!("no storage columns: Prometheus at {} did not answer as expected: {why}", redacted(url))),
        }
    }
    Ok(report)
}

/// The directory name `template` gives `username` (see the module's documentation).
pub fn home_directory(template: &str, username: &str) -> String {
    template.replace("{escaped_username}", &kubespawner_escape(username)).replace("{username}", username)
}

/// KubeSpawner's `{username}` in volume names: lowercase letters and digits stay, every other
/// byte of the UTF-8 becomes `-` and two hex digits, and the result is lowercased.
fn kubespawner_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("-{b:02x}"));
            }
        }
    }
    out
}

/// A URL without any user:password part, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(the configured URL)".into(),
    }
}

type Series = HashMap<String, f64>;

async fn storage(url: &str, config: &ReportConfig) -> Result<(Series, Series), String> {
    let http = reqwest::Client::builder()
        .timeout(config.prometheus_timeout)
        .connect_timeout(config.prometheus_timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| e.to_string())?;
    let selector = |metric: &str| {
        if config.selector.is_empty() {
            metric.to_string()
        } else {
            format!("{metric}{{{}}}", config.selector)
        }
    };
    let sizes = query(&http, url, &selector(&config.size_metric), &config.directory_label).await?;
    let mtimes = query(&http, url, &selector(&config.mtime_metric), &config.directory_label).await?;
    Ok((sizes, mtimes))
}

/// An instant query through Prometheus' HTTP API: each series' value by its `label`. Several
/// series for one directory (several exporters) keep the largest.
async fn query(http: &reqwest::Client, base: &str, promql: &str, label: &str) -> Result<Series, String> {
    let endpoint = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let mut response = http.get(&endpoint).query(&[("query", promql)]).send().await.map_err(describe)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > MAX_PROMETHEUS_ANSWER {
            return Err(format!("the answer to {promql} is larger than {MAX_PROMETHEUS_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| format!("HTTP {status}: the answer is not JSON"))?;
    if answer["status"] != "success" {
        let error = answer["error"].as_str().unwrap_or("no error message");
        return Err(format!("HTTP {status}: query {promql} failed: {error}"));
    }
    if answer["data"]["resultType"] != "vector" {
        return Err(format!("query {promql} did not return an instant vector"));
    }
    let mut out = Series::new();
    for series in answer["data"]["result"].as_array().into_iter().flatten() {
        let (Some(dir), Some(value)) = (series["metric"][label].as_str(), series["value"][1].as_str()) else {
            continue;
        };
        // Prometheus sends sample values as strings ("NaN" and "+Inf" included).
        let Ok(value) = value.parse::<f64>() else { continue };
        if !value.is_finite() {
            continue;
        }
        let entry = out.entry(dir.to_string()).or_insert(value);
        *entry = entry.max(value);
    }
    Ok(out)
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        // Without the URL: it may carry credentials.
        e.without_url().to_string()
    }
}

fn time(t: Option<UnixTime>) -> String {
    match t.and_then(|t| u64::try_from(t).ok()) {
        Some(t) => humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t)).to_string(),
        None => String::new(),
    }
}

fn time_f(t: Option<f64>) -> String {
    time(t.filter(|t| *t >= 0.0).map(|t| t as UnixTime))
}

fn bytes(b: Option<f64>) -> String {
    b.map(|b| format!("{}", b.round() as u64)).unwrap_or_default()
}

const COLUMNS: [&str; 10] = [
    "username",
    "connectors",
    "groups",
    "created_at",
    "last_login_at",
    "last_token_use_at",
    "last_active_at",
    "hub_session_live",
    "sso_session_live",
    "blocked_at",
];
const STORAGE_COLUMNS: [&str; 3] = ["home_directory", "home_size_bytes", "home_last_change_at"];

fn cells(r: &Row, storage: bool) -> Vec<String> {
    let mut c = vec![
        r.username.clone(),
        r.connectors.join(";"),
        r.groups.join(";"),
        time(Some(r.created_at)),
        time(r.last_login_at),
        time(r.last_token_use_at),
        time(Some(r.last_active_at)),
        r.hub_session_live.to_string(),
        r.sso_session_live.to_string(),
        time(r.blocked_at),
    ];
    if storage {
        c.extend([
            r.home_directory.clone().unwrap_or_default(),
            bytes(r.home_size_bytes),
            time_f(r.home_last_change_at),
        ]);
    }
    c
}

fn headers(storage: bool) -> Vec<&'static str> {
    let mut h = COLUMNS.to_vec();
    if storage {
        h.extend(STORAGE_COLUMNS);
    }
    h
}

/// CSV with a header line; times in RFC 3339 (UTC), lists joined with `;`.
pub fn to_csv(report: &Report) -> String {
    let mut out = headers(report.storage).join(",");
    out.push('\n');
    for r in &report.users {
        let line: Vec<String> = cells(r, report.storage).iter().map(|c| super::rename::csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

pub fn to_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".into()) + "\n"
}

/// Aligned columns for a terminal.
pub fn to_table(report: &Report) -> String {
    let head: Vec<String> = headers(report.storage).iter().map(|h| h.to_uppercase()).collect();
    let body: Vec<Vec<String>> = report.users.iter().map(|r| cells(r, report.storage)).collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| body.iter().map(|row| row[i].chars().count()).chain([head[i].len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&head).chain(&body) {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => to_table(report),
        Format::Csv => to_csv(report),
        Format::Json => to_json(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_directories_follow_the_template() {
        assert_eq!(home_directory("{username}", "ada.l"), "ada.l");
        assert_eq!(home_directory("{escaped_username}", "ada.l"), "ada-2el");
        assert_eq!(home_directory("{escaped_username}", "Zoë"), "-5ao-c3-ab");
        assert_eq!(home_directory("home-{username}", "ada"), "home-ada");
    }

    #[test]
    fn ages_parse_like_the_cli_says() {
        assert_eq!(parse_age("90d"), Ok(90 * 86400));
        assert_eq!(parse_age("12h"), Ok(12 * 3600));
        assert!(parse_age("ninety days").is_err());
    }
}
