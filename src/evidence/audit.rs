//! `containd audit`: what an auditor can prove from the decisions topic, read directly (no
//! daemon needed). `verify` walks every evidence chain and reports the first break, naming its
//! position; `timeline` prints an identity's history.

use super::{hash, GENESIS};
use crate::emit::DecisionRecord;
use serde::Serialize;
use std::collections::BTreeMap;

/// A decision record as read from the topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    /// The broker's timestamp of the record (ms).
    pub at: i64,
    pub record: DecisionRecord,
    /// The bytes read are exactly the record's own encoding: nothing was added that the
    /// hash, computed over the decoded record, would not cover.
    pub canonical: bool,
    /// The record's v2 hash (over its Avro encoding, hex), for a chained Avro record; its v1
    /// hash is computed when this one does not match.
    pub v2: Option<String>,
}

/// Where a chain breaks and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub partition: i32,
    pub offset: i64,
    pub chain: String,
    pub seq: i64,
    pub what: String,
}

/// A chain's newest record, to compare with the heads containd logged (docs/evidence.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub partition: i32,
    pub chain: String,
    pub seq: i64,
    pub hash: String,
}

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Chained records read (duplicates included).
    pub chained: usize,
    /// Records without a link on a partition before its first chained one (written before the
    /// chain existed); they prove nothing.
    pub unchained: usize,
    /// Records that did not decode as decision records.
    pub undecodable: usize,
    /// Identical copies of a record (a redelivery, wherever it landed): not a break.
    pub duplicates: usize,
    pub chains: usize,
    /// Every chain's newest record.
    pub heads: Vec<ChainHead>,
    /// Every break, by partition and position.
    pub breaks: Vec<Break>,
}

impl Report {
    pub fn verified(&self) -> bool {
        self.breaks.is_empty() && self.undecodable == 0
    }
}

/// One chain's records by sequence number: (offset, hash, prev) of each copy.
type Links = BTreeMap<i64, Vec<(i64, String, String)>>;

/// Checks every record's hash, then each (partition, chain) by sequence number — so a copy
/// produced again after a delivery failure, wherever it landed, is a duplicate, not a break.
/// `mid_chain`: records before the window were left out on purpose (`--from`).
pub fn verify(records: &[Read], undecodable: usize, mid_chain: bool) -> Report {
    let mut report = Report {
        undecodable,
        ..Report::default()
    };
    let mut chains: BTreeMap<(i32, String), Links> = BTreeMap::new();
    let mut chained_from: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        let Some(link) = &r.record.chain else {
            match chained_from.get(&r.partition) {
                // A record without a link among chained ones: containd did not write it so.
                Some(_) => report.breaks.push(Break {
                    partition: r.partition,
                    offset: r.offset,
                    chain: String::new(),
                    seq: -1,
                    what: "an unchained record after the partition's chain began: forged".into(),
                }),
                None => report.unchained += 1,
            }
            continue;
        };
        report.chained += 1;
        chained_from.entry(r.partition).or_insert(r.offset);
        if let Some(what) = edited(r, link) {
            report.breaks.push(Break {
                partition: r.partition,
                offset: r.offset,
                chain: link.id.clone(),
                seq: link.seq,
                what,
            });
            continue;
        }
        chains
            .entry((r.partition, link.id.clone()))
            .or_default()
            .entry(link.seq)
            .or_default()
            .push((r.offset, link.hash.clone(), link.prev.clone()));
    }
    for ((partition, id), links) in &chains {
        walk((*partition, id), links, mid_chain, &mut report);
    }
    report.chains = chains.len();
    report.breaks.sort_by_key(|b| (b.partition, b.offset));
    report
}

/// Why the record is not what it says it is, or `None`.
fn edited(r: &Read, link: &crate::emit::ChainLink) -> Option<String> {
    let Some(prev) = decode_hex(&link.prev) else {
        return Some("its link names no previous hash".into());
    };
    if !r.canonical {
        return Some("edited: its bytes are not the record's own encoding".into());
    }
    let sealed = r.v2.as_deref() == Some(link.hash.as_str())
        || crate::codec::hex(hash(&prev, &r.record)) == link.hash;
    (!sealed).then(|| "edited: the record does not hash to the hash it carries".into())
}

