//! `containd status --subject ID`: what is contained for this identity, where, since when,
//! and whether the target confirmed it — the question an incident commander asks first.
//!
//! Reads the state changelog (every input partition's latest record for the subject) and the
//! results topic (the newest result per command id), like containd would after a restart.

use crate::cli::{rfc3339, say, table};
use crate::client::snapshot::{self, ReadError};
use crate::codec::{AvroCodec, Schemas};
use crate::config::{OutputFormat, Settings};
use crate::emit::{CommandResult, ResultStatus};
use crate::state::{Issued, SubjectState};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("bundled Avro schemas: {0}")]
    Schema(#[from] apache_avro::Error),
}

impl crate::cli::Failure for Error {
    fn is_config(&self) -> bool {
        false
    }
}

/// One command containd issued for the subject, as state remembers it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The input partition whose state holds it (`topic/partition`).
    pub input: String,
    pub target: String,
    pub action: String,
    pub command_id: String,
    /// When it was decided (unix ms).
    pub since: i64,
    /// In force until restored: a disable, a quarantine.
    pub containment: bool,
    /// Still in force: a containment not lifted and not expired.
    pub open: bool,
    pub expires_at: Option<i64>,
    pub lifted_at: Option<i64>,
    pub rule: Option<String>,
    pub event_type: Option<String>,
    /// The newest result its target's adapter reported, if any.
    pub result: Option<CommandResult>,
    /// With `[lifecycle]`: how often containd sent it (re-sends included).
    pub sends: Option<u32>,
    /// With `[lifecycle]`: it failed for good (every send failed or went unanswered).
    pub gave_up: bool,
    /// With `[lifecycle]`: the escalation containd issued for it (`action at target (id)`).
    pub escalation: Option<String>,
    /// `on_expiry: restore`: containd's own restore when it expires.
    pub restore_on_expiry: Option<ExpiryRestore>,
}

/// containd's restore of a containment when it expires.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiryRestore {
    /// `scheduled` (not expired yet), `due` (expired; the next sweep sends it), `issued`.
    pub state: &'static str,
    /// The restore's command id (derived from the containment's).
    pub command_id: String,
}

impl ExpiryRestore {
    fn of(issued: &Issued, now: i64) -> Option<Self> {
        let state = match (
            issued.restored_on_expiry,
            issued.restore_on_expiry.is_some(),
        ) {
            (true, _) => "issued",
            (false, true) if issued.closed.is_some() => return None,
            (false, true) if issued.restore_due(now) => "due",
            (false, true) => "scheduled",
            (false, false) => return None,
        };
        let command_id = crate::decide::expiry::restore_id(&issued.command_id.to_string());
        Some(Self { state, command_id })
    }
}

impl Entry {
    fn of(input: &str, issued: &Issued, now: i64) -> Self {
        let expired = issued.expires_at.is_some_and(|e| e <= now);
        Self {
            input: input.to_string(),
            target: issued.target.to_string(),
            action: issued.action.to_string(),
            command_id: issued.command_id.to_string(),
            since: issued.at,
            containment: issued.holds,
            open: issued.holds && issued.closed.is_none() && !expired,
            expires_at: issued.expires_at,
            lifted_at: issued.closed.map(|m| m.at),
            rule: issued.cause.as_ref().map(|c| c.rule.to_string()),
            event_type: issued.cause.as_ref().map(|c| c.event_type.to_string()),
            result: None,
            sends: None,
            gave_up: false,
            escalation: None,
            restore_on_expiry: ExpiryRestore::of(issued, now),
        }
    }

    /// Confirmed: the target says the access path is closed (or there was nothing to close).
    pub fn confirmed(&self) -> bool {
        self.result.as_ref().is_some_and(|r| r.status.closes())
    }
}

