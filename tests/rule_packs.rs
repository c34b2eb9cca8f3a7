//! The shipped rule packs (`rules/`): they load against the example targets, their tests
//! pass, and every CAEP and RISC event type has a rule (an action or a recorded decision).

use containd::signal::{caep, risc, CAEP_PREFIX, RISC_PREFIX};
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn packs() -> containd::rules::RuleSet {
    let text = std::fs::read_to_string(root().join("examples/containd.toml")).unwrap();
    let settings = containd::config::parse(&root().join("examples/containd.toml"), &text).unwrap();
    containd::rules::load_dir(
        &root().join("rules"),
        &settings.targets,
        &settings.extra_actions,
    )
    .unwrap_or_else(|p| panic!("packs do not load: {p:?}"))
}

#[test]
fn every_caep_and_risc_event_type_has_a_rule() {
    let packs = packs();
    let mut uncovered = Vec::new();
    let types = caep::ALL
        .iter()
        .map(|t| format!("{CAEP_PREFIX}{t}"))
        .chain(risc::ALL.iter().map(|t| format!("{RISC_PREFIX}{t}")));
    for t in types {
        if packs.rules_for_event_type(&t).is_empty() {
            uncovered.push(t);
        }
    }
    assert!(uncovered.is_empty(), "no rule for {uncovered:?}");
}

#[test]
fn pack_tests_pass() {
    let o = Command::new(env!("CARGO_BIN_EXE_containd"))
        .args(["rules", "test"])
        .arg(root().join("rules"))
        .arg("--config")
        .arg(root().join("examples/containd.toml"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let last = out.lines().last().unwrap_or_default();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(
        passed >= 27 && last.ends_with(" passed, 0 failed"),
        "{last}"
    );
}

/// The shipped conditions and parameter expressions all run natively: one that falls back to
/// the CEL interpreter costs ~25 µs per signal it sees (docs/benchmarks.md).
#[test]
fn pack_expressions_have_native_forms() {
    let packs = packs();
    let mut slow = Vec::new();
    for rule in packs.rules() {
        if let Some(c) = &rule.condition {
            if !c.is_fast() {
                slow.push(format!("{}: condition {}", rule.id, c.source));
            }
        }
        let actions = rule
            .actions
            .iter()
            .chain(rule.escalate.iter().flat_map(|e| e.steps.iter().flatten()));
        for a in actions {
            for (name, p) in &a.parameters {
                if let containd::rules::Param::Expr(c) = p {
                    if !c.has_native_value() {
                        slow.push(format!("{}: parameter {name} {}", rule.id, c.source));
                    }
                }
            }
        }
    }
    assert!(slow.is_empty(), "interpreted expressions: {slow:#?}");
}

/// A command a window fires names every signal that filled the window, not only the last.
#[test]
fn a_correlation_command_cites_every_contributing_signal() {
    let mut decider = containd::offline::OfflineDecider::load(
        &root().join("examples/containd.toml"),
        &root().join("rules"),
    )
    .unwrap_or_else(|p| panic!("{p:?}"));
    let risk = |id: &str, at: &str| {
        serde_json::to_vec(&serde_json::json!({
            "id": id, "source": {"issuer": "https://risk.acme.example"},
            "event_type": "https://schemas.openid.net/secevent/caep/event-type/risk-level-change",
            "occurred_at": at, "subject": {"format": "opaque", "identifiers": {"id": "svc-ml"}},
            "event": {"principal": "USER", "current_level": "MEDIUM"}}))
        .unwrap()
    };
    let times = [
        "2026-11-23T09:00:00Z",
        "2026-11-23T09:04:00Z",
        "2026-11-23T09:08:00Z",
    ];
    let mut last = None;
    for (i, at) in times.iter().enumerate() {
        last = Some(
            decider
                .decide_json(&risk(&format!("c-{i}"), at), i as i64)
                .unwrap(),
        );
    }
    let revoke = last
        .unwrap()
        .commands
        .into_iter()
        .find(|c| c.why.rule_id == "repeated-medium-risk-revoke")
        .expect("the window fired");
    assert_eq!(revoke.why.signal_ids, ["c-0", "c-1", "c-2"]);
}
