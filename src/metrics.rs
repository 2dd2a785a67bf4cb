//! Prometheus metrics at `GET /metrics` (OpenMetrics text). Sign-in outcomes carry the access
//! policy's reason code as a label, the same code the refusal page and the audit log show.
//!
//! Cardinality is bounded: label values come from the config (connector ids, grant types), from
//! fixed sets (reason and OAuth error codes, HTTP statuses), or — for `hubauth_user_group_info`
//! only, which `[metrics] group_info = false` turns off — from the database (users × groups).
//! The gauges read the store at most once per `[metrics] usage_interval`, however often anyone
//! scrapes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::clock::UnixTime;
use crate::config::MetricsConfig;
use crate::store::{Store, Usage};

/// Label values: config ids and fixed codes only (bounded sets), never usernames.
type Labels = Vec<(&'static str, String)>;

/// How long a scrape waits for the store's counts before answering without them.
const USAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// `hubauth_active_users{period}`: users signed in or re-checked within each (JupyterHub's periods).
const ACTIVE_PERIODS: [(&str, i64); 3] = [("24h", 86_400), ("7d", 7 * 86_400), ("30d", 30 * 86_400)];
/// Seconds; upstream calls time out after 15 s by default.
const LATENCY_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0];

pub struct Metrics {
    registry: Registry,
    logins: Family<Labels, Counter>,
    revocations: Family<Labels, Counter>,
    token_grants: Family<Labels, Counter>,
    token_exchanges: Family<Labels, Counter>,
    upstream_refreshes: Family<Labels, Counter>,
    upstream: Arc<UpstreamMetrics>,
    usage: Arc<UsageGauges>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&MetricsConfig::default())
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

impl Metrics {
    pub fn new(config: &MetricsConfig) -> Self {
        let mut registry = Registry::with_prefix("hubauth");
        let logins = counter(
            &mut registry,
            "logins",
            "Sign-ins by connector, outcome (admitted or refused) and the access policy's reason code",
        );
        let revocations = counter(
            &mut registry,
            "access_revocations",
            "Users whose tokens were revoked on a re-check, by reason code",
        );
        let token_grants = counter(
            &mut registry,
            "token_grants",
            "Token endpoint requests by grant type and result (ok, or the OAuth error code)",
        );
        let token_exchanges = counter(
            &mut registry,
            "token_exchanges",
            "Token exchanges (RFC 8693) by target connector and result (ok, or the OAuth error code)",
        );
        let upstream_refreshes = counter(
            &mut registry,
            "upstream_refreshes",
            "Refreshes of upstream tokens at the provider by connector and result (ok, session_ended, failed)",
        );
        let upstream = Arc::new(UpstreamMetrics::default());
        registry.register(
            "upstream_request_duration_seconds",
            "Time until an upstream provider answered (or failed), by connector",
            upstream.duration.clone(),
        );
        registry.register(
            "upstream_request_errors",
            "Upstream requests answered with a non-2xx status or not at all (timeout, unreachable, error), by connector and status",
            upstream.errors.clone(),
        );
        let usage = Arc::new(UsageGauges {
            group_info: config.group_info,
            namespace: config.namespace.clone(),
            interval: config.usage_interval,
            read: tokio::sync::Mutex::new(None),
            current: Mutex::new(None),
        });
        registry.register_collector(Box::new(usage.clone()));
        Self { registry, logins, revocations, token_grants, token_exchanges, upstream_refreshes, upstream, usage }
    }

