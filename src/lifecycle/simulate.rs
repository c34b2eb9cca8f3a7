//! A simulated enforcement, for the reference adapter and the demo: whether a send of a
//! command "works", decided per (command id, attempt) so a replay answers the same.

use crate::emit::ResultStatus;
use sha2::{Digest, Sha256};

/// `Failed` for about `rate` of the (command id, attempt) pairs, else `Succeeded`.
pub fn enforce(command_id: &str, attempt: i32, rate: f64) -> ResultStatus {
    let digest = Sha256::digest(format!("{command_id}#{attempt}"));
    let draw = f64::from(u16::from_be_bytes([digest[0], digest[1]])) / f64::from(u16::MAX);
    if draw < rate {
        ResultStatus::Failed
    } else {
        ResultStatus::Succeeded
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rate_holds_and_a_replay_answers_the_same() {
        let failed = (0..10_000)
            .filter(|i| super::enforce(&format!("c{i}"), 1, 0.1) == super::ResultStatus::Failed)
            .count();
        assert!((800..1200).contains(&failed), "{failed}");
        assert_eq!(super::enforce("c1", 2, 0.5), super::enforce("c1", 2, 0.5));
        assert_eq!(super::enforce("c1", 1, 0.0), super::ResultStatus::Succeeded);
        assert_eq!(super::enforce("c1", 1, 1.0), super::ResultStatus::Failed);
    }
}
