//! Counters of a labelled family resolved once per label pair. Counting through the family
//! builds its owned label set (a `String` per label) and hashes it under the family's lock on
//! every call; the counters counted per signal (consumed, decided, commands) are found here
//! by two `&str` lookups instead, without allocating. The counter found is the family's own
//! (a shared handle), so what `/metrics` shows is unchanged.

use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::RwLock;

/// Counters by their first label value, then their second.
type ByPair = HashMap<Box<str>, HashMap<Box<str>, Counter>>;

#[derive(Debug, Default)]
pub(super) struct Handles(RwLock<ByPair>);

impl Handles {
    /// Increments the counter labelled (`a`, `b`); `resolve` gives it from the family the
    /// first time the pair is seen. Label values are bounded (docs/operations.md), so is this.
    pub(super) fn inc(&self, a: &str, b: &str, resolve: impl FnOnce() -> Counter) {
        let known = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = known.get(a).and_then(|m| m.get(b)) {
            counter.inc();
            return;
        }
        drop(known);
        let counter = resolve();
        counter.inc();
        let mut known = self.0.write().unwrap_or_else(|p| p.into_inner());
        known.entry(a.into()).or_default().insert(b.into(), counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::family::Family;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
    struct Pair {
        a: String,
        b: String,
    }

    fn counter(family: &Family<Pair, Counter>, a: &str, b: &str) -> Counter {
        let labels = Pair {
            a: a.into(),
            b: b.into(),
        };
        family.get_or_create(&labels).clone()
    }

    #[test]
    fn counts_land_in_the_familys_own_counters() {
        let family: Family<Pair, Counter> = Family::default();
        let handles = Handles::default();
        let mut resolved = 0;
        for _ in 0..3 {
            handles.inc("aws", "disable_credential", || {
                resolved += 1;
                counter(&family, "aws", "disable_credential")
            });
        }
        handles.inc("aws", "restore", || counter(&family, "aws", "restore"));
        assert_eq!(resolved, 1, "resolved once");
        assert_eq!(counter(&family, "aws", "disable_credential").get(), 3);
        assert_eq!(counter(&family, "aws", "restore").get(), 1);
        assert_eq!(counter(&family, "okta", "restore").get(), 0);
    }
}
