//! Metrics of the safety rails: circuit breakers and approval holds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabel {
    breaker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// Breakers opened, open now; holds waiting; verdicts and how long they took.
pub struct RailMetrics {
    trips: Family<BreakerLabel, Counter>,
    open: Gauge,
    pending: Gauge,
    verdicts: Family<OutcomeLabel, Counter>,
    latency: Histogram,
}

impl Default for RailMetrics {
    fn default() -> Self {
        Self {
            trips: Family::default(),
            open: Gauge::default(),
            pending: Gauge::default(),
            verdicts: Family::default(),
            // 1 s to ~9 days.
            latency: Histogram::new(exponential_buckets(1.0, 2.0, 20)),
        }
    }
}

impl RailMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "breaker_trips",
            "Circuit breakers opened, by breaker (<name>:<rule|target|action|source>)",
            self.trips.clone(),
        );
        registry.register(
            "breakers_open",
            "Circuit breakers open now on this instance",
            self.open.clone(),
        );
        registry.register(
            "holds_pending",
            "Held commands waiting for an approval in this instance's approvals partitions",
            self.pending.clone(),
        );
        registry.register(
            "approvals",
            "Approvals-topic records applied, by outcome (released, cancelled, refused, matched_no_action)",
            self.verdicts.clone(),
        );
        registry.register(
            "approval_latency_seconds",
            "From a command's hold to its release or cancellation",
            self.latency.clone(),
        );
    }

    /// Each configured breaker's trips, and every verdict outcome, start at 0.
    pub fn prime(&self, settings: &crate::config::Settings) {
        for b in &settings.safety.breakers {
            let _ = self.trips.get_or_create(&BreakerLabel {
                breaker: b.name.clone(),
            });
        }
        for outcome in ["released", "cancelled", "refused", "matched_no_action"] {
            let _ = self.verdicts.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            });
        }
    }

    pub fn breaker_tripped(&self, breaker: &str) {
        self.trips
            .get_or_create(&BreakerLabel {
                breaker: breaker.into(),
            })
            .inc();
    }

    /// The breakers open and the holds pending now.
    pub fn set_rails(&self, open: usize, pending: usize) {
        self.open.set(open as i64);
        self.pending.set(pending as i64);
    }

    pub fn approval(&self, outcome: &str, latency_ms: Option<i64>) {
        self.verdicts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        if let Some(ms) = latency_ms {
            self.latency.observe(ms.max(0) as f64 / 1000.0);
        }
    }
}