/// The subject's commands, newest first; open containments before the rest.
pub fn entries(
    subject: &str,
    changelog: Vec<snapshot::Record>,
    (results, tracked): (&BTreeMap<String, CommandResult>, &Tracked),
    now: i64,
) -> Vec<Entry> {
    // The latest record per key, in log order (a key lives in one partition).
    let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for r in changelog {
        if let Some(key) = r.key {
            latest.insert(key, r.payload.filter(|p| !p.is_empty()));
        }
    }
    let mut out = Vec::new();
    for (key, value) in latest {
        let Some((input, state)) = subject_state(&key, value.as_deref(), subject) else {
            continue;
        };
        out.extend(state.issued.iter().map(|i| {
            let mut e = Entry::of(&input, i, now);
            e.result = results.get(&e.command_id).cloned();
            e.sends = tracked.sends.get(&e.command_id).copied();
            e.gave_up = tracked.gave_up.contains(&e.command_id);
            e.escalation = tracked.escalations.get(&e.command_id).cloned();
            e
        }));
    }
    out.sort_by(|a, b| b.open.cmp(&a.open).then(b.since.cmp(&a.since)));
    out
}

/// `<topic>|<partition>|<subject>` with this subject, and its state.
fn subject_state(
    key: &[u8],
    value: Option<&[u8]>,
    subject: &str,
) -> Option<(String, SubjectState)> {
    let key = std::str::from_utf8(key).ok()?;
    let (topic, rest) = key.split_once('|')?;
    let (partition, name) = rest.split_once('|')?;
    if name != subject || partition.parse::<i32>().is_err() {
        return None;
    }
    let state = crate::state::changelog::read(value?).ok()?;
    Some((format!("{topic}/{partition}"), state))
}

/// What containd's own records on the results topic say, per command id.
#[derive(Debug, Default)]
pub struct Tracked {
    pub sends: BTreeMap<String, u32>,
    pub gave_up: std::collections::BTreeSet<String>,
    /// Failed command id → its escalation, `action at target (id)`.
    pub escalations: BTreeMap<String, String>,
}

/// containd's sealed records (only those whose seal verifies under this deployment's key;
/// none without `[lifecycle]`): sends, give-ups, escalations.
pub fn tracked(records: &[snapshot::Record], lifecycle: Option<&super::Lifecycle>) -> Tracked {
    let mut out = Tracked::default();
    let Some(lifecycle) = lifecycle else {
        return out;
    };
    for r in records {
        let (Some(seal), Some(payload)) = (&r.seal, &r.payload) else {
            continue;
        };
        if lifecycle.verify(payload, seal).is_err() {
            continue;
        }
        match serde_json::from_slice::<super::Tracking>(payload) {
            Ok(super::Tracking::Issued(i)) => {
                let c = &i.command;
                out.sends.entry(c.command_id.clone()).or_insert(1);
                if let Some(of) = &i.escalation_of {
                    let what = format!("{} at {} ({})", c.action, c.target, c.command_id);
                    out.escalations.insert(of.clone(), what);
                }
            }
            Ok(super::Tracking::Resend(m)) => {
                let sends = out.sends.entry(m.command_id).or_insert(1);
                *sends = (*sends).max(m.attempt);
            }
            Ok(super::Tracking::GiveUp(m)) => {
                out.gave_up.insert(m.command_id);
            }
            Err(_) => {}
        }
    }
    out
}

/// The newest result per command id (by its time, then attempt); records that do not decode
/// are skipped (the results topic is written by adapters, not by containd), and so are
/// containd's own (sealed) records.
pub fn results(
    records: &[snapshot::Record],
    decode: impl Fn(&[u8]) -> Option<CommandResult>,
) -> BTreeMap<String, CommandResult> {
    let mut newest: BTreeMap<String, CommandResult> = BTreeMap::new();
    let adapters = records.iter().filter(|r| r.seal.is_none());
    for r in adapters.filter_map(|r| decode(r.payload.as_deref()?)) {
        let newer = newest
            .get(&r.command_id)
            .is_none_or(|old| (r.at, r.attempt) >= (old.at, old.attempt));
        if newer {
            newest.insert(r.command_id.clone(), r);
        }
    }
    newest
}

