//! Semantic checks of the settings: a pure function over the parsed settings and the file
//! text (for line numbers), returning every problem at once.

use super::{locate, DeliveryMode, Problem, Settings};
use crate::emit::command::VOCABULARY;
use std::collections::HashSet;
use std::path::Path;

pub fn validate(settings: &Settings, file: &Path, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |field: String, message: String| {
        problems.push(Problem {
            file: file.into(),
            line: locate::line_of(text, &field),
            field,
            message,
        })
    };
    input(settings, &mut problem);
    kafka(settings, &mut problem);
    delivery(settings, &mut problem);
    state_and_inventory(settings, &mut problem);
    targets(settings, &mut problem);
    topic_names(settings, &mut problem);
    safety(settings, &mut problem);
    super::lifecycle::validate(settings, &mut problem);
    super::disclosure::validate(settings, &mut problem);
    for (field, message) in super::trust::validate(settings) {
        problem(field, message);
    }
    problems
}

/// The consumed-topic regex, when one is set and valid.
fn pattern(settings: &Settings) -> Option<regex::Regex> {
    settings
        .input
        .topic_pattern
        .as_deref()
        .and_then(|p| regex::Regex::new(p).ok())
}

/// Signal topics, their formats and limits.
fn input(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    let input = &settings.input;
    match (&input.topics.is_empty(), &input.topic_pattern) {
        (true, None) => problem(
            "input.topics".into(),
            "set the signal topics to consume (or input.topic_pattern)".into(),
        ),
        (false, Some(_)) => problem(
            "input.topic_pattern".into(),
            "set either input.topics or input.topic_pattern, not both".into(),
        ),
        (true, Some(p)) => {
            if let Err(e) = regex::Regex::new(p) {
                problem(
                    "input.topic_pattern".into(),
                    format!("not a valid regex: {e}"),
                );
            }
        }
        (false, None) => {}
    }
    if input.group_id.is_empty() {
        problem("input.group_id".into(), "must not be empty".into());
    }
    if input.max_message_bytes == 0 {
        problem("input.max_message_bytes".into(), "must be positive".into());
    }
    let pattern = pattern(settings);
    for topic in input.formats.keys() {
        let consumed =
            input.topics.contains(topic) || pattern.as_ref().is_some_and(|p| p.is_match(topic));
        if !consumed {
            problem(
                format!("input.formats.{topic}"),
                format!("topic {topic:?} is not among the consumed topics"),
            );
        }
    }
}

/// librdkafka properties: what containd needs, what librdkafka refuses (unknown names, bad
/// values), what containd manages.
fn kafka(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    use super::ClientKind::{Consumer, Producer};
    let kafka = &settings.kafka;
    if [Consumer, Producer]
        .iter()
        .any(|k| !kafka.for_kind(*k).contains_key("bootstrap.servers"))
    {
        problem(
            "kafka.bootstrap.servers".into(),
            "required (or CONTAIND__KAFKA__BOOTSTRAP_SERVERS)".into(),
        );
    }
    let producer = kafka.for_kind(Producer);
    let size_ok = producer.get("message.max.bytes").map(|v| {
        let ok = v
            .parse::<usize>()
            .is_ok_and(|n| (1000..=1_000_000_000).contains(&n));
        (v, ok)
    });
    if let Some((v, false)) = size_ok {
        problem(
            "kafka.message.max.bytes".into(),
            format!("{v:?} is not a size between 1000 and 1000000000 bytes"),
        );
    }
    for (field, message) in crate::client::property_problems(settings) {
        // The size was just reported, with the range containd needs.
        if !(field.ends_with(".message.max.bytes") && matches!(size_ok, Some((_, false)))) {
            problem(field, message);
        }
    }
}

/// Every topic containd reads or writes has a name Kafka accepts: 1–249 of `[A-Za-z0-9._-]`,
/// not `.` or `..`. A broker refuses records for any other, which no retry fixes.
fn topic_names(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    let named = [
        (
            "output.decisions_topic".to_string(),
            &settings.output.decisions_topic,
        ),
        (
            "output.dead_letter_topic".to_string(),
            &settings.output.dead_letter_topic,
        ),
        (
            "state.changelog_topic".to_string(),
            &settings.state.changelog_topic,
        ),
        (
            "safety.approvals_topic".to_string(),
            &settings.safety.approvals_topic,
        ),
    ];
    let inputs = settings.input.topics.iter().enumerate();
    let inputs = inputs.map(|(i, t)| (format!("input.topics[{i}]"), t));
    let targets = settings.targets.iter().enumerate();
    let targets = targets.map(|(i, t)| (format!("targets[{i}].topic"), &t.topic));
    let inventory = settings.inventory.topic.iter();
    let inventory = inventory.map(|t| ("inventory.topic".to_string(), t));
    for (field, topic) in named
        .into_iter()
        .chain(inputs)
        .chain(targets)
        .chain(inventory)
    {
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        // Empty names are reported by their own section.
        if topic.is_empty()
            || (topic.len() <= 249 && topic.chars().all(legal) && topic != "." && topic != "..")
        {
            continue;
        }
        problem(
            field,
            format!("{topic:?} is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"),
        );
    }
}

