use super::*;
use crate::config::{TargetKind, TargetSettings};
use std::path::PathBuf;

fn targets() -> Vec<TargetSettings> {
    let t = |name: &str, kind, actions: &[&str]| TargetSettings {
        name: name.into(),
        topic: format!("containment.commands.{name}.v1"),
        kind,
        actions: actions.iter().map(|a| a.to_string()).collect(),
        require_approval: false,
        result_timeout: None,
        max_attempts: None,
        disclosure: None,
        disclose: None,
        pseudonymise: Vec::new(),
    };
    vec![
        t(
            "okta",
            TargetKind::Idp,
            &["revoke_sessions", "block_session"],
        ),
        t(
            "aws",
            TargetKind::Cloud,
            &["sync_policy", "disable_credential"],
        ),
        t("gha", TargetKind::Cicd, &["sync_policy"]),
        t("gitlab", TargetKind::Cicd, &["disable_credential"]),
    ]
}

fn load(files: &[(&str, &str)]) -> Result<RuleSet, Vec<crate::config::Problem>> {
    load_sources(
        files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.to_string()))
            .collect(),
        &targets(),
        &[],
    )
}

fn signal(event_type: &str, attrs: &[(&str, &str)]) -> Signal {
    let mut s: Signal = serde_json::from_str(&format!(
        r#"{{"id":"s1","source":{{"issuer":"https://idp"}},"event_type":"{event_type}",
        "occurred_at":1,"received_at":2,
        "subject":{{"format":"opaque","identifiers":{{"id":"svc-1"}}}}}}"#
    ))
    .unwrap();
    for (k, v) in attrs {
        s.attributes.insert(k.to_string(), v.to_string());
    }
    s
}

const TWO_RULES: &str = r#"
rules:
  - id: low
    match: {event_types: ["urn:x:policy-changed"]}
    actions:
      - action: sync_policy
        targets: ["kind:cicd", aws]
  - id: high
    priority: 10
    match: {event_types: ["urn:x:*"]}
    condition: signal.attributes.level == "HIGH"
    actions:
      - action: revoke_sessions
        targets: [okta]
"#;

fn facts(s: &crate::signal::Signal) -> Facts<'_> {
    static UNKNOWN: std::sync::OnceLock<std::sync::Arc<crate::inventory::Identity>> =
        std::sync::OnceLock::new();
    Facts::new(
        s,
        "svc-1",
        UNKNOWN.get_or_init(crate::inventory::Identity::unknown),
        0,
    )
}

#[test]
fn orders_by_priority_then_file_order_and_indexes_prefixes() {
    let rules = load(&[("a.yaml", TWO_RULES)]).unwrap();
    let s = signal("urn:x:policy-changed", &[("level", "HIGH")]);
    let ids: Vec<&str> = rules
        .evaluate(&facts(&s))
        .matched
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(ids, ["high", "low"]);
    let s = signal("urn:x:other", &[("level", "LOW")]);
    assert!(rules.evaluate(&facts(&s)).matched.is_empty());
    let s = signal("urn:y:policy-changed", &[("level", "HIGH")]);
    assert!(rules.evaluate(&facts(&s)).matched.is_empty());
}

#[test]
fn kind_targets_resolve_to_targets_accepting_the_action() {
    let rules = load(&[("a.yaml", TWO_RULES)]).unwrap();
    let low = rules.rules().iter().find(|r| r.id == "low").unwrap();
    assert_eq!(
        low.actions[0].targets,
        [
            TargetRef::Named("gha".into()),
            TargetRef::Named("aws".into())
        ]
    );
}

#[test]
fn stop_skips_later_rules() {
    let text = TWO_RULES.replace("priority: 10", "priority: 10\n    stop: true");
    let rules = load(&[("a.yaml", &text)]).unwrap();
    let s = signal("urn:x:policy-changed", &[("level", "HIGH")]);
    assert_eq!(rules.evaluate(&facts(&s)).matched.len(), 1);
}

#[test]
fn version_is_a_content_hash() {
    let a = load(&[("a.yaml", TWO_RULES)]).unwrap();
    let b = load(&[("a.yaml", TWO_RULES)]).unwrap();
    let c = load(&[("a.yaml", &TWO_RULES.replace("priority: 10", "priority: 11"))]).unwrap();
    assert_eq!(a.version(), b.version());
    assert_ne!(a.version(), c.version());
}

