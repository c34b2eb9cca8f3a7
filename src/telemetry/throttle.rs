//! Log lines an attacker can cause (one per dead letter, per failing condition, per client
//! error) are throttled: a flood of bad records must not become a flood of log bytes. Each
//! kind of line gets a few per second; the lines it drops are counted and reported on the
//! next one it lets through. Metrics stay exact — only the log is sampled.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    per_second: u32,
    window: Mutex<Window>,
}

struct Window {
    started: Option<Instant>,
    logged: u32,
    dropped: u64,
}

impl Throttle {
    pub const fn new(per_second: u32) -> Self {
        Self {
            per_second,
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
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            w.started = Some(now);
            w.logged = 0;
        }
        if w.logged >= self.per_second {
            w.dropped += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.dropped))
    }
}

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
}
