//! Outputs the broker did not take. An output that is never acknowledged holds back its
//! signal's offset; exiting on it used to turn one refused record into a crash loop (the
//! replay is refused again). Instead each kind of output has a policy (docs/operations.md):
//!
//! - **commands and decision records** refused for good (unknown or invalid topic, not
//!   authorised, too large, invalid record) are retried [`REFUSED_ATTEMPTS`] times, then
//!   dead-lettered: the refused record itself goes to the dead-letter topic with the refusal
//!   in its headers (`output_refused`), so an operator can re-drive it once the target is
//!   fixed, and the signal's offset moves on;
//! - anything else that fails (a broker outage longer than `message.timeout.ms`) is produced
//!   again, with backoff, for as long as it takes;
//! - **dead letters and state records** are always produced again: there is nowhere further
//!   to put them, and dropping one would lose a signal or a containment.
//!
//! The delivery callback (librdkafka's thread) queues what failed; the pipeline's loop takes
//! what is due and produces it again with the same acknowledgement token, so the signal's
//! offset still waits for exactly one acknowledgement per output.

use super::kafka::AckToken;
use super::{OutKind, OutRecord};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a command or decision record the broker refuses for good is tried before it is
/// dead-lettered.
pub const REFUSED_ATTEMPTS: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// An output to produce again once `due`.
pub struct Undelivered {
    pub token: Box<AckToken>,
    pub error: String,
    pub refused: bool,
    due: Instant,
}

/// What failed, waiting to be produced again.
#[derive(Default)]
pub struct Redelivery {
    queue: Mutex<Vec<Undelivered>>,
}

/// What to do with an output that was not acknowledged.
pub enum Next {
    /// Produce the same record again.
    Again(Box<AckToken>),
    /// Give up on it: dead-letter it (the token's record) with the refusal.
    DeadLetter(Box<AckToken>, String),
}

impl Redelivery {
    /// Queues a failed output (called from the delivery callback).
    pub fn failed(&self, mut token: Box<AckToken>, error: &KafkaError) {
        token.attempts += 1;
        let backoff = Duration::from_millis(250 << token.attempts.min(7)).min(MAX_BACKOFF);
        let u = Undelivered {
            refused: refused_for_good(error),
            error: error.to_string(),
            token,
            due: Instant::now() + backoff,
        };
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(u);
    }

    /// Takes the outputs due by `now`, each with what to do next.
    pub fn due(&self, now: Instant) -> Vec<Next> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_empty() {
            return Vec::new();
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = queue.drain(..).partition(|u| u.due <= now);
        *queue = waiting;
        ready.into_iter().map(next).collect()
    }

    pub fn waiting(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The per-kind policy.
fn next(u: Undelivered) -> Next {
    let gives_up = matches!(
        u.token.record.as_ref().map(|r| &r.kind),
        Some(OutKind::Command { .. } | OutKind::Decision | OutKind::Hold)
    );
    if gives_up && u.refused && u.token.attempts >= REFUSED_ATTEMPTS {
        Next::DeadLetter(u.token, u.error)
    } else {
        Next::Again(u.token)
    }
}

/// Errors no retry of the same record fixes.
fn refused_for_good(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::MessageSizeTooLarge
                | C::MessageBatchTooLarge
                | C::InvalidRecord
                | C::InvalidMessage
                | C::InvalidRequiredAcks
                | C::PolicyViolation
        )
    )
}

/// The token carrying `record` (the output, or the dead letter that takes its place).
pub fn replace(mut token: Box<AckToken>, record: Arc<OutRecord>) -> Box<AckToken> {
    token.record = Some(record);
    token.attempts = 0;
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(kind: OutKind) -> Box<AckToken> {
        Box::new(AckToken {
            topic: Arc::from("signals"),
            partition: 0,
            offset: 7,
            command_of_signal_at: None,
            tracked: true,
            attempts: 0,
            record: Some(Arc::new(OutRecord {
                topic: Arc::from("bad topic"),
                partition: None,
                key: None,
                payload: b"x".to_vec(),
                headers: Vec::new(),
                kind,
            })),
            settle: None,
        })
    }

    fn refused() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTopic)
    }

    fn outage() -> KafkaError {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    }

    /// Fails the output `times` times and returns what the policy says after the last.
    fn after(kind: OutKind, error: KafkaError, times: u32) -> Next {
        let r = Redelivery::default();
        let mut t = token(kind);
        for i in 0..times {
            r.failed(t, &error);
            let mut due = r.due(Instant::now() + MAX_BACKOFF);
            assert_eq!(due.len(), 1);
            match due.remove(0) {
                Next::Again(again) => t = again,
                dead @ Next::DeadLetter(..) => {
                    assert_eq!(i + 1, times, "dead-lettered early");
                    return dead;
                }
            }
        }
        Next::Again(t)
    }

    #[test]
    fn a_refused_command_is_tried_three_times_then_dead_lettered() {
        let command = || OutKind::Command {
            target: "aws".into(),
            action: "revoke_sessions".into(),
        };
        assert!(matches!(after(command(), refused(), 2), Next::Again(_)));
        assert!(matches!(
            after(command(), refused(), REFUSED_ATTEMPTS),
            Next::DeadLetter(_, e) if e.contains("Topic")
        ));
        assert!(matches!(
            after(OutKind::Decision, refused(), REFUSED_ATTEMPTS),
            Next::DeadLetter(..)
        ));
    }

    #[test]
    fn outages_and_dead_letters_and_state_are_retried_without_end() {
        let command = OutKind::Command {
            target: "aws".into(),
            action: "revoke_sessions".into(),
        };
        assert!(matches!(after(command, outage(), 10), Next::Again(_)));
        assert!(matches!(
            after(OutKind::DeadLetter, refused(), 10),
            Next::Again(_)
        ));
        assert!(matches!(
            after(OutKind::State, refused(), 10),
            Next::Again(_)
        ));
    }

    #[test]
    fn nothing_is_due_before_its_backoff() {
        let r = Redelivery::default();
        r.failed(token(OutKind::Decision), &outage());
        assert!(r.due(Instant::now()).is_empty());
        assert_eq!(r.waiting(), 1);
        assert_eq!(r.due(Instant::now() + Duration::from_secs(1)).len(), 1);
    }
}