fn messages(text: &str) -> Vec<String> {
    load(&[("bad.yaml", text)])
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn unknown_target_and_unaccepted_action_name_file_line_and_field() {
    let text = TWO_RULES
        .replace("targets: [okta]", "targets: [okta-prod]")
        .replace("action: sync_policy", "action: disable_credential")
        .replace(r#"targets: ["kind:cicd", aws]"#, "targets: [gha, aws]");
    let m = messages(&text);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(
        m.iter()
            .any(|s| s.starts_with("bad.yaml:7: rule low.actions[0].targets")
                && s.contains("\"gha\" does not accept")),
        "{m:?}"
    );
    assert!(
        m.iter().any(
            |s| s.starts_with("bad.yaml:14: rule high.actions[0].targets")
                && s.contains("okta-prod")
        ),
        "{m:?}"
    );
}

#[test]
fn yaml_errors_unknown_fields_and_cel_errors_are_load_errors() {
    let m = messages(&TWO_RULES.replace("priority: 10", "priorty: 10"));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("bad.yaml:9: rules[1]: unknown field `priorty`"),
        "{m:?}"
    );

    let m = messages(&TWO_RULES.replace("== \"HIGH\"", "== "));
    assert!(
        m[0].starts_with("bad.yaml:11: rule high.condition") && m[0].contains("CEL"),
        "{m:?}"
    );

    let m = messages(&TWO_RULES.replace("action: revoke_sessions", "action: nuke_from_orbit"));
    assert!(m[0].contains("unknown action \"nuke_from_orbit\""), "{m:?}");

    let m = messages("rules: [ {id: x");
    assert!(
        m[0].starts_with("bad.yaml:2: did not find expected"),
        "{m:?}"
    );
}

#[test]
fn duplicate_ids_across_files_are_rejected() {
    let e = load(&[("a.yaml", TWO_RULES), ("b.yaml", TWO_RULES)]).unwrap_err();
    assert_eq!(e.len(), 2);
    assert!(
        e[0].to_string()
            .contains("duplicate rule id (first defined at a.yaml:3)"),
        "{}",
        e[0]
    );
}

#[test]
fn a_rules_file_over_the_size_bound_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let padding = format!("# {}\n", "x".repeat(load::MAX_FILE_BYTES));
    std::fs::write(
        dir.path().join("10-big.yaml"),
        format!("{padding}rules: []\n"),
    )
    .unwrap();
    let p = load_dir(dir.path(), &targets(), &[]).unwrap_err();
    assert!(
        p[0].to_string().contains("10-big.yaml") && p[0].message.contains("at most"),
        "{}",
        p[0]
    );
}

#[test]
fn a_drastic_rule_on_every_event_type_needs_allow_broad() {
    let broad = |allow: &str| {
        format!(
            "rules:\n  - id: everything\n    match:\n      event_types: [\"*\"]\n{allow}    actions:\n      - action: disable_credential\n        targets: [aws]\n"
        )
    };
    let p = load(&[("10-broad.yaml", &broad(""))]).unwrap_err();
    let shown = p[0].to_string();
    assert!(
        shown.starts_with("10-broad.yaml:4: rule everything.match.event_types")
            && shown.contains("disable_credential")
            && shown.contains("allow_broad"),
        "{shown}"
    );
    assert!(load(&[("10-broad.yaml", &broad("    allow_broad: true\n"))]).is_ok());
    // A broad rule that only asks for step-up or revokes sessions is fine.
    let mild = "rules:\n  - id: mild\n    match:\n      event_types: [\"*\"]\n    actions:\n      - action: revoke_sessions\n        targets: [okta]\n";
    assert!(load(&[("10-mild.yaml", mild)]).is_ok());
}

#[test]
fn on_expiry_restore_needs_an_expiring_containment_at_targets_taking_restore() {
    let rule = |action: &str, targets: &str, extra: &str| {
        format!(
            "rules:\n  - id: r\n    match: {{event_types: [\"urn:x:y\"]}}\n    actions:\n      - action: {action}\n        targets: [{targets}]\n        on_expiry: restore\n{extra}"
        )
    };
    let cases = [
        // No expires_in: it never expires.
        (rule("block_session", "okta", ""), "needs expires_in", 7),
        // A one-shot action leaves nothing to restore.
        (
            rule("revoke_sessions", "okta", "        expires_in: 1h\n"),
            "does not hold",
            7,
        ),
        // okta takes no restore in this configuration: the target's line.
        (
            rule("block_session", "okta", "        expires_in: 1h\n"),
            "does not accept \"restore\"",
            6,
        ),
    ];
    for (text, want, line) in cases {
        let p = load(&[("r.yaml", &text)]).unwrap_err();
        assert_eq!(p[0].field, "rule r.actions[0].on_expiry", "{}", p[0]);
        assert_eq!(p[0].line, Some(line), "{}", p[0]);
        assert!(p[0].message.contains(want), "{want}: {}", p[0]);
    }
    let text =
        rule("block_session", "okta", "        expires_in: 1h\n").replace("restore", "close");
    assert!(load(&[("r.yaml", &text)]).is_ok());
}