/// One chain in sequence order: copies agree, it starts at 0, no sequence number is missing,
/// and each record follows the one before it.
fn walk((partition, id): (i32, &str), links: &Links, mid_chain: bool, report: &mut Report) {
    let mut fail = |offset: i64, seq: i64, what: String| {
        report.breaks.push(Break {
            partition,
            offset,
            chain: id.to_string(),
            seq,
            what,
        })
    };
    let mut before: Option<(i64, &str)> = None;
    for (seq, copies) in links {
        let (offset, hash, prev) = &copies[0];
        report.duplicates += copies.len() - 1;
        if copies.iter().any(|(_, h, _)| h != hash) {
            let other = copies.iter().find(|(_, h, _)| h != hash).map_or(0, |c| c.0);
            fail(
                other,
                *seq,
                format!("a second, different record claims seq {seq}: one of the two was forged"),
            );
        }
        match before {
            None if *seq == 0 && *prev == crate::codec::hex(GENESIS) => {}
            None if mid_chain => {}
            None => fail(*offset, *seq, format!("the chain's first {seq} record(s) are missing (removed, or past retention: --from starts mid-chain)")),
            Some((last, _)) if *seq != last.saturating_add(1) => fail(
                *offset,
                *seq,
                format!("seq {seq} follows seq {last}: {} record(s) removed before it", seq.saturating_sub(last).saturating_sub(1)),
            ),
            Some((_, last_hash)) if last_hash != prev => fail(
                *offset,
                *seq,
                "does not follow the record before it: that record was replaced".into(),
            ),
            Some(_) => {}
        }
        before = Some((*seq, hash));
    }
    if let Some((seq, hash)) = before {
        report.heads.push(ChainHead {
            partition,
            chain: id.to_string(),
            seq,
            hash: hash.to_string(),
        });
    }
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).ok()?;
    Some(b)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] crate::client::snapshot::ReadError),
    #[error("bundled Avro schemas: {0}")]
    Schema(#[from] apache_avro::Error),
    #[error("the decisions topic does not verify (see above)")]
    NotVerified,
}

impl crate::cli::Failure for Error {
    fn is_config(&self) -> bool {
        false
    }
}

