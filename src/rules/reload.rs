//! Hot reload: on SIGHUP, and when the rules directory's contents change, load and check the
//! new set, then swap it in between two signals. A set with any problem is refused: the
//! running rules stay, the problems are logged and counted.

use super::{load_dir, RuleSet};
use crate::config::{Problem, TargetSettings};
use crate::telemetry::Metrics;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The active rule set; readers clone the `Arc` once per signal.
pub type SharedRules = Arc<RwLock<Arc<RuleSet>>>;

pub fn shared(rules: RuleSet) -> SharedRules {
    Arc::new(RwLock::new(Arc::new(rules)))
}

/// The rule set in force now.
pub fn current(rules: &SharedRules) -> Arc<RuleSet> {
    rules.read().unwrap_or_else(|p| p.into_inner()).clone()
}

pub struct Reloader {
    pub dir: PathBuf,
    pub targets: Vec<TargetSettings>,
    pub extra_actions: Vec<String>,
    pub rules: SharedRules,
    pub metrics: Arc<Metrics>,
    /// How often the directory is checked for changes.
    pub poll: Duration,
}

/// What a reload attempt did.
#[derive(Debug)]
pub enum Reload {
    Swapped { from: String, to: String },
    Unchanged,
    Refused(Vec<Problem>),
}

impl Reloader {
    /// Watches until `stop` flips to true. The SIGHUP handler is installed before this
    /// returns (a SIGHUP with no handler would end the process); call it inside the runtime.
    pub fn watch(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        // Loading runs on the blocking pool: a large rule set never holds a runtime thread
        // the pipeline needs.
        let this = Arc::new(self);
        async move {
            let reload = |why: &'static str| {
                let this = this.clone();
                async move {
                    let _ = tokio::task::spawn_blocking(move || this.reload(why)).await;
                }
            };
            let mut last = dir_digest(&this.dir);
            let mut tick = tokio::time::interval(this.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<()>();
                let why = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = hangup => {
                        last = dir_digest(&this.dir);
                        Some("SIGHUP")
                    }
                    _ = tick.tick() => {
                        let now = dir_digest(&this.dir);
                        let changed = now != last;
                        last = now;
                        changed.then_some("rules directory changed")
                    }
                };
                if let Some(why) = why {
                    reload(why).await;
                }
            }
        }
    }

    /// Loads the directory and swaps the set in when it is valid and different.
    pub fn reload(&self, why: &str) -> Reload {
        match load_dir(&self.dir, &self.targets, &self.extra_actions) {
            Ok(set) => {
                let running = current(&self.rules);
                if set.version() == running.version() {
                    return Reload::Unchanged;
                }
                let (from, to) = (running.version().to_string(), set.version().to_string());
                self.metrics.rules_activated(set.len(), set.version());
                tracing::info!(why, from = %from, to = %to, rules = set.len(), "rules reloaded");
                for w in set.warnings() {
                    tracing::warn!(warning = %w, "rules");
                }
                *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                Reload::Swapped { from, to }
            }
            Err(problems) => {
                self.metrics.rules_reload_failed();
                for p in &problems {
                    tracing::error!(why, problem = %p, "rules reload refused; keeping the running rules");
                }
                Reload::Refused(problems)
            }
        }
    }
}

/// Hash of the rule files' names and contents; `None` when the directory cannot be read.
fn dir_digest(dir: &Path) -> Option<[u8; 32]> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap_or_default());
    }
    Some(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;

    const RULE: &str = "rules:\n  - id: r1\n    match: {event_types: [\"urn:x:y\"]}\n    actions:\n      - action: revoke_sessions\n        targets: [okta]\n";

    fn reloader(dir: &Path) -> Reloader {
        let targets = vec![TargetSettings {
            name: "okta".into(),
            topic: "t".into(),
            kind: TargetKind::Idp,
            actions: vec!["revoke_sessions".into()],
            require_approval: false,
            result_timeout: None,
            max_attempts: None,
            disclosure: None,
            disclose: None,
            pseudonymise: Vec::new(),
        }];
        let set = load_dir(dir, &targets, &[]).unwrap();
        Reloader {
            dir: dir.into(),
            targets,
            extra_actions: vec![],
            rules: shared(set),
            metrics: Arc::new(Metrics::new()),
            poll: Duration::from_secs(1),
        }
    }

    #[test]
    fn valid_change_swaps_and_broken_change_keeps_running_rules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), RULE).unwrap();
        let r = reloader(dir.path());
        let v1 = current(&r.rules).version().to_string();
        assert!(matches!(r.reload("test"), Reload::Unchanged));

        std::fs::write(dir.path().join("b.yaml"), RULE.replace("r1", "r2")).unwrap();
        let Reload::Swapped { from, to } = r.reload("test") else {
            panic!("not swapped")
        };
        assert_eq!(from, v1);
        assert_eq!(current(&r.rules).len(), 2);

        std::fs::write(
            dir.path().join("c.yaml"),
            RULE.replace("okta", "nowhere").replace("r1", "r3"),
        )
        .unwrap();
        assert!(matches!(r.reload("test"), Reload::Refused(p) if p.len() == 1));
        assert_eq!(current(&r.rules).version(), to, "running rules kept");
        assert!(r
            .metrics
            .render()
            .contains("containd_rules_reload_failures_total 1"));
    }
}
