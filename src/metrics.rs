//! Prometheus metrics: reconciles per kind, git operations, ToolJet API calls, pushes, pulls.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming a resource kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `GitSyncConfig` or `AppSync`.
    pub kind: String,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Resource kind.
    pub kind: String,
    /// Error class.
    pub error: String,
}

/// Labels of an operation against git or ToolJet.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// Operation name.
    pub op: String,
    /// `ok` or `error`.
    pub result: String,
}

/// All metrics of the operator.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    git_ops: Family<OpLabels, Histogram>,
    tooljet_calls: Family<OpLabels, Histogram>,
    pushes: Counter,
    pulls: Counter,
    webhook_deliveries: Family<DeliveryLabels, Counter>,
    webhook_checks: Counter,
}

/// Labels of a webhook delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `github`, `gitlab`, `gitea`, `bitbucket`, or `unknown` before it authenticated.
    pub provider: String,
    /// `accepted`, `ignored`, `ping`, `duplicate`, `unsigned`, `bad_signature`,
    /// `unknown_path`, `too_large`, `timeout`, `bad_request`, `busy` or `starting`.
    pub result: String,
}

fn buckets() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tooljet_gitsync");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration =
            Family::<KindLabels, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        let git_ops =
            Family::<OpLabels, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        let tooljet_calls =
            Family::<OpLabels, Histogram>::new_with_constructor(buckets as fn() -> Histogram);
        let pushes = Counter::default();
        let pulls = Counter::default();
        registry.register(
            "reconciliations",
            "Reconciles run, per kind",
            reconciles.clone(),
        );
        registry.register(
            "reconciliation_errors",
            "Reconciles that failed, per kind and error",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration, per kind",
            duration.clone(),
        );
        registry.register(
            "git_operation_duration_seconds",
            "Git operations (fetch, push, ls-remote, check)",
            git_ops.clone(),
        );
        registry.register(
            "tooljet_api_duration_seconds",
            "ToolJet API calls",
            tooljet_calls.clone(),
        );
        registry.register("pushes", "Commits pushed to git", pushes.clone());
        registry.register("pulls", "Apps imported into ToolJet", pulls.clone());
        let webhook_deliveries = Family::<DeliveryLabels, Counter>::default();
        let webhook_checks = Counter::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries, per provider and what became of them",
            webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_checks",
            "Repository checks webhook deliveries caused",
            webhook_checks.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            git_ops,
            tooljet_calls,
            pushes,
            pulls,
            webhook_deliveries,
            webhook_checks,
        }
    }
}

impl Metrics {
    /// Records one reconcile.
    pub fn reconciled(&self, kind: &str, took: Duration, error: Option<&str>) {
        let k = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&k).inc();
        self.duration.get_or_create(&k).observe(took.as_secs_f64());
        if let Some(e) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    kind: kind.into(),
                    error: e.into(),
                })
                .inc();
        }
    }

    /// Records a git operation.
    pub fn git_op(&self, op: &str, took: Duration, ok: bool) {
        self.git_ops
            .get_or_create(&OpLabels {
                op: op.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records a ToolJet API call.
    pub fn tooljet_call(&self, op: &str, took: Duration, ok: bool) {
        self.tooljet_calls
            .get_or_create(&OpLabels {
                op: op.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a pushed commit.
    pub fn pushed(&self, commits: u64) {
        self.pushes.inc_by(commits);
    }

    /// Counts an import.
    pub fn pulled(&self) {
        self.pulls.inc();
    }

    /// Counts a webhook delivery by what became of it.
    pub fn webhook_delivery(&self, provider: &str, result: &str) {
        self.webhook_deliveries
            .get_or_create(&DeliveryLabels {
                provider: provider.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Counts a repository check a webhook delivery caused.
    pub fn webhook_check(&self) {
        self.webhook_checks.inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_recorded_values() {
        let m = Metrics::default();
        m.reconciled("GitSyncConfig", Duration::from_millis(20), None);
        m.reconciled("GitSyncConfig", Duration::from_millis(20), Some("kube"));
        m.git_op("check", Duration::from_millis(300), true);
        m.pushed(3);
        let text = m.encode();
        assert!(
            text.contains("tooljet_gitsync_reconciliations_total{kind=\"GitSyncConfig\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "tooljet_gitsync_reconciliation_errors_total{kind=\"GitSyncConfig\",error=\"kube\"} 1"
        ));
        assert!(text.contains("tooljet_gitsync_pushes_total 3"));
        assert!(text.contains(
            "tooljet_gitsync_git_operation_duration_seconds_count{op=\"check\",result=\"ok\"} 1"
        ));
    }
}
