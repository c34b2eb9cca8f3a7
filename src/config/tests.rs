use super::*;
use std::path::Path;

const VALID: &str = r#"
[kafka]
"bootstrap.servers" = "127.0.0.1:9092"

[input]
topics = ["identity.signals.v1"]

[rules]
dir = "rules"

[[targets]]
name = "aws"
topic = "containment.commands.aws.v1"
kind = "cloud"
actions = ["revoke_sessions", "sync_policy"]

[[sources]]
issuer = "https://idp.example"
event_types = ["*"]
actions = ["revoke_sessions"]
"#;

fn problems(text: &str) -> Vec<Problem> {
    match parse(Path::new("c.toml"), text) {
        Ok(s) => validate(&s, Path::new("c.toml"), text),
        Err(Problems(p)) => p,
    }
}

#[test]
fn valid_config_has_no_problems_and_resolves_rules_dir() {
    let s = parse(Path::new("/etc/containd/c.toml"), VALID).unwrap();
    assert!(validate(&s, Path::new("c.toml"), VALID).is_empty());
    assert_eq!(s.rules.dir, Path::new("/etc/containd/rules"));
    assert_eq!(s.kafka.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    assert_eq!(s.delivery.mode, DeliveryMode::AtLeastOnce);
}

#[test]
fn unknown_field_names_field_and_line() {
    let text = VALID.replace("dir = \"rules\"", "dir = \"rules\"\ndri_run = true");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].message.contains("dri_run"), "{}", p[0]);
    assert!(p[0].field.starts_with("rules"), "{}", p[0]);
    assert_eq!(p[0].line, Some(10), "{}", p[0]);
}

#[test]
fn all_semantic_problems_are_reported_at_once() {
    let text = VALID
        .replace("\"sync_policy\"", "\"sync_polcy\"")
        .replace("topics = [\"identity.signals.v1\"]", "topics = []");
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:?}");
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("c.toml:6: input.topics")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("c.toml:15: targets[0].actions") && s.contains("sync_polcy")),
        "{shown:?}"
    );
}

#[test]
fn wrong_type_and_syntax_errors_carry_a_line() {
    let p = problems(&VALID.replace("kind = \"cloud\"", "kind = \"mainframe\""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].message.contains("mainframe"), "{}", p[0]);
    let p = problems(&VALID.replace("[rules]", "[rules"));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(8), "{}", p[0]);
    assert!(p[0].message.starts_with("TOML syntax"), "{}", p[0]);
}

#[test]
fn no_sources_fails_with_a_reason() {
    let i = VALID.find("[[sources]]").unwrap();
    let p = problems(&VALID[..i]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].field, "sources");
    assert!(p[0].message.contains("listed issuers"), "{}", p[0].message);
}

#[test]
fn source_authority_and_set_keys_are_checked() {
    let text = format!(
        "{VALID}\n[[sources]]\nissuer = \"https://mdm\"\nactions = [\"disable_evrything\"]\njwks_url = \"http://keys.example/jwks\"\nalgorithms = [\"HS256\", \"none\"]\n"
    );
    let p = problems(&text);
    let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "sources[1].event_types",
            "sources[1].actions",
            "sources[1].jwks_url",
            "sources[1].audience",
            "sources[1].algorithms",
            "sources[1].algorithms"
        ],
        "{p:?}"
    );
    assert_eq!(
        p[1].line,
        Some(
            text.lines()
                .position(|l| l.starts_with("actions = [\"disable_evrything"))
                .unwrap()
                + 1
        )
    );
    // Plain HTTP only to loopback.
    assert!(trust::check_jwks_url("http://127.0.0.1:8080/jwks").is_ok());
    assert!(trust::check_jwks_url("https://idp.example/jwks").is_ok());
    assert!(trust::check_jwks_url("http://idp.example/jwks").is_err());
}

#[test]
fn topic_names_kafka_refuses_and_bad_producer_sizes_are_problems() {
    let text = VALID
        .replace("containment.commands.aws.v1", "containment commands/aws")
        .replace(
            "\"bootstrap.servers\" = \"127.0.0.1:9092\"",
            "\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"message.max.bytes\" = \"lots\"",
        );
    let p = problems(&text);
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(p.len(), 2, "{shown:?}");
    assert!(
        shown.iter().any(|s| s.starts_with("c.toml:")
            && s.contains("targets[0].topic")
            && s.contains("not a Kafka topic name")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.contains("kafka.message.max.bytes") && s.contains("\"lots\"")),
        "{shown:?}"
    );
}

