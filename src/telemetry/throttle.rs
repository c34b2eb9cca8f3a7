//! Log lines an attacker can cause (one per dead letter, per failing condition, per client
//! error) are throttled: a flood of bad records must not become a flood of log bytes. Each
//! kind of line gets a few per second; the lines it drops are counted and reported on the
//! next one it lets through. Metrics stay exact — only the log is sampled.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    per_window: u32,
    window_len: Duration,
    window: Mutex<Window>,
}

struct Window {
    started: Option<Instant>,
    logged: u32,
    dropped: u64,
}

impl Throttle {
    pub const fn new(per_second: u32) -> Self {
        Self::per(per_second, Duration::from_secs(1))
    }

    /// `n` lines per `window`: for what repeats while an outage lasts (client errors), where
    /// the first line says it all and later ones only that it goes on.
    pub const fn per(n: u32, window: Duration) -> Self {
        Self {
            per_window: n,
            window_len: window,
            window: Mutex::new(Window {
                started: None,
                logged: 0,
                dropped: 0,
            }),
        }
    }

    /// `Some(dropped)` when this line may be logged (`dropped` lines were left out since the
    /// last one that was); `None` when it is to be left out.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.started
            .is_none_or(|s| now.duration_since(s) >= self.window_len)
        {
            w.started = Some(now);
            w.logged = 0;
        }
        if w.logged >= self.per_window {
            w.dropped += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.dropped))
    }
}

/// librdkafka's own log lines (connection refused, broker down, …), which repeat every
/// reconnect while a broker is away: one per `CLIENT_WINDOW` per level, the rest counted.
pub fn librdkafka_log(level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    static ERRORS: Throttle = Throttle::per(1, CLIENT_WINDOW);
    static WARNINGS: Throttle = Throttle::per(1, CLIENT_WINDOW);
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            if let Some(dropped) = ERRORS.allow() {
                tracing::error!(target: "librdkafka", facility, unlogged_before = dropped, "{message}");
            }
        }
        L::Warning => {
            if let Some(dropped) = WARNINGS.allow() {
                tracing::warn!(target: "librdkafka", facility, unlogged_before = dropped, "{message}");
            }
        }
        L::Notice | L::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// How often a repeating client error is logged again while it lasts.
pub const CLIENT_WINDOW: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_a_second_pass_and_the_rest_are_counted() {
        let t = Throttle::new(3);
        let t0 = Instant::now();
        let passed: Vec<Option<u64>> = (0..10).map(|_| t.allow_at(t0)).collect();
        assert_eq!(passed.iter().filter(|p| p.is_some()).count(), 3);
        // The next second's first line reports the seven left out.
        assert_eq!(t.allow_at(t0 + Duration::from_millis(1001)), Some(7));
        assert_eq!(t.allow_at(t0 + Duration::from_millis(1002)), Some(0));
    }

    #[test]
    fn an_outage_logs_one_client_error_per_window() {
        // A client error every second of a five-minute outage: 10 lines, not 300.
        let t = Throttle::per(1, CLIENT_WINDOW);
        let t0 = Instant::now();
        let logged: Vec<u64> = (0..300)
            .filter_map(|s| t.allow_at(t0 + Duration::from_secs(s)))
            .collect();
        assert_eq!(logged.len(), 10);
        // Each line after the first says how many were left out since the last one.
        assert_eq!(logged[0], 0);
        assert!(logged[1..].iter().all(|&n| n == 29), "{logged:?}");
    }
}