/// Reads both topics and prints the subject's status (`--json`: one JSON object).
pub fn show(
    settings: &Settings,
    subject: &str,
    results_topic: &str,
    json: bool,
) -> Result<(), Error> {
    let changelog = snapshot::read(
        settings,
        &settings.state.changelog_topic,
        "containd-status-cli",
    )?;
    let codec = AvroCodec::new(Arc::new(Schemas::bundled()?), &[]);
    let format = settings.output.format;
    let decode = |bytes: &[u8]| -> Option<CommandResult> {
        match format {
            OutputFormat::Avro => codec.decode_result(bytes).ok(),
            OutputFormat::Json => serde_json::from_slice(bytes).ok(),
        }
    };
    let records = match snapshot::read(settings, results_topic, "containd-status-cli") {
        Ok(records) => records,
        Err(ReadError::NoTopic(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let reported = results(&records, decode);
    let lifecycle = super::Lifecycle::of(settings);
    let tracked = tracked(&records, lifecycle.as_ref());
    let now = chrono::Utc::now().timestamp_millis();
    let list = entries(subject, changelog, (&reported, &tracked), now);
    if json {
        let open = list.iter().filter(|e| e.open).count();
        let value = serde_json::json!({"subject": subject, "open": open, "commands": list});
        say!("{value}");
    } else {
        say!("{}", render(subject, &list));
    }
    Ok(())
}

/// The text form: a summary line, then one row per command.
pub fn render(subject: &str, list: &[Entry]) -> String {
    let open: Vec<&Entry> = list.iter().filter(|e| e.open).collect();
    let unconfirmed = open.iter().filter(|e| !e.confirmed()).count();
    let mut out = match (list.is_empty(), open.len()) {
        (true, _) => format!("{subject}: nothing issued (no state: not contained, or known under its inventory id)\n"),
        (false, 0) => format!("{subject}: nothing contained now\n"),
        (false, n) => format!("{subject}: {n} containment(s) in force, {unconfirmed} not confirmed by their target\n"),
    };
    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
    if !rows.is_empty() {
        out.push_str(&table(
            &[
                "STATE",
                "TARGET",
                "ACTION",
                "SINCE",
                "CONFIRMATION",
                "COMMAND",
                "CAUSE",
            ],
            &rows,
        ));
    }
    out
}

fn row(e: &Entry) -> Vec<String> {
    let state = match (e.containment, e.open, e.lifted_at) {
        (true, true, _) => match (&e.restore_on_expiry, e.expires_at) {
            (Some(_), Some(at)) => format!("contained until {}, then restored", rfc3339(at)),
            _ => "contained".to_string(),
        },
        (true, false, Some(at)) => format!("lifted {}", rfc3339(at)),
        (true, false, None) => match &e.restore_on_expiry {
            Some(r) if r.state == "issued" => format!("expired, restored ({})", r.command_id),
            Some(_) => "expired, restore due".to_string(),
            None => "expired".to_string(),
        },
        (false, _, _) => "done once".to_string(),
    };
    let mut confirmation = match &e.result {
        None => "no result yet".to_string(),
        Some(r) => format!(
            "{} {} (attempt {})",
            status_word(r.status),
            rfc3339(r.at),
            r.attempt
        ),
    };
    if let Some(n) = e.sends.filter(|n| *n > 1) {
        confirmation.push_str(&format!("; sent {n} times"));
    }
    match (&e.escalation, e.gave_up || e.escalation.is_some()) {
        (Some(to), _) => confirmation.push_str(&format!("; ESCALATED: {to}")),
        (None, true) => confirmation.push_str("; FAILED FOR GOOD, not escalated"),
        _ => {}
    }
    let cause = [e.rule.as_deref(), e.event_type.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" on ");
    vec![
        state,
        e.target.clone(),
        e.action.clone(),
        rfc3339(e.since),
        confirmation,
        e.command_id.clone(),
        cause,
    ]
}

fn status_word(s: ResultStatus) -> &'static str {
    match s {
        ResultStatus::Succeeded => "confirmed",
        ResultStatus::NotApplicable => "not applicable",
        ResultStatus::Accepted => "accepted",
        ResultStatus::Failed => "FAILED",
        ResultStatus::Rejected => "REJECTED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{record, Issued, Lifecycle, Marker, Tracking};

    fn lifecycle(dir: &std::path::Path) -> Lifecycle {
        std::fs::write(dir.join("l.key"), "a lifecycle key of 32 bytes.....").unwrap();
        let text = r#"
[input]
topics = ["s"]
[rules]
dir = "rules"
[lifecycle]
enabled = true
key_file = "l.key"
"#;
        let settings = crate::config::parse(&dir.join("c.toml"), text).unwrap();
        Lifecycle::of(&settings).unwrap()
    }

    fn record(payload: &Tracking, seal: Option<String>) -> snapshot::Record {
        snapshot::Record {
            partition: 0,
            offset: 0,
            at: 0,
            key: None,
            payload: Some(serde_json::to_vec(payload).unwrap()),
            seal: seal.map(String::into_bytes),
        }
    }

    fn issued(id: &str, escalation_of: Option<&str>) -> Tracking {
        let command: crate::emit::EnforcementCommand = serde_json::from_value(serde_json::json!({
            "command_id": id, "action": "disable_account", "target": "okta",
            "principal_id": null, "subject": {"id": "svc", "format": "opaque", "identifiers": {}},
            "parameters": {}, "issued_at": 0, "expires_at": null,
            "why": {"rule_id": "r", "ruleset_version": "v", "signal_ids": [], "event_type": "e", "description": null}
        }))
        .unwrap();
        Tracking::Issued(Box::new(Issued {
            partition: 0,
            topic: "t".into(),
            key: "svc".into(),
            identity: None,
            sent_at: 0,
            occurred_at: 0,
            received_at: 0,
            escalation_of: escalation_of.map(str::to_string),
            command,
        }))
    }

    #[test]
    fn only_sealed_records_count_as_sends_and_escalations() {
        let dir = tempfile::tempdir().unwrap();
        let l = lifecycle(dir.path());
        let sealed = |t: &Tracking| record(t, l.seal(&serde_json::to_vec(t).unwrap()));
        let resend = Tracking::Resend(Marker {
            command_id: "a".into(),
            partition: 0,
            attempt: 3,
        });
        let give_up = Tracking::GiveUp(Marker {
            command_id: "a".into(),
            partition: 0,
            attempt: 3,
        });
        let records = vec![
            sealed(&issued("a", None)),
            sealed(&resend),
            sealed(&give_up),
            sealed(&issued("e", Some("a"))),
            // Forged: no seal, or a seal under another key.
            record(&issued("x", Some("b")), None),
            record(
                &issued("y", Some("c")),
                Some(record::seal(b"another key 16by", b"{}")),
            ),
        ];
        let t = tracked(&records, Some(&l));
        assert_eq!(t.sends.get("a"), Some(&3));
        assert!(t.gave_up.contains("a"));
        assert_eq!(
            t.escalations.get("a").map(String::as_str),
            Some("disable_account at okta (e)")
        );
        assert!(!t.escalations.contains_key("b") && !t.escalations.contains_key("c"));
        // Without [lifecycle], nothing is read from them; adapters' results skip sealed ones.
        assert!(tracked(&records, None).sends.is_empty());
        assert!(results(&records, |b| serde_json::from_slice(b).ok()).is_empty());
    }

    #[test]
    fn a_restore_on_expiry_shows_scheduled_then_due_then_issued() {
        use crate::state::Issued;
        let issued: Issued = serde_json::from_value(serde_json::json!({
            "offset": 1, "at": 0, "until": 0, "target": "aws", "action": "disable_credential",
            "command_id": "0000000000000000000000000000000a", "holds": true, "expires_at": 1000,
            "restore_on_expiry": {"id": "svc-1", "format": "opaque", "identifiers": {}}}))
        .unwrap();
        let restore = crate::decide::expiry::restore_id("0000000000000000000000000000000a");
        let at = |i: &Issued, now| Entry::of("s/0", i, now);
        let e = at(&issued, 999);
        assert_eq!(e.restore_on_expiry.as_ref().unwrap().state, "scheduled");
        assert!(row(&e)[0].ends_with("then restored"), "{:?}", row(&e));
        let e = at(&issued, 1000);
        assert_eq!(e.restore_on_expiry.as_ref().unwrap().state, "due");
        assert_eq!(row(&e)[0], "expired, restore due");
        let mut state = SubjectState::new();
        state.issued.push(issued.clone());
        assert!(state.restore_issued(issued.command_id));
        let e = at(&state.issued[0], 2000);
        let r = e.restore_on_expiry.as_ref().unwrap();
        assert_eq!(
            (r.state, r.command_id.as_str()),
            ("issued", restore.as_str())
        );
        assert_eq!(row(&e)[0], format!("expired, restored ({restore})"));
        // Without on_expiry: restore, nothing about it.
        let mut plain = issued;
        plain.restore_on_expiry = None;
        assert!(at(&plain, 2000).restore_on_expiry.is_none());
    }
}
