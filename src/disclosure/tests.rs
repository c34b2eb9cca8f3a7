use super::*;
use crate::emit::{TargetSubject, Why};

fn settings(dir: &std::path::Path, key: bool) -> Settings {
    std::fs::write(dir.join("p.key"), "a pseudonym key of 32 bytes.....").unwrap();
    let key_line = match key {
        true => format!("key_file = {:?}", dir.join("p.key")),
        false => String::new(),
    };
    let text = format!(
        r#"
[input]
topics = ["s"]
[rules]
dir = "rules"
[disclosure]
{key_line}
[[disclosure.profiles]]
name = "credential-only"
disclose = ["principal_id", "parameters.credential_id"]
pseudonymise = ["subject.id"]
[[targets]]
name = "github-actions"
topic = "t.gha"
kind = "cicd"
actions = ["disable_credential"]
disclosure = "credential-only"
[[targets]]
name = "gitlab"
topic = "t.gitlab"
kind = "cicd"
actions = ["disable_credential"]
disclosure = "credential-only"
[[targets]]
name = "okta"
topic = "t.okta"
kind = "idp"
actions = ["disable_account"]
"#
    );
    let path = dir.join("containd.toml");
    crate::config::parse(&path, &text).unwrap()
}

fn command(target: &str) -> EnforcementCommand {
    EnforcementCommand {
        command_id: "c1".into(),
        action: "disable_credential".into(),
        target: target.into(),
        principal_id: Some("svc-deploy".into()),
        subject: TargetSubject {
            id: "email:alice@example.com".into(),
            format: "email".into(),
            identifiers: [("email".to_string(), "alice@example.com".to_string())].into(),
        },
        parameters: [
            ("credential_id", "AKIA123"),
            ("reason", "leaked by alice@example.com"),
            ("restores_command_ids", "c0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        issued_at: 0,
        expires_at: None,
        why: Why {
            rule_id: "r".into(),
            ruleset_version: "v".into(),
            signal_ids: vec!["s1".into()],
            event_type: "e".into(),
            description: None,
        },
    }
}

#[test]
fn a_profiled_target_gets_only_what_it_may_and_the_record_says_what_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let d = Disclosure::of(&settings(dir.path(), true));
    let mut c = command("github-actions");
    let record = d.apply(&mut c).unwrap();
    let text = serde_json::to_string(&c).unwrap();
    assert!(!text.contains("alice"), "{text}");
    assert_eq!(c.principal_id.as_deref(), Some("svc-deploy"));
    assert_eq!(c.parameters["credential_id"], "AKIA123");
    assert_eq!(
        c.parameters["restores_command_ids"], "c0",
        "containd's own ids stay"
    );
    assert!(!c.parameters.contains_key("reason"));
    assert!(c.subject.identifiers.is_empty());
    assert!(
        c.subject.id.starts_with("ps_") && c.subject.id.len() == 35,
        "{}",
        c.subject.id
    );
    assert_eq!(record.profile, "credential-only");
    assert_eq!(
        record.disclosed,
        ["principal_id", "parameters.credential_id"]
    );
    assert_eq!(record.pseudonymised, ["subject.id"]);
    assert_eq!(
        record.withheld,
        ["subject.identifiers.email", "parameters.reason"]
    );
    // Stable per target, unlinkable across targets; the record key is the same pseudonym.
    let mut again = command("github-actions");
    d.apply(&mut again);
    let mut other = command("gitlab");
    d.apply(&mut other);
    assert_eq!(again.subject.id, c.subject.id);
    assert_ne!(other.subject.id, c.subject.id);
    let key = d.record_key("github-actions", b"email:alice@example.com");
    assert_eq!(&*key, c.subject.id.as_bytes());
}

#[test]
fn a_target_without_a_profile_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let d = Disclosure::of(&settings(dir.path(), true));
    let mut c = command("okta");
    assert!(d.apply(&mut c).is_none());
    assert_eq!(c, command("okta"));
    assert_eq!(
        &*d.record_key("okta", b"email:alice@example.com"),
        b"email:alice@example.com"
    );
}

#[test]
fn without_a_key_a_field_to_pseudonymise_is_withheld() {
    let dir = tempfile::tempdir().unwrap();
    let d = Disclosure::of(&settings(dir.path(), false));
    let mut c = command("github-actions");
    let record = d.apply(&mut c).unwrap();
    assert_eq!(c.subject.id, "");
    assert!(record.pseudonymised.is_empty());
    assert!(record.withheld.contains(&"subject.id".to_string()));
}

#[test]
fn check_refuses_profiles_that_break_an_action_or_need_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), false);
    let problems = |s: &Settings| {
        let mut out = Vec::new();
        crate::config::disclosure::validate(s, &mut |f, m| out.push((f, m)));
        out
    };
    let p = problems(&s);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "disclosure.key_file");
    s.disclosure.key_file = Some(dir.path().join("p.key"));
    assert!(problems(&s).is_empty());
    // A profile that leaves disable_credential nothing to act on.
    s.disclosure.profiles[0].disclose = vec!["parameters.reason".into()];
    let p = problems(&s);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].0, "targets[0].disclosure");
    assert!(p[0].1.contains("disable_credential"), "{}", p[0].1);
    // Unknown fields and profiles.
    s.disclosure.profiles[0].disclose = vec!["subject.email".into(), "principal_id".into()];
    s.targets[2].disclosure = Some("nope".into());
    let p = problems(&s);
    assert!(
        p.iter()
            .any(|(f, m)| f == "disclosure.profiles[0].disclose" && m.contains("subject.email")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|(f, m)| f == "targets[2].disclosure" && m.contains("nope")),
        "{p:?}"
    );
}