#[test]
fn safety_names_known_actions_and_real_identities() {
    let text = format!(
        "{VALID}\n[safety]\nprotected = [\"breakglass-*\", \"*\"]\ndrastic_actions = [\"disable_account\", \"disabel_account\"]\n"
    );
    let p = problems(&text);
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(p.len(), 2, "{shown:?}");
    assert!(
        shown
            .iter()
            .any(|s| s.contains("safety.protected[1]") && s.contains("every one")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.contains("safety.drastic_actions[1]") && s.contains("disabel_account")),
        "{shown:?}"
    );
}

#[test]
fn approval_and_breaker_settings_are_checked() {
    let text = format!(
        r#"{VALID}
[safety]
approvals_topic = "identity.signals.v1"
on_timeout = "release:disable_account"
approvals_key_file = "/nonexistent/approvals.key"

[[safety.require_approval]]
actions = ["disable_acount"]

[[safety.breakers]]
name = "flood"
scope = "source"
match = "https://nobody.example"
max = 0
per = "0s"

[[safety.breakers]]
name = "flood"
scope = "action"
max = 5
per = "1m"
"#
    );
    let shown: Vec<String> = problems(&text).iter().map(ToString::to_string).collect();
    for (field, says) in [
        ("safety.approvals_topic", "also an input"),
        ("safety.on_timeout", "milder"),
        ("safety.approvals_key_file", "/nonexistent/approvals.key"),
        ("safety.require_approval[0].actions[0]", "disable_acount"),
        ("safety.breakers[0].match", "nobody.example"),
        ("safety.breakers[0].max", "at least 1"),
        ("safety.breakers[0].per", "longer than 0"),
        ("safety.breakers[1].name", "used twice"),
    ] {
        assert!(
            shown.iter().any(|s| s.contains(field) && s.contains(says)),
            "{field}: {shown:?}"
        );
    }
    assert_eq!(shown.len(), 8, "{shown:?}");
}