/// `[safety]`: held actions are known actions; protected names are not empty; approval and
/// breaker settings make sense.
fn safety(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    let known = |a: &str| VOCABULARY.contains(&a) || settings.extra_actions.iter().any(|x| x == a);
    let s = &settings.safety;
    let actions = s.drastic_actions.iter().enumerate();
    let actions = actions.map(|(i, a)| (format!("safety.drastic_actions[{i}]"), a));
    let policies = s.require_approval.iter().enumerate().flat_map(|(i, p)| {
        let actions = p.actions.iter().enumerate();
        actions.map(move |(j, a)| (format!("safety.require_approval[{i}].actions[{j}]"), a))
    });
    for (field, a) in actions.chain(policies) {
        if !known(a) {
            problem(field, format!("unknown action {a:?}"));
        }
    }
    for (i, p) in s.protected.iter().enumerate() {
        if p.trim_end_matches('*').is_empty() {
            problem(
                format!("safety.protected[{i}]"),
                format!("{p:?} names no identity (it would protect every one)"),
            );
        }
    }
    if let Err(e) = crate::approvals::OnTimeout::parse(&s.on_timeout) {
        problem("safety.on_timeout".into(), e);
    } else if let Some(a) = s.on_timeout.strip_prefix("release:") {
        if !known(a) || s.drastic_actions.iter().any(|d| d == a) {
            problem(
                "safety.on_timeout".into(),
                format!("{a:?} is not a known action milder than the drastic ones"),
            );
        }
    }
    let others = [
        &settings.output.decisions_topic,
        &settings.output.dead_letter_topic,
        &settings.state.changelog_topic,
    ];
    let taken = settings
        .input
        .topics
        .iter()
        .chain(others)
        .any(|t| *t == s.approvals_topic)
        || settings
            .targets
            .iter()
            .any(|t| t.topic == s.approvals_topic);
    if taken {
        problem(
            "safety.approvals_topic".into(),
            format!(
                "{:?} is also an input, output or target topic",
                s.approvals_topic
            ),
        );
    }
    if s.approval_timeout.is_zero() {
        problem(
            "safety.approval_timeout".into(),
            "must be longer than 0".into(),
        );
    }
    let files = [
        ("safety.approvals_key_file", &s.approvals_key_file),
        ("safety.admin_token_file", &s.admin_token_file),
    ];
    for (field, path) in files {
        let Some(path) = path else { continue };
        if let Err(e) = crate::approvals::read_key(path) {
            // The error names the file and its length, never its content.
            problem(field.into(), format!("{}: {e}", path.display()));
        }
    }
    breakers(settings, &known, problem);
}

/// `[[safety.breakers]]`: named once each, a limit above zero over a period.
fn breakers(
    settings: &Settings,
    known: &dyn Fn(&str) -> bool,
    problem: &mut dyn FnMut(String, String),
) {
    use crate::config::BreakerScope;
    let mut names = std::collections::HashSet::new();
    for (i, b) in settings.safety.breakers.iter().enumerate() {
        let at = |f: &str| format!("safety.breakers[{i}].{f}");
        if b.name.is_empty() || !names.insert(b.name.as_str()) {
            problem(at("name"), format!("{:?} is empty or used twice", b.name));
        }
        if b.max == 0 {
            problem(at("max"), "must be at least 1".into());
        }
        if b.per.is_zero() {
            problem(at("per"), "must be longer than 0".into());
        }
        let Some(only) = &b.only else { continue };
        let fits = match b.scope {
            BreakerScope::Action => known(only),
            BreakerScope::Target => settings.targets.iter().any(|t| &t.name == only),
            BreakerScope::Source => settings.sources.iter().any(|t| &t.issuer == only),
            BreakerScope::Rule => !only.is_empty(),
        };
        if !fits {
            problem(
                at("match"),
                format!("{only:?} names no configured {:?}", b.scope),
            );
        }
    }
}