    pub fn login(&self, connector: &str, admitted: bool, reason: &str) {
        let outcome = if admitted { "admitted" } else { "refused" };
        self.logins
            .get_or_create(&vec![
                ("connector", connector.to_string()),
                ("outcome", outcome.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    pub fn revoked(&self, reason: &str) {
        self.revocations.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    /// `grant_type`: a supported grant's name or `unsupported`; `result`: `ok` or an OAuth error code.
    pub fn token_grant(&self, grant_type: &str, result: &str) {
        self.token_grants
            .get_or_create(&vec![("grant_type", grant_type.to_string()), ("result", result.to_string())])
            .inc();
    }

    /// `connector`: a configured audience (or `none` when the request named none it may have).
    pub fn token_exchange(&self, connector: &str, result: &str) {
        self.token_exchanges
            .get_or_create(&vec![("connector", connector.to_string()), ("result", result.to_string())])
            .inc();
    }

    pub fn upstream_refresh(&self, connector: &str, result: RefreshResult) {
        let result = match result {
            RefreshResult::Ok => "ok",
            RefreshResult::SessionEnded => "session_ended",
            RefreshResult::Failed => "failed",
        };
        self.upstream_refreshes
            .get_or_create(&vec![("connector", connector.to_string()), ("result", result.to_string())])
            .inc();
    }

    /// What the upstream HTTP client reports into.
    pub fn upstream(&self) -> Arc<UpstreamMetrics> {
        self.upstream.clone()
    }

    /// The exposition, with the gauges read from `store` if they are older than the interval.
    pub async fn render(&self, store: &dyn Store, now: UnixTime) -> String {
        self.usage.refresh(store, now).await;
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
pub enum RefreshResult {
    Ok,
    /// The provider refused: the person must sign in again.
    SessionEnded,
    /// The provider could not be reached or answered badly.
    Failed,
}

/// Upstream HTTP latency and errors, labelled by connector id.
pub struct UpstreamMetrics {
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    errors: Family<Labels, Counter>,
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            Histogram::new(LATENCY_BUCKETS)
        }
        Self { duration: Family::new_with_constructor(histogram), errors: Family::default() }
    }
}

/// How an upstream request ended, for [`UpstreamMetrics::observe`].
pub enum UpstreamOutcome {
    Status(u16),
    TimedOut,
    Unreachable,
    Failed,
}

impl UpstreamMetrics {
    pub fn observe(&self, connector: &str, elapsed: Duration, outcome: UpstreamOutcome) {
        self.duration.get_or_create(&vec![("connector", connector.to_string())]).observe(elapsed.as_secs_f64());
        let status = match outcome {
            UpstreamOutcome::Status(s) if (200..300).contains(&s) => return,
            UpstreamOutcome::Status(s) => s.to_string(),
            UpstreamOutcome::TimedOut => "timeout".into(),
            UpstreamOutcome::Unreachable => "unreachable".into(),
            UpstreamOutcome::Failed => "error".into(),
        };
        self.errors.get_or_create(&vec![("connector", connector.to_string()), ("status", status)]).inc();
    }
}

/// The gauges read from the store: users, active users, live browser sessions, group info.
#[derive(Debug)]
struct UsageGauges {
    group_info: bool,
    namespace: String,
    interval: Duration,
    /// When the store was last read; held while reading, so scrapes at once read it once.
    read: tokio::sync::Mutex<Option<Instant>>,
    /// The last answer; `None` after a failed read (the gauges are left out, not shown stale).
    current: Mutex<Option<Arc<Usage>>>,
}

impl UsageGauges {
    async fn refresh(&self, store: &dyn Store, now: UnixTime) {
        let mut read = self.read.lock().await;
        if read.is_some_and(|at| at.elapsed() < self.interval) {
            return;
        }
        let since: Vec<UnixTime> = ACTIVE_PERIODS.iter().map(|(_, secs)| now - secs).collect();
        let usage = match tokio::time::timeout(USAGE_TIMEOUT, store.usage(now, &since, self.group_info)).await {
            Ok(Ok(u)) => Some(Arc::new(u)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics: could not read the usage counts");
                None
            }
            Err(_) => {
                tracing::warn!("metrics: the usage counts took longer than {USAGE_TIMEOUT:?}");
                None
            }
        };
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = usage;
        // Failures count too: a broken database is not asked again on every scrape.
        *read = Some(Instant::now());
    }
}

impl Collector for UsageGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(usage) = self.current.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return Ok(()) };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
            let g = ConstGauge::new(value as i64);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        gauge(&mut encoder, "users", "Users hubauth knows", usage.users)?;
        gauge(
            &mut encoder,
            "active_browser_sessions",
            "Browser sessions neither ended nor expired",
            usage.live_browser_sessions,
        )?;
        let mut active = encoder.encode_descriptor(
            "active_users",
            "Users who signed in or were re-checked within the period",
            None,
            MetricType::Gauge,
        )?;
        for ((period, _), n) in ACTIVE_PERIODS.iter().zip(&usage.active_users) {
            let labels = [("period", *period)];
            ConstGauge::new(*n as i64).encode(active.encode_family(&labels)?)?;
        }
        if self.group_info {
            let mut info = encoder.encode_descriptor(
                "user_group",
                "Group memberships, one series per user and group (labels as jupyterhub-groups-exporter's jupyterhub_user_group_info)",
                None,
                MetricType::Info,
            )?;
            for (username, groups) in &usage.memberships {
                let escaped = escape_slug(username);
                let safe = safe_slug(username);
                for group in groups {
                    let labels = [
                        ("namespace", self.namespace.as_str()),
                        ("usergroup", group.as_str()),
                        ("username", username.as_str()),
                        ("username_escaped", escaped.as_str()),
                        ("username_safe", safe.as_str()),
                    ];
                    info.encode_info(&labels)?;
                }
            }
        }
        Ok(())
    }
}

/// KubeSpawner's legacy username escaping (escapism with `[a-z0-9]` safe and `-` as the escape
/// character, lower-cased): what the exporter's `username_escaped` holds.
pub fn escape_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("-{byte:02x}"));
            }
        }
    }
    out
}

/// KubeSpawner's "safe" slug (7.0): the name itself when it is a valid DNS label with no `--`,
/// else a cleaned prefix, `---` and 8 hex digits of its SHA-256: the exporter's `username_safe`.
pub fn safe_slug(name: &str) -> String {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid && !name.contains("--") {
        return name.to_string();
    }
    const MAX: usize = 32 - (8 + 3);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
    let hash: String = digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    // Lower-case, each run of other characters one '-', trimmed, at most MAX long.
    let mut cleaned = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cleaned.push(c);
        } else if !cleaned.ends_with('-') {
            cleaned.push('-');
        }
    }
    let mut safe: String = cleaned.trim_start_matches('-').chars().take(MAX).collect();
    safe.truncate(safe.trim_end_matches('-').len());
    if !safe.is_empty() && !safe.starts_with(|c: char| c.is_ascii_lowercase()) {
        safe = format!("x-{}", &safe[..safe.len().min(MAX - 2)]);
    }
    if safe.is_empty() {
        safe = "x".into();
    }
    format!("{safe}---{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_escaped_as_kubespawner_does() {
        assert_eq!(escape_slug("ada"), "ada");
        assert_eq!(escape_slug("Ada.L"), "-41da-2e-4c");
        assert_eq!(escape_slug("é"), "-c3-a9");
        assert_eq!(safe_slug("ada"), "ada");
        assert_eq!(safe_slug("ada-l"), "ada-l");
        let hashed = safe_slug("Ada.L@x");
        assert!(hashed.starts_with("ada-l-x---"), "{hashed}");
        assert_eq!(hashed.len(), "ada-l-x---".len() + 8);
        assert!(safe_slug("1ada").starts_with("x-1ada---"));
        assert!(safe_slug("a--b").starts_with("a-b---"));
        assert!(safe_slug("@@").starts_with("x---"));
    }
}