fn env(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_values_stay_strings_and_lists_split() {
    let s = parse_with_env(
        Path::new("c.toml"),
        VALID,
        env(&[
            ("CONTAIND__KAFKA__SASL_USERNAME", "000123"),
            ("CONTAIND__INPUT__TOPICS", "007,identity.signals.v2"),
            ("CONTAIND__INPUT__GROUP_ID", "0042"),
            ("CONTAIND__DELIVERY__MAX_IN_FLIGHT", "77"),
            ("CONTAIND__RULES__DRY_RUN", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(s.kafka.get("sasl.username"), Some("000123"));
    assert_eq!(s.input.topics, ["007", "identity.signals.v2"]);
    assert_eq!(s.input.group_id, "0042");
    assert_eq!(s.delivery.max_in_flight, 77);
    assert!(s.rules.dry_run);
}

#[test]
fn unknown_and_managed_kafka_properties_are_refused_where_written() {
    let text = VALID.replace(
        "\"bootstrap.servers\" = \"127.0.0.1:9092\"",
        "\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"bootstrap.server\" = \"x:1\"\n\"linger.ms\" = 5\n\n[kafka.consumer]\n\"enable.auto.commit\" = \"true\"\n\"fetch.wait.max.ms\" = \"soon\"",
    );
    let shown: Vec<String> = problems(&text).iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown
        .iter()
        .any(|s| s.contains("kafka.bootstrap.server:")
            && s.contains("No such configuration property")));
    assert!(shown
        .iter()
        .any(|s| s.contains("kafka.consumer.enable.auto.commit") && s.contains("managed")));
    assert!(shown
        .iter()
        .any(|s| s.contains("kafka.consumer.fetch.wait.max.ms") && s.contains("Invalid value")));
}

#[test]
fn overrides_apply_to_their_kind_only() {
    let text = VALID.replace(
        "\"bootstrap.servers\" = \"127.0.0.1:9092\"",
        "\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"client.id\" = \"containd\"\n[kafka.producer]\n\"linger.ms\" = 20\n[kafka.consumer]\n\"client.id\" = \"containd-reader\"",
    );
    let s = parse(Path::new("c.toml"), &text).unwrap();
    assert!(validate(&s, Path::new("c.toml"), &text).is_empty());
    let producer = s.kafka.for_kind(ClientKind::Producer);
    let consumer = s.kafka.for_kind(ClientKind::Consumer);
    assert_eq!(producer.get("linger.ms"), Some(&"20"));
    assert_eq!(consumer.get("linger.ms"), None);
    assert_eq!(consumer.get("client.id"), Some(&"containd-reader"));
    assert_eq!(producer.get("client.id"), Some(&"containd"));
}

#[test]
fn secrets_come_from_files_and_never_appear_in_problems() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "hunter2-correct-horse\n").unwrap();
    let text = VALID.replace(
        "\"bootstrap.servers\" = \"127.0.0.1:9092\"",
        "\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"sasl.password_file\" = \"pw\"",
    );
    let s = parse(&dir.path().join("c.toml"), &text).unwrap();
    assert_eq!(s.kafka.get("sasl.password"), Some("hunter2-correct-horse"));
    assert!(!format!("{:?}", s.kafka).contains("hunter2"));
    // The environment names the file the same way; a missing file names the field.
    let missing = parse_with_env(
        &dir.path().join("c.toml"),
        VALID,
        env(&[("CONTAIND__KAFKA__SASL_PASSWORD_FILE", "/nonexistent/pw")]),
    )
    .unwrap_err();
    let shown = missing.to_string();
    assert!(shown.contains("kafka.sasl.password_file") && shown.contains("/nonexistent/pw"));
    // A secret librdkafka refuses is named, its value never shown.
    let bad = VALID.replace(
        "\"bootstrap.servers\" = \"127.0.0.1:9092\"",
        "\"bootstrap.servers\" = \"127.0.0.1:9092\"\n\"security.protocol\" = \"SSL\"\n\"ssl.key.password\" = \"hunter2-correct-horse\"\n\"ssl.keystore.password\" = \"hunter2-correct-horse\"\n\"ssl.key.pem\" = \"-----BEGIN PRIVATE KEY-----\\nhunter2-correct-horse\\n-----END PRIVATE KEY-----\"",
    );
    let s = parse(Path::new("c.toml"), &bad).unwrap();
    let mut all: Vec<String> = validate(&s, Path::new("c.toml"), &bad)
        .iter()
        .map(ToString::to_string)
        .collect();
    all.extend(
        crate::client::client_problems(&s)
            .into_iter()
            .map(|(f, m)| format!("{f}: {m}")),
    );
    assert!(!all.is_empty(), "an unparseable key is refused");
    assert!(all.iter().all(|p| !p.contains("hunter2")), "{all:?}");
}

#[test]
fn lifecycle_settings_are_checked() {
    let text = format!(
        r#"{VALID}
[lifecycle]
enabled = true
results_topic = "identity.signals.v1"
result_timeout = "0s"
max_attempts = 0

[[lifecycle.escalate]]
action = "disable_credential"
target = "gcp"
then_action = "disable_account"
then_target = "aws"
on = []
"#
    );
    let shown: Vec<String> = problems(&text).iter().map(ToString::to_string).collect();
    for (field, says) in [
        ("lifecycle.key_file", "needs a key to seal"),
        ("lifecycle.results_topic", "also an input"),
        ("lifecycle.result_timeout", "longer than 0"),
        ("lifecycle.max_attempts", "at least 1"),
        ("lifecycle.escalate[0].target", "\"gcp\""),
        ("lifecycle.escalate[0].action", "no target accepts"),
        ("lifecycle.escalate[0].then_target", "does not accept"),
        ("lifecycle.escalate[0].on", "lists nothing"),
    ] {
        assert!(
            shown.iter().any(|s| s.contains(field) && s.contains(says)),
            "{field}: {shown:?}"
        );
    }
    // Off (the default), none of it is required; a short key file is named, never shown.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.key"), "s3cret").unwrap();
    let text = format!("{VALID}\n[lifecycle]\nenabled = true\nkey_file = \"short.key\"\n");
    let path = dir.path().join("c.toml");
    let shown: Vec<String> = match parse(&path, &text) {
        Ok(s) => validate(&s, &path, &text),
        Err(Problems(p)) => p,
    }
    .iter()
    .map(ToString::to_string)
    .collect();
    assert!(
        shown
            .iter()
            .any(|s| s.contains("lifecycle.key_file") && s.contains("short.key")),
        "{shown:?}"
    );
    assert!(shown.iter().all(|s| !s.contains("s3cret")));
    assert!(problems(VALID).is_empty());
}

#[test]
fn decide_workers_default_to_the_cores_and_out_of_range_is_a_problem_with_its_line() {
    let s = parse(Path::new("c.toml"), VALID).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(s.decide.workers, cores);
    let text = format!("{VALID}\n[decide]\nworkers = 0\nmax_batch = 0\n");
    let p = problems(&text);
    let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["decide.workers", "decide.max_batch"], "{p:?}");
    assert!(p[0].line.is_some(), "{}", p[0]);
    assert!(problems(&format!("{VALID}\n[decide]\nworkers = 4\n")).is_empty());
}
