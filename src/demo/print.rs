//! What the demo prints: each command, the summary, what trust and the safety rails did.

use super::inputs::SET_TOPIC;
use super::*;

pub(super) fn print(
    json: bool,
    signals: &[Signal],
    decisions: &[DecisionRecord],
    commands: &HashMap<String, EnforcementCommand>,
    version: &str,
    dead_lettered: u64,
) {
    let by_signal: HashMap<&str, &DecisionRecord> = decisions
        .iter()
        .map(|d| (d.signal_id.as_str(), d))
        .collect();
    if !json {
        say!(
            "containd demo: {} sample signals through the seed rules (rule set {version}) on an in-process cluster\n",
            signals.len()
        );
        say!(
            "{:<18} {:<22} {:<30} {:<34} RULE",
            "TARGET",
            "ACTION",
            "SUBJECT",
            "AS (inventory principal)"
        );
    }
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut printed = 0;
    for s in signals {
        let Some(d) = by_signal.get(s.id.as_str()) else {
            continue;
        };
        *outcomes.entry(d.outcome.name()).or_default() += 1;
        for id in &d.command_ids {
            let Some(c) = commands.get(id) else { continue };
            printed += 1;
            print_command(json, c, &s.id);
        }
    }
    if !json {
        print_summary(
            signals,
            decisions,
            commands,
            (&outcomes, printed, dead_lettered),
        );
    }
}

/// One command: a table row, or a JSON line with `--json`.
fn print_command(json: bool, c: &EnforcementCommand, signal_id: &str) {
    if json {
        let line = serde_json::json!({
            "target": c.target,
            "action": c.action,
            "subject_id": c.subject.id,
            "rule_id": c.why.rule_id,
            "command_id": c.command_id,
            "signal_id": signal_id,
            "principal_id": c.principal_id,
            "parameters": c.parameters,
            "expires_at": c.expires_at,
        });
        say!("{line}");
    } else {
        say!(
            "{:<18} {:<22} {:<30} {:<34} {}",
            c.target,
            c.action,
            c.subject.id,
            c.principal_id.as_deref().unwrap_or("-"),
            c.why.rule_id
        );
    }
}

/// Counts by outcome, the inventory's part, then what trust and the safety rails did.
fn print_summary(
    signals: &[Signal],
    decisions: &[DecisionRecord],
    commands: &HashMap<String, EnforcementCommand>,
    (outcomes, printed, dead_lettered): (&BTreeMap<&str, usize>, usize, u64),
) {
    let outcomes: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let targets: std::collections::BTreeSet<&str> =
        commands.values().map(|c| c.target.as_str()).collect();
    say!(
        "\nsummary: {} signals, {} decisions ({}), {} dead letters, {} commands on {} targets",
        signals.len(),
        decisions.len(),
        outcomes.join(", "),
        dead_lettered,
        printed,
        targets.len(),
    );
    let known = decisions.iter().filter(|d| d.identity.id.is_some()).count();
    let ownerless: Vec<&str> = decisions
        .iter()
        .filter(|d| d.identity.ownerless)
        .filter_map(|d| d.identity.id.as_deref())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    say!(
        "identities: {known} decisions on inventory identities, {} on unknown ones; owner-less: {}",
        decisions.len() - known,
        if ownerless.is_empty() {
            "none".to_string()
        } else {
            ownerless.join(", ")
        },
    );
    print_trust(decisions);
    print_held(decisions);
}

/// What the safety rails held, and why.
fn print_held(decisions: &[DecisionRecord]) {
    for d in decisions {
        for note in d.notes.iter().filter(|n| n.starts_with("circuit breaker")) {
            say!("safety: {} {note}", d.signal_id);
        }
        for h in &d.held {
            say!(
                "safety: {} {} -> {} held ({}): {}",
                d.signal_id,
                h.action,
                h.target,
                h.reason,
                h.detail
            );
        }
    }
}

/// What trust did: SETs verified, signals refused and why.
fn print_trust(decisions: &[DecisionRecord]) {
    for d in decisions {
        match (&d.trust.verdict, d.source.topic.as_str()) {
            (crate::emit::Verdict::Trusted, SET_TOPIC) => say!(
                "trust: SET {} from {} verified (ES256, JWKS file) -> {}",
                d.signal_id,
                d.trust.issuer,
                d.outcome.name()
            ),
            (crate::emit::Verdict::Trusted, _) => {}
            _ => say!(
                "trust: {} from {} refused: {} ({}); no command, no state change",
                d.signal_id,
                d.trust.issuer,
                d.trust.reason_kind.as_deref().unwrap_or_default(),
                d.trust.reason.as_deref().unwrap_or_default()
            ),
        }
    }
}
