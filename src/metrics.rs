//! Prometheus metrics at `GET /metrics` (OpenMetrics text). Sign-in outcomes carry the access
//! policy's reason code as a label, the same code the refusal page and the audit log show.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label values: connector ids and reason codes only (bounded sets), never usernames.
type LoginLabels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    logins: Family<LoginLabels, Counter>,
    revocations: Family<LoginLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hubauth");
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Sign-ins by connector, outcome (admitted or refused) and the access policy's reason code",
            logins.clone(),
        );
        let revocations = Family::<LoginLabels, Counter>::default();
        registry.register(
            "access_revocations",
            "Users whose tokens were revoked on a re-check, by reason code",
            revocations.clone(),
        );
        Self { registry, logins, revocations }
    }
}

impl Metrics {
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

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
