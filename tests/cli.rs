//! The command line from outside: `check` on good and bad files, `run` refusing to start on
//! them, and the embedded demo.

use std::path::Path;
use std::process::{Command, Output};

fn containd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_containd"))
        .args(args)
        .env_remove("CONTAIND__KAFKA__BOOTSTRAP_SERVERS")
        .output()
        .expect("containd runs")
}

fn example_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/containd.toml")
        .display()
        .to_string()
}

/// A copy of the example deployment in a temp dir, with `edit` applied to config and rules.
fn deployment(
    edit_config: impl Fn(String) -> String,
    rule_file: Option<(&str, &str)>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let text = std::fs::read_to_string(root.join("containd.toml")).unwrap();
    std::fs::write(dir.path().join("containd.toml"), edit_config(text)).unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for e in std::fs::read_dir(root.join("rules")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join("rules").join(p.file_name().unwrap())).unwrap();
    }
    if let Some((name, text)) = rule_file {
        std::fs::write(dir.path().join("rules").join(name), text).unwrap();
    }
    dir
}

/// `containd check` on a deployment made by [`deployment`].
fn check(dir: &tempfile::TempDir) -> Output {
    let config = dir.path().join("containd.toml");
    containd(&["check", "--config", config.to_str().unwrap()])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_accepts_the_example_deployment() {
    let o = containd(&["check", "--config", &example_config()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("ok: 8 targets, 7 rules"), "{out}");
}

#[test]
fn bad_config_exits_78_naming_file_line_and_field() {
    let dir = deployment(
        |t| t.replace("mode = \"at_least_once\"", "mode = \"at_most_once\""),
        None,
    );
    let cfg = dir.path().join("containd.toml");
    for cmd in ["check", "run"] {
        let o = containd(&[cmd, "--config", cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(78), "{cmd}: {}", stderr(&o));
        let err = stderr(&o);
        let line = std::fs::read_to_string(&cfg)
            .unwrap()
            .lines()
            .position(|l| l.contains("at_most_once"))
            .unwrap()
            + 1;
        assert!(
            err.contains(&format!("containd.toml:{line}: delivery.mode"))
                && err.contains("at_most_once"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn bad_rules_exit_78_with_every_problem() {
    let broken = "rules:\n  - id: broken\n    match:\n      event_types: [urn:x:y]\n    condition: signal.attributes.risk ==\n    actions:\n      - action: quarantine_workload\n        targets: [okta]\n      - action: launch_missiles\n        targets: [aws]\n";
    let dir = deployment(|t| t, Some(("99-broken.yaml", broken)));
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(78));
    let err = stderr(&o);
    assert!(
        err.contains("99-broken.yaml:5: rule broken.condition: CEL"),
        "{err}"
    );
    assert!(
        err.contains("99-broken.yaml:8: rule broken.actions[0].targets: target \"okta\" does not accept \"quarantine_workload\""),
        "{err}"
    );
    assert!(
        err.contains(
            "99-broken.yaml:9: rule broken.actions[1].action: unknown action \"launch_missiles\""
        ),
        "{err}"
    );
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn check_warns_when_a_required_parameter_may_be_empty_but_starts() {
    let rule = |condition: &str| {
        format!(
            "rules:\n  - id: leak\n    match:\n      event_types: [urn:x:leak]\n{condition}    actions:\n      - action: disable_credential\n        targets: [aws]\n        parameters:\n          credential_id: {{cel: \"signal.attributes.key_id\"}}\n"
        )
    };
    let dir = deployment(|t| t, Some(("99-leak.yaml", &rule(""))));
    let o = check(&dir);
    assert!(
        o.status.success(),
        "a warning does not stop startup: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains("warning: ")
            && err.contains("99-leak.yaml:6: rule leak.actions[0].parameters: disable_credential needs one of credential_id")
            && err.contains("signal.attributes.key_id")
            && err.contains("missing_parameter"),
        "{err}"
    );
    // A condition that requires the attribute settles it.
    let guarded = rule("    condition: '\"key_id\" in signal.attributes'\n");
    let dir = deployment(|t| t, Some(("99-leak.yaml", &guarded)));
    let o = check(&dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("99-leak.yaml"), "{}", stderr(&o));
}

#[test]
fn unknown_config_field_and_missing_rules_dir_are_reported() {
    let dir = deployment(
        |t| t.replace("dry_run = false", "dry_run = false\ndryrun = true"),
        None,
    );
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("dryrun"), "{}", stderr(&o));

    let dir = deployment(
        |t| t.replace("dir = \"rules\"", "dir = \"no-such-dir\""),
        None,
    );
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).contains("no-such-dir") && stderr(&o).contains("rules.dir"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn environment_overrides_the_file() {
    let o = Command::new(env!("CARGO_BIN_EXE_containd"))
        .args(["check", "--config", &example_config()])
        .env("CONTAIND__RULES__DIR", "/nonexistent/rules")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    assert!(stderr(&o).contains("/nonexistent/rules"), "{}", stderr(&o));
}

#[test]
fn demo_prints_commands_for_all_five_scenarios() {
    let o = containd(&["demo", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let has = |rule: &str, action: &str| {
        lines
            .iter()
            .any(|l| l["rule_id"] == rule && l["action"] == action)
    };
    assert!(has("device-noncompliant-step-up", "require_step_up"));
    assert!(has("device-compromised-block-session", "block_session"));
    assert!(has("secret-rotated-disable-stale", "disable_credential"));
    assert!(has("pam-high-risk-session", "shorten_access_window"));
    assert!(has("pam-high-risk-session", "revoke_access"));
    assert!(has("incident-quarantine-agent", "quarantine_workload"));
    assert!(has("policy-changed-sync", "sync_policy"));
    // 18 for the seed scenarios, 2 for the demo's verified SET (step-up on okta and the
    // agent gateway), 6 for the first two rotations of the small flood; the untrusted signal
    // and the protected identity's add none, nor do the flood's rotations past the breaker.
    assert_eq!(lines.len(), 26, "every command of the seed scenarios, once");
    let flood = |id: &str| lines.iter().filter(|l| l["signal_id"] == id).count();
    assert_eq!(
        flood("sig-flood-1") + flood("sig-flood-2"),
        6,
        "the breaker's six a minute"
    );
    for held in ["sig-flood-3", "sig-flood-4"] {
        assert_eq!(flood(held), 0, "{held} is past the open breaker");
    }
    let from_set: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["signal_id"] == "set-0001")
        .collect();
    assert_eq!(from_set.len(), 2, "the verified SET acted");
    assert!(!lines.iter().any(|l| l["signal_id"] == "sig-forged-1"));
    // The break-glass rotation's disables are held by the safety rails, never sent.
    assert!(!lines.iter().any(|l| l["signal_id"] == "sig-breakglass-1"));
    for l in &lines {
        for field in ["target", "action", "subject_id", "rule_id", "command_id"] {
            assert!(
                l[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field} in {l}"
            );
        }
    }
}

#[test]
fn shipped_rule_tests_pass() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules");
    let o = containd(&["rules", "test", rules.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let last = out.lines().last().unwrap_or_default();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 9 && last.ends_with(" passed, 0 failed"), "{last}");
}

#[test]
fn a_failing_rule_test_prints_its_diff_and_fails() {
    let case = r#"tests:
  - name: expects the wrong target
    signals:
      - id: x-1
        source: {issuer: https://policy.acme.example}
        event_type: urn:containd:event:policy:changed
        occurred_at: 1
        subject: {format: opaque, identifiers: {id: p}}
        attributes: {policy_id: p-1, policy_version: v1}
    expect:
      outcome: no_match
      commands:
        - {action: sync_policy, target: okta}
"#;
    let dir = deployment(|t| t, Some(("zz.test.yaml", case)));
    let o = containd(&["rules", "test", dir.path().join("rules").to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("FAIL") && out.contains("expects the wrong target"),
        "{out}"
    );
    assert!(
        out.contains("- outcome: no_match") && out.contains("+ outcome: acted"),
        "{out}"
    );
    assert!(out.contains("- command sync_policy → okta"), "{out}");
    assert!(
        out.contains("+ command sync_policy → github-actions"),
        "{out}"
    );
    assert!(
        out.lines().last().unwrap().ends_with(" passed, 1 failed"),
        "{out}"
    );
}

#[test]
fn replay_prints_each_decision_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut text = std::fs::read_to_string(root.join("signals/seed-scenarios.jsonl")).unwrap();
    text.push_str("{\"id\": \"broken\"}\n");
    let signals = dir.path().join("s.jsonl");
    std::fs::write(&signals, text).unwrap();
    let o = containd(&[
        "replay",
        "--rules",
        root.join("rules").to_str().unwrap(),
        "--signals",
        signals.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(lines[2]["decision"]["signal_id"], "sig-0003");
    assert_eq!(lines[2]["commands"].as_array().unwrap().len(), 3);
    assert_eq!(lines[7]["decision"]["outcome"], "no_match");
    assert!(
        lines[8]["dead_letter"]
            .as_str()
            .unwrap()
            .contains("missing_field"),
        "{}",
        lines[8]
    );
}

#[test]
fn config_and_rules_problems_are_reported_together() {
    let broken = "rules:\n  - id: broken\n    match:\n      event_types: [urn:x:y]\n    actions:\n      - action: revoke_sessions\n        targets: [nowhere]\n";
    let dir = deployment(
        |t| t.replace("max_in_flight = 20000", "max_in_flight = 0"),
        Some(("99-broken.yaml", broken)),
    );
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(78));
    let err = stderr(&o);
    assert!(
        err.contains("delivery.max_in_flight: must be positive"),
        "{err}"
    );
    assert!(
        err.contains(
            "99-broken.yaml:7: rule broken.actions[0].targets: unknown target \"nowhere\""
        ),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn check_refuses_a_config_without_sources_and_an_unreadable_jwks_file() {
    let dir = deployment(|c| c[..c.find("[[sources]]").unwrap()].to_string(), None);
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sources: no [[sources]]"),
        "{}",
        stderr(&o)
    );
    let dir = deployment(
        |c| {
            c.replace(
                "issuer = \"https://idp.acme.example\"\n",
                "issuer = \"https://idp.acme.example\"\njwks_file = \"missing-jwks.json\"\naudience = \"https://containd\"\n",
            )
        },
        None,
    );
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("jwks_file: cannot read JWKS file"),
        "{}",
        stderr(&o)
    );
}

/// `replay` verifies raw SET lines exactly as on the wire, beside JSON signals.
#[test]
fn replay_verifies_set_lines_beside_json_signals() {
    let signer = containd::trust::signer::SetSigner::generate("k1").unwrap();
    let dir = deployment(
        |c| {
            c.replace(
                "issuer = \"https://mdm.acme.example\"\n",
                "issuer = \"https://mdm.acme.example\"\njwks_file = \"jwks.json\"\naudience = \"https://containd\"\n",
            )
        },
        None,
    );
    std::fs::write(dir.path().join("jwks.json"), signer.jwks()).unwrap();
    let now = containd::trust::now_ms() / 1000;
    let claims = serde_json::json!({
        "iss": "https://mdm.acme.example", "aud": "https://containd", "iat": now, "jti": "set-1",
        "sub_id": {"format": "complex", "device": {"format": "opaque", "id": "dev-1"},
                   "application": {"format": "opaque", "id": "agent-1"}},
        "events": {"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change":
                   {"previous_status": "compliant", "current_status": "not-compliant"}}
    });
    let set = signer.sign(&claims).unwrap();
    let forged = containd::trust::signer::SetSigner::generate("k1")
        .unwrap()
        .sign(&claims)
        .unwrap();
    let json = r#"{"id":"j-1","source":{"issuer":"https://attacker.example"},"event_type":"urn:containd:event:policy:changed","occurred_at":1,"subject":{"format":"opaque","identifiers":{"id":"p"}}}"#;
    let signals = dir.path().join("signals.jsonl");
    std::fs::write(&signals, format!("{set}\n{forged}\n{json}\n")).unwrap();
    let o = containd(&[
        "replay",
        "--rules",
        dir.path().join("rules").to_str().unwrap(),
        "--signals",
        signals.to_str().unwrap(),
        "--config",
        dir.path().join("containd.toml").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("set-1 acted"), "{out}");
    assert!(lines[0].contains("require_step_up→okta"), "{out}");
    assert!(
        lines[1].contains("dead-letter") && lines[1].contains("bad_signature"),
        "{out}"
    );
    assert!(lines[2].contains("j-1 untrusted"), "{out}");
    assert!(
        stderr(&o).contains("replayed 2 signals (1 would be dead-lettered)"),
        "{}",
        stderr(&o)
    );
}

/// A parameter that cannot be evaluated is evidence: it is in the decision and in `replay`.
#[test]
fn replay_shows_parameter_errors() {
    let dir = tempfile::tempdir().unwrap();
    let signals = dir.path().join("s.jsonl");
    std::fs::write(
        &signals,
        r#"{"id":"pc-1","source":{"issuer":"https://policy.acme.example"},"event_type":"urn:containd:event:policy:changed","occurred_at":1,"subject":{"format":"opaque","identifiers":{"id":"policy-x"}}}"#,
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let o = containd(&[
        "replay",
        "--rules",
        root.join("rules").to_str().unwrap(),
        "--signals",
        signals.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let errors = line["decision"]["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["rule_id"] == "policy-changed-sync"
            && e["error"].as_str().unwrap().contains("policy_id")),
        "{line}"
    );
}

/// A rule comparing a string field with a number would never fire: `check` refuses it.
#[test]
fn check_refuses_a_string_field_compared_with_a_number() {
    let rule = r#"rules:
  - id: level-three
    match: {event_types: ["https://schemas.openid.net/secevent/caep/event-type/assurance-level-change"]}
    condition: signal.event.current_level == 3
    actions:
      - {action: require_step_up, targets: [okta]}
"#;
    let dir = deployment(|c| c, Some(("90-typo.yaml", rule)));
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("90-typo.yaml:4"), "{err}");
    assert!(
        err.contains("signal.event.current_level is a string"),
        "{err}"
    );
}