/// Delivery mode, commit and reload intervals.
/// More workers than this only adds threads waiting on the same partitions.
const MAX_WORKERS: usize = 256;

fn delivery(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    let d = &settings.delivery;
    if d.commit_interval.is_zero() {
        problem(
            "delivery.commit_interval".into(),
            "must be longer than 0".into(),
        );
    }
    if settings.rules.reload_poll.is_zero() {
        problem("rules.reload_poll".into(), "must be longer than 0".into());
    }
    if d.max_in_flight == 0 {
        problem("delivery.max_in_flight".into(), "must be positive".into());
    }
    let w = &settings.decide;
    if !(1..=MAX_WORKERS).contains(&w.workers) {
        problem(
            "decide.workers".into(),
            format!("must be between 1 and {MAX_WORKERS}"),
        );
    }
    if w.max_batch == 0 {
        problem("decide.max_batch".into(), "must be positive".into());
    }
    if d.mode == DeliveryMode::ExactlyOnce && d.transaction_max_signals == 0 {
        problem(
            "delivery.transaction_max_signals".into(),
            "must be positive".into(),
        );
    }
}

/// The state changelog and the inventory topic.
fn state_and_inventory(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    let (input, pattern) = (&settings.input, pattern(settings));
    let st = &settings.state;
    if st.changelog_topic.is_empty() {
        problem("state.changelog_topic".into(), "must not be empty".into());
    } else if input.topics.contains(&st.changelog_topic)
        || pattern
            .as_ref()
            .is_some_and(|p| p.is_match(&st.changelog_topic))
    {
        problem(
            "state.changelog_topic".into(),
            format!(
                "{:?} is also consumed as a signal topic",
                st.changelog_topic
            ),
        );
    }
    if st.max_entries == 0 {
        problem("state.max_entries".into(), "must be positive".into());
    }
    if st.sweep_interval.is_zero() {
        problem(
            "state.sweep_interval".into(),
            "must be longer than 0".into(),
        );
    }
    if st.restore_timeout.is_zero() {
        problem(
            "state.restore_timeout".into(),
            "must be longer than 0".into(),
        );
    }
    if let Some(topic) = &settings.inventory.topic {
        if topic.is_empty() {
            problem("inventory.topic".into(), "must not be empty".into());
        }
        if matches!(
            settings.inventory.format,
            crate::codec::Format::Confluent | crate::codec::Format::Set
        ) {
            problem(
                "inventory.format".into(),
                "inventory records are `json` or `avro` (single-object)".into(),
            );
        }
    }
}

/// Targets: names, topics, accepted actions.
fn targets(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    let input = &settings.input;
    let known_actions: HashSet<&str> = VOCABULARY
        .iter()
        .copied()
        .chain(settings.extra_actions.iter().map(String::as_str))
        .collect();
    let mut names = HashSet::new();
    let mut topics = HashSet::new();
    for (i, t) in settings.targets.iter().enumerate() {
        if t.name.is_empty() {
            problem(format!("targets[{i}].name"), "must not be empty".into());
        } else if !names.insert(t.name.as_str()) {
            problem(
                format!("targets[{i}].name"),
                format!("target {:?} is declared twice", t.name),
            );
        }
        if t.topic.is_empty() {
            problem(format!("targets[{i}].topic"), "must not be empty".into());
        } else if !topics.insert(t.topic.as_str()) {
            problem(
                format!("targets[{i}].topic"),
                format!("topic {:?} is used by two targets", t.topic),
            );
        }
        if t.actions.is_empty() {
            problem(
                format!("targets[{i}].actions"),
                "a target must accept at least one action".into(),
            );
        }
        for a in &t.actions {
            if !known_actions.contains(a.as_str()) {
                problem(
                    format!("targets[{i}].actions"),
                    format!(
                        "unknown action {a:?} (add it to extra_actions to extend the vocabulary)"
                    ),
                );
            }
        }
        let output_topics = [
            settings.output.decisions_topic.as_str(),
            settings.output.dead_letter_topic.as_str(),
            settings.state.changelog_topic.as_str(),
        ];
        if output_topics.contains(&t.topic.as_str()) || input.topics.contains(&t.topic) {
            problem(
                format!("targets[{i}].topic"),
                format!("topic {:?} is also an input or output topic", t.topic),
            );
        }
    }
}