#[test]
fn a_target_may_list_its_fields_itself_by_bare_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), true);
    let gitlab = &mut s.targets[1];
    gitlab.disclosure = None;
    gitlab.disclose = Some(vec!["principal_id".into(), "credential_id".into()]);
    gitlab.pseudonymise = vec!["email".into()];
    let mut problems = Vec::new();
    crate::config::disclosure::validate(&s, &mut |f, m| problems.push((f, m)));
    assert!(problems.is_empty(), "{problems:?}");
    let d = Disclosure::of(&s);
    let mut c = command("gitlab");
    let record = d.apply(&mut c).unwrap();
    assert_eq!(record.profile, "gitlab");
    assert_eq!(c.parameters["credential_id"], "AKIA123");
    assert!(c.subject.identifiers["email"].starts_with("ps_"));
    assert_eq!(c.subject.id, "", "subject.id is not listed: withheld");
    assert_eq!(
        record.disclosed,
        ["principal_id", "parameters.credential_id"]
    );
    assert_eq!(record.pseudonymised, ["subject.identifiers.email"]);
    // Both a named profile and its own list, or pseudonymise alone: refused.
    s.targets[1].disclosure = Some("credential-only".into());
    s.targets[2].pseudonymise = vec!["email".into()];
    let mut problems = Vec::new();
    crate::config::disclosure::validate(&s, &mut |f, m| problems.push((f, m)));
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["targets[1].disclosure", "targets[2].pseudonymise"],
        "{problems:?}"
    );
}

fn share_settings(dir: &std::path::Path) -> Settings {
    let text = r#"
[input]
topics = ["s"]
[rules]
dir = "rules"
[[targets]]
name = "isac"
topic = "t.isac"
kind = "share"
actions = ["share_indicator"]
"#;
    crate::config::parse(&dir.join("containd.toml"), text).unwrap()
}

fn share(value: &str) -> EnforcementCommand {
    let mut c = command("isac");
    c.action = "share_indicator".into();
    c.parameters = [
        ("indicator_type", "credential_fingerprint"),
        ("indicator_value", value),
        ("first_seen", "2026-12-02T10:00:00Z"),
        ("confidence", "high"),
        ("credential_id", "AKIA123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    c
}

#[test]
fn a_share_target_gets_the_indicator_and_nothing_about_the_subject_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let s = share_settings(dir.path());
    let mut problems = Vec::new();
    crate::config::disclosure::validate(&s, &mut |f, m| problems.push((f, m)));
    assert!(problems.is_empty(), "no key needed: {problems:?}");
    let d = Disclosure::of(&s);
    let mut c = share("sha256:9f86d081884c7d659a2feaa0c55ad015");
    let record = d.apply(&mut c).unwrap();
    assert_eq!(record.profile, "share-minimal");
    let text = serde_json::to_string(&c).unwrap();
    assert!(
        !text.contains("alice") && !text.contains("svc-deploy") && !text.contains("AKIA"),
        "{text}"
    );
    assert_eq!(c.parameters.len(), 4, "{:?}", c.parameters);
    assert!(d.record_key("isac", b"email:alice@example.com").is_empty());
    // A value that is a key itself, not its fingerprint, never leaves.
    let mut leaked = share("AKIAIOSFODNN7EXAMPLE");
    let record = d.apply(&mut leaked).unwrap();
    assert!(!leaked.parameters.contains_key("indicator_value"));
    assert!(record
        .withheld
        .iter()
        .any(|w| w.starts_with("parameters.indicator_value (looks like a secret")));
    // Every share waits for review.
    let rails = crate::safety::Rails::new(&s.safety, &s.targets);
    let why = rails.approval(
        "share_indicator",
        "isac",
        &crate::inventory::Identity::unknown(),
    );
    assert!(why.is_some_and(|w| w.contains("legal and privacy review")));
}

#[test]
fn a_redaction_removes_what_the_reviewer_names_and_never_containds_own_ids() {
    let mut c = share("sha256:abc");
    c.parameters
        .insert("restores_command_ids".into(), "c0".into());
    let removed = redact(
        &mut c,
        &[
            "first_seen".into(),
            "email".into(),
            "restores_command_ids".into(),
        ],
    );
    assert_eq!(
        removed,
        ["subject.identifiers.email", "parameters.first_seen"]
    );
    assert!(!c.parameters.contains_key("first_seen"));
    assert!(c.subject.identifiers.is_empty());
    assert_eq!(c.parameters["restores_command_ids"], "c0");
    assert_eq!(c.parameters["indicator_value"], "sha256:abc");
}