/// Reads the decisions topic (every partition, to its end) as decision records in the
/// output format the config names; how many did not decode.
pub fn read(settings: &crate::config::Settings, topic: &str) -> Result<(Vec<Read>, usize), Error> {
    use crate::config::OutputFormat;
    let records = crate::client::snapshot::read(settings, topic, "containd-audit-cli")?;
    let schemas = std::sync::Arc::new(crate::codec::Schemas::bundled()?);
    let codec = crate::codec::AvroCodec::new(schemas, &[]);
    let mut out = Vec::new();
    let mut undecodable = 0;
    for r in records {
        let Some(payload) = r.payload else { continue };
        let decoded: Option<DecisionRecord> = match settings.output.format {
            OutputFormat::Avro => codec.decode_decision(&payload).ok(),
            OutputFormat::Json => serde_json::from_slice(&payload).ok(),
        };
        let Some(record) = decoded else {
            undecodable += 1;
            continue;
        };
        let again = match settings.output.format {
            OutputFormat::Avro => codec.encode_decision(&record).ok(),
            OutputFormat::Json => serde_json::to_vec(&record).ok(),
        };
        let v2 = match settings.output.format {
            OutputFormat::Avro => v2_hash(&codec, &record),
            OutputFormat::Json => None,
        };
        out.push(Read {
            partition: r.partition,
            offset: r.offset,
            at: r.at,
            canonical: again.as_deref() == Some(payload.as_slice()),
            record,
            v2,
        });
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok((out, undecodable))
}

/// A chained record's v2 hash: over its Avro encoding with the link's hash empty.
pub(crate) fn v2_hash(codec: &crate::codec::AvroCodec, record: &DecisionRecord) -> Option<String> {
    let prev = decode_hex(&record.chain.as_ref()?.prev)?;
    let encoded = codec.encode_decision(&super::without_hash(record)).ok()?;
    Some(crate::codec::hex(super::encoded_digest(&prev, &encoded)))
}

/// `containd audit verify`: prints the report; returns whether the topic verified. Records
/// written outside [`from`, `to`] (ms, the broker's record time, which follows a chain's
/// order) are left out, and chains may then begin mid-way.
pub fn show_verify(
    settings: &crate::config::Settings,
    topic: &str,
    (from, to): (Option<i64>, Option<i64>),
    json: bool,
) -> Result<bool, Error> {
    let (mut records, undecodable) = read(settings, topic)?;
    records.retain(|r| from.is_none_or(|f| r.at >= f) && to.is_none_or(|t| r.at <= t));
    let report = verify(&records, undecodable, from.is_some());
    match json {
        true => crate::cli::say!("{}", serde_json::json!(report)),
        false => crate::cli::say!("{}", render(&report)),
    }
    Ok(report.verified())
}

/// `containd audit timeline`: an identity's decision records, as text or JSON.
pub fn show_timeline(
    settings: &crate::config::Settings,
    topic: &str,
    subject: &str,
    json: bool,
) -> Result<(), Error> {
    let (records, _) = read(settings, topic)?;
    let steps = timeline(&records, subject);
    match json {
        true => {
            let list: Vec<&DecisionRecord> = steps.iter().map(|s| &s.record).collect();
            crate::cli::say!("{}", serde_json::json!({"subject": subject, "steps": list}));
        }
        false => crate::cli::say!("{}", render_timeline(subject, &steps)),
    }
    Ok(())
}

/// The text form of a verification.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "{} chained record(s) in {} chain(s), {} duplicate(s) of a redelivery, {} unchained, {} undecodable\n",
        report.chained, report.chains, report.duplicates, report.unchained, report.undecodable
    );
    match report.breaks.first() {
        None if report.undecodable == 0 => out.push_str("verified: no record removed or altered\n"),
        None => out.push_str("NOT VERIFIED: records that are not decision records are on the topic\n"),
        Some(b) => out.push_str(&format!(
            "NOT VERIFIED: first break at partition {} offset {} (chain {} seq {}): {}\n{} break(s) in all\n",
            b.partition, b.offset, b.chain, b.seq, b.what, report.breaks.len()
        )),
    }
    out
}

/// An identity's history: its decision records in time order (signals, what was decided,
/// commands, approvals, results, expiries, disclosures — every step containd records).
pub fn timeline<'a>(records: &'a [Read], subject: &str) -> Vec<&'a Read> {
    let mut mine: Vec<&Read> = records
        .iter()
        .filter(|r| {
            r.record.subject_id == subject || r.record.identity.id.as_deref() == Some(subject)
        })
        .collect();
    mine.sort_by_key(|r| (r.record.decided_at, r.partition, r.offset));
    // A redelivered copy is one step.
    mine.dedup_by(|a, b| a.record.chain.is_some() && a.record.chain == b.record.chain);
    mine
}

/// One line per step.
pub fn render_timeline(subject: &str, steps: &[&Read]) -> String {
    if steps.is_empty() {
        return format!("{subject}: no decision records\n");
    }
    let mut out = format!("{subject}: {} step(s)\n", steps.len());
    for s in steps {
        let r = &s.record;
        let mut line = format!(
            "{}  {:<18} {}",
            crate::cli::rfc3339(r.decided_at),
            r.outcome.name(),
            r.event_type
        );
        if !r.signal_id.is_empty() {
            line.push_str(&format!(" (signal {})", r.signal_id));
        }
        if !r.command_ids.is_empty() {
            line.push_str(&format!(" → commands {}", r.command_ids.join(", ")));
        }
        for h in &r.held {
            line.push_str(&format!(
                "; held {} at {} ({})",
                h.action, h.target, h.reason
            ));
        }
        for d in &r.disclosures {
            line.push_str(&format!(
                "; {} got {} ({} withheld)",
                d.target,
                d.profile,
                d.withheld.len()
            ));
        }
        for n in &r.notes {
            line.push_str(&format!("; {n}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}
