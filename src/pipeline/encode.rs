//! A decision's outputs as records: its commands (keyed for their target's disclosure), its
//! holds, and its decision record, linked into the evidence chain of the decisions partition
//! containd picks for it.

use super::fit;
use super::process::{OutKind, OutRecord, Processor};
use crate::config::OutputFormat;
use crate::decide::Decision;
use crate::emit::DeadLetterReason;

impl Processor {
    /// The decision's commands and record as output records, each within the producer's size
    /// limit; otherwise why not. The record is linked into its decisions partition's evidence
    /// chain only once its outputs are known to be producible: linking, encoding and the size
    /// check are one step under the chain's lock, so workers deciding in parallel never see a
    /// link that is taken back.
    pub(super) fn encode(
        &self,
        decision: &mut Decision,
        subject_id: &str,
    ) -> Result<Vec<OutRecord>, DeadLetterReason> {
        let key = subject_id.as_bytes().to_vec();
        let mut out = self.action_records(decision, &key).map_err(unencodable)?;
        if let Some(detail) = fit::oversized(&out, self.max_record_bytes) {
            return Err(too_large(detail));
        }
        let partition = self.chains.partition_of(&key);
        // Linked in place: the decision keeps the link it was written with.
        let record = &mut decision.record;
        let made = match partition {
            Some(p) => self.chains.link_with(p, record, |record, prev| {
                let (payload, hash) = self.sealed_payload(record, prev)?;
                Ok::<_, DeadLetterReason>((self.decision_out(Some(p), &key, payload)?, hash))
            })?,
            None => {
                let payload = self.decision_payload(record).map_err(unencodable)?;
                self.decision_out(None, &key, payload)?
            }
        };
        out.push(made);
        Ok(out)
    }

    /// The decision's commands and holds as records.
    fn action_records(&self, decision: &Decision, key: &[u8]) -> Result<Vec<OutRecord>, String> {
        let mut out = Vec::with_capacity(decision.commands.len() + 1);
        for c in &decision.commands {
            out.push(self.command_record(c, key)?);
        }
        out.extend(self.hold_records(decision));
        Ok(out)
    }

    fn decision_payload(&self, record: &crate::emit::DecisionRecord) -> Result<Vec<u8>, String> {
        match self.settings.output.format {
            OutputFormat::Avro => self
                .codec
                .encode_decision(record)
                .map_err(|e| e.to_string()),
            OutputFormat::Json => serde_json::to_vec(record).map_err(|e| e.to_string()),
        }
    }

    /// The linked record's hash filled in (v2 over its Avro bytes, v1 for JSON output) and
    /// its bytes.
    fn sealed_payload(
        &self,
        record: &mut crate::emit::DecisionRecord,
        prev: &[u8; 32],
    ) -> Result<(Vec<u8>, [u8; 32]), DeadLetterReason> {
        use crate::evidence::{seal_avro, seal_json};
        match self.settings.output.format {
            OutputFormat::Avro => seal_avro(record, prev, |r| self.codec.encode_decision(r))
                .map_err(|e| unencodable(e.to_string())),
            OutputFormat::Json => {
                let hash = seal_json(record, prev);
                Ok((self.decision_payload(record).map_err(unencodable)?, hash))
            }
        }
    }

    /// The decision record for the decisions topic, if within the producer's size limit.
    fn decision_out(
        &self,
        partition: Option<i32>,
        key: &[u8],
        payload: Vec<u8>,
    ) -> Result<OutRecord, DeadLetterReason> {
        let made = OutRecord {
            topic: self.decisions_topic.clone(),
            // The chain's partition: containd picks it, so the chain is the partition's log.
            partition,
            key: Some(key.to_vec()),
            payload,
            headers: Vec::new(),
            kind: OutKind::Decision,
        };
        match fit::oversized(std::slice::from_ref(&made), self.max_record_bytes) {
            None => Ok(made),
            Some(detail) => Err(too_large(detail)),
        }
    }

    /// A command for its target's topic, keyed by `key`, with its id (and, when tracked, the
    /// results partition) in headers.
    pub(super) fn command_record(
        &self,
        c: &crate::emit::EnforcementCommand,
        key: &[u8],
    ) -> Result<OutRecord, String> {
        let topic = self
            .target_topics
            .get(&c.target)
            .ok_or_else(|| format!("no topic for target {:?}", c.target))?;
        let payload = match self.settings.output.format {
            OutputFormat::Avro => self.codec.encode_command(c).map_err(|e| e.to_string())?,
            OutputFormat::Json => serde_json::to_vec(c).map_err(|e| e.to_string())?,
        };
        let mut headers = vec![("containd.command_id", c.command_id.as_bytes().to_vec())];
        headers.extend(self.results_header(key));
        // A target that may not see the subject id gets its pseudonym as the record key.
        let record_key = self.disclosure.record_key(&c.target, key);
        Ok(OutRecord {
            topic: topic.clone(),
            partition: None,
            key: Some(record_key.into_owned()),
            payload,
            headers,
            kind: OutKind::Command {
                target: c.target.clone(),
                action: c.action.clone(),
            },
        })
    }
}

fn unencodable(detail: String) -> DeadLetterReason {
    DeadLetterReason::Output {
        kind: "output_unencodable",
        detail: fit::reason(&detail),
    }
}

fn too_large(detail: String) -> DeadLetterReason {
    DeadLetterReason::Output {
        kind: "output_too_large",
        detail,
    }
}
