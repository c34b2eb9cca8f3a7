//! The workload: signals generated from the seed scenarios and the rule-pack tests, 1,000
//! synthetic rules beside the shipped packs, the daemon's config, and — by running containd's
//! own `Processor` over every generated signal once — the exact outputs each signal causes,
//! which is what the baseline copier reproduces.

use crate::spec::{Out, Spec};
use anyhow::{bail, Context, Result};
use containd::codec::{AvroCodec, Schemas};
use containd::config::Settings;
use containd::inventory::Inventory;
use containd::pipeline::{Incoming, OutKind, Processed, Processor};
use containd::rules::RuleSet;
use containd::signal::{Signal, SimpleSubject};
use containd::state::StateStore;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Header carrying a signal's index in the workload, so the copier finds its outputs and
/// the latency reader its send time. containd ignores headers.
pub const INDEX_HEADER: &str = "bench.i";

/// Input encoding of the generated signals (what `input.format` is set to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Avro single-object encoding.
    Avro,
    Json,
}

impl InputFormat {
    pub fn config_name(self) -> &'static str {
        match self {
            Self::Avro => "avro",
            Self::Json => "json",
        }
    }
}

/// One generated signal record.
pub struct Record {
    pub key: String,
    pub payload: Vec<u8>,
}

/// Deterministic generator: signal `i` depends only on the seed and `i`.
pub struct Generator {
    templates: Vec<Signal>,
    subjects: u64,
    seed: u64,
    base_ms: i64,
    codec: AvroCodec,
    format: InputFormat,
}

/// splitmix64: a tiny, good-enough PRNG step with no dependency.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Generator {
    pub fn new(templates: Vec<Signal>, subjects: u64, format: InputFormat) -> Result<Self> {
        let codec = AvroCodec::new(Arc::new(Schemas::bundled()?), &[]);
        Ok(Self {
            templates,
            subjects,
            seed: 0x00C0_FFEE,
            base_ms: chrono::Utc::now().timestamp_millis(),
            codec,
            format,
        })
    }

    /// The signal with index `i`: a template, re-addressed to one of the subjects, with a
    /// fresh id, a bucket attribute the synthetic rules test, and a note of varying length.
    pub fn signal(&self, i: u64) -> Signal {
        let r = mix(self.seed ^ i);
        let mut s = self.templates[(r % self.templates.len() as u64) as usize].clone();
        let subject = mix(r) % self.subjects;
        s.id = format!("bench-{i:010}");
        s.occurred_at = self.base_ms + (i as i64 % 60_000);
        readdress(&mut s, subject);
        let r2 = mix(r ^ 0x5555);
        s.attributes
            .insert("bench_bucket".into(), format!("b{}", r2 % 20));
        // Sizes: 60 % short (< 64 B of note), 30 % medium (< 512 B), 10 % long (< 2 KiB).
        let note_len = match r2 % 10 {
            0 => 512 + (r2 >> 8) % 1536,
            1..=3 => 64 + (r2 >> 8) % 448,
            _ => (r2 >> 8) % 64,
        } as usize;
        if note_len > 0 {
            s.attributes.insert("note".into(), "x".repeat(note_len));
        }
        s
    }

    pub fn record(&self, i: u64) -> Result<Record> {
        let s = self.signal(i);
        let key = s
            .subject
            .id()
            .context("generated signal has no subject id")?;
        let payload = match self.format {
            InputFormat::Avro => self.codec.encode_signal(&s)?,
            InputFormat::Json => serde_json::to_vec(&s)?,
        };
        Ok(Record { key, payload })
    }
}

/// Points every identifier of the subject at identity `n`, keeping issuers and the value's
/// shape (email, URI, plain id), so the canonical ids are drawn from `subjects` identities.
fn readdress(s: &mut Signal, n: u64) {
    fn simple(ids: &mut std::collections::BTreeMap<String, String>, n: u64) {
        for (k, v) in ids.iter_mut() {
            if k == "iss" || k == "issuer" {
                continue;
            }
            *v = if v.contains('@') {
                format!("nhi-{n}@acme.example")
            } else if v.contains("://") {
                format!("wimse://acme.example/nhi/{n}")
            } else {
                format!("nhi-{n}")
            };
        }
    }
    let subject = &mut s.subject;
    simple(&mut subject.identifiers, n);
    let members: [&mut Option<SimpleSubject>; 7] = [
        &mut subject.user,
        &mut subject.device,
        &mut subject.session,
        &mut subject.application,
        &mut subject.tenant,
        &mut subject.org_unit,
        &mut subject.group,
    ];
    for m in members.into_iter().flatten() {
        simple(&mut m.identifiers, n);
    }
    for a in &mut subject.aliases {
        simple(&mut a.identifiers, n);
    }
}

/// The seed scenarios and every signal of the shipped rule-pack tests.
pub fn load_templates(repo: &Path) -> Result<Vec<Signal>> {
    let mut out = Vec::new();
    let seed = repo.join("examples/signals/seed-scenarios.jsonl");
    let text = std::fs::read_to_string(&seed).with_context(|| seed.display().to_string())?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        out.push(serde_json::from_str(line).with_context(|| seed.display().to_string())?);
    }
    for file in containd::offline::test_files(&repo.join("rules")) {
        let tests =
            containd::offline::parse_test_file(&file).map_err(|p| anyhow::anyhow!("{p}"))?;
        for case in tests.tests {
            for v in case.signal_values() {
                out.push(serde_json::from_value(v).with_context(|| file.display().to_string())?);
            }
        }
    }
    Ok(out)
}

/// 1,000-style synthetic rules: most on event types no signal carries (exact and prefix),
/// the rest on the real event types with a condition that holds for one bucket in twenty.
pub fn synthetic_rules(count: usize, real_event_types: &[String]) -> String {
    let matching = count / 10;
    let mut text = String::from(
        "# Generated by containd-bench: rules that mostly do not match, some that do.\nrules:\n",
    );
    for i in 0..count {
        let _ = writeln!(text, "  - id: bench-{i}");
        if i < matching && !real_event_types.is_empty() {
            let et = &real_event_types[i % real_event_types.len()];
            let _ = writeln!(text, "    match:\n      event_types: [\"{et}\"]");
            let _ = writeln!(
                text,
                "    condition: '\"bench_bucket\" in signal.attributes && signal.attributes.bench_bucket == \"b{}\"'",
                i % 20
            );
            let _ = writeln!(
                text,
                "    actions:\n      - action: require_step_up\n        targets: [okta]\n        parameters: {{reason: bench-{i}}}"
            );
        } else if i % 50 == 0 {
            let _ = writeln!(
                text,
                "    match:\n      event_types: [\"urn:bench:prefix:{}:*\"]",
                i / 50
            );
            let _ = writeln!(
                text,
                "    actions:\n      - action: revoke_sessions\n        targets: [\"kind:idp\"]"
            );
        } else {
            let _ = writeln!(
                text,
                "    match:\n      event_types: [\"urn:bench:synthetic:{}\"]",
                i / 5
            );
            if i % 2 == 0 {
                let _ = writeln!(
                    text,
                    "    condition: 'signal.attributes.bench_bucket == \"b{}\"'",
                    i % 20
                );
            }
            let _ = writeln!(
                text,
                "    actions:\n      - action: revoke_sessions\n        targets: [\"kind:idp\"]\n        parameters: {{reason: synthetic}}"
            );
        }
    }
    text
}

/// Topic names of one run. The two systems' rate topics have names of equal length, so the
/// decision records (which carry the source topic) have equal sizes.
#[derive(Debug, Clone)]
pub struct Topics {
    pub preload: String,
    pub prefix: String,
}

pub const TARGETS: &[&str] = &[
    "okta",
    "agent-gateway",
    "aws",
    "kubernetes",
    "active-directory",
    "github-actions",
    "cyberark",
    "isac",
];

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Self {
            preload: format!("{prefix}.signals.preload"),
            prefix: prefix.into(),
        }
    }
    /// `system` is `containd` or `baseline` (same length).
    pub fn rate(&self, system: &str) -> String {
        format!("{}.signals.rate.{system}", self.prefix)
    }
    pub fn decisions(&self, system: &str) -> String {
        format!("{}.{system}.decisions", self.prefix)
    }
    pub fn dead_letter(&self, system: &str) -> String {
        format!("{}.{system}.dead-letter", self.prefix)
    }
    pub fn command(&self, system: &str, target: &str) -> String {
        format!("{}.{system}.commands.{target}", self.prefix)
    }
    /// The approvals topic of a system (held commands: every share is reviewed).
    pub fn approvals(&self, system: &str) -> String {
        format!("{}.{system}.approvals", self.prefix)
    }
    /// The state changelog of a system.
    pub fn state(&self, system: &str) -> String {
        format!("{}.{system}.state", self.prefix)
    }
    /// Decisions first, then one command topic per target, the approvals topic, then the
    /// state changelog.
    pub fn outputs(&self, system: &str) -> Vec<String> {
        let mut v = vec![self.decisions(system)];
        v.extend(TARGETS.iter().map(|t| self.command(system, t)));
        v.push(self.approvals(system));
        v.push(self.state(system));
        v
    }
}

/// What the daemon's config is written for.
pub struct ConfigParams<'a> {
    /// The system whose topics the config names (`containd`, or a scale-out run's).
    pub system: &'a str,
    /// The input topics it consumes.
    pub inputs: &'a [String],
    pub bootstrap: &'a str,
    pub metrics_port: u16,
    pub format: InputFormat,
    pub fetch_wait_ms: u32,
    /// `decide.workers`, when given.
    pub workers: Option<usize>,
    /// The synthetic rule file's text.
    pub synthetic: &'a str,
}

/// The rules directory: the shipped packs (not their tests) and the synthetic rules.
fn copy_rules(dir: &Path, repo: &Path, synthetic: &str) -> Result<()> {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules)?;
    for entry in std::fs::read_dir(repo.join("rules"))? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".yaml") && !name.ends_with(".test.yaml") {
            std::fs::copy(&p, rules.join(name))?;
        }
    }
    std::fs::write(rules.join("90-bench-synthetic.yaml"), synthetic)?;
    Ok(())
}

/// The example config's targets (and what follows them), pointed at the bench's topics.
fn targets_section(repo: &Path, topics: &Topics, system: &str) -> Result<String> {
    let example = std::fs::read_to_string(repo.join("examples/containd.toml"))?;
    let Some(at) = example.find("[[targets]]") else {
        bail!("examples/containd.toml has no [[targets]]");
    };
    let mut targets = example[at..].to_string();
    for t in TARGETS {
        targets = targets.replace(
            &format!("\"containment.commands.{t}.v1\""),
            &format!("\"{}\"", topics.command(system, t)),
        );
    }
    Ok(targets)
}

/// Writes the rules directory (shipped packs + synthetic rules) and the daemon's config.
pub fn write_config(
    dir: &Path,
    repo: &Path,
    topics: &Topics,
    p: &ConfigParams<'_>,
) -> Result<PathBuf> {
    let ConfigParams {
        system,
        inputs,
        bootstrap,
        metrics_port,
        format,
        fetch_wait_ms,
        workers,
        synthetic,
    } = *p;
    copy_rules(dir, repo, synthetic)?;
    let targets = targets_section(repo, topics, system)?;
    let inputs: Vec<String> = inputs.iter().map(|t| format!("{t:?}")).collect();
    let text = format!(
        r#"# Generated by containd-bench.
[kafka]
"bootstrap.servers" = "{bootstrap}"
# nisshi answers a waiting fetch by re-reading storage at half the remaining wait instead of
# waking on produce, so librdkafka's 500 ms default would dominate the latency.
"fetch.wait.max.ms" = "{fetch_wait_ms}"

[input]
topics = [{inputs}]
group_id = "{prefix}.{system}"
format = "{format}"

[output]
format = "avro"
decisions_topic = "{decisions}"
dead_letter_topic = "{dead_letter}"

[delivery]
mode = "at_least_once"
{decide}
[state]
changelog_topic = "{state}"

[safety]
approvals_topic = "{approvals}"

[rules]
dir = "rules"

[telemetry]
listen = "127.0.0.1:{metrics_port}"
log_level = "info,rdkafka=warn"

[shutdown]
grace = "15s"

{targets}"#,
        inputs = inputs.join(", "),
        prefix = topics.prefix,
        format = format.config_name(),
        decisions = topics.decisions(system),
        dead_letter = topics.dead_letter(system),
        state = topics.state(system),
        approvals = topics.approvals(system),
        decide = workers.map_or(String::new(), |n| format!("\n[decide]\nworkers = {n}\n")),
    );
    let path = dir.join("containd.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Outcome mix of the offline pass, for the report.
#[derive(Debug, Default, Clone)]
pub struct Mix {
    pub signals: u64,
    pub with_commands: u64,
    pub commands: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
}

/// containd's own processing, offline: settings and rules as the daemon loads them.
pub struct Offline {
    processor: Processor,
    rules: RuleSet,
    output_topics: Vec<String>,
    /// Per-subject state, as the daemon keeps it: signals must be fed in offset order.
    state: std::sync::Mutex<StateStore>,
    inventory: Inventory,
}

impl Offline {
    pub fn load(config: &Path, output_topics: Vec<String>) -> Result<(Self, Settings)> {
        let (settings, rules, trust) = containd::cli::load(config).map_err(|p| {
            anyhow::anyhow!(
                "{}",
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let codec = AvroCodec::new(
            Arc::new(Schemas::bundled()?),
            &settings.input.confluent_schema_ids,
        );
        let processor = Processor::new(Arc::new(settings.clone()), codec, Arc::new(trust));
        let state = StateStore::new(containd::pipeline::retention(&settings));
        Ok((
            Self {
                processor,
                rules,
                output_topics,
                state: std::sync::Mutex::new(state),
                inventory: Inventory::new(),
            },
            settings,
        ))
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// (subjects, entries, bytes of the largest subject's changelog record) after the pass.
    pub fn state_size(&self) -> (usize, usize, usize) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (_, subjects, entries) = state.size();
        (subjects, entries, state.largest_record())
    }

    /// The outputs of one record, or `None` when containd would dead-letter it.
    pub fn outputs(&self, topic: &str, offset: i64, rec: &Record) -> Result<Option<Vec<Out>>> {
        let msg = Incoming {
            topic,
            partition: 0,
            offset,
            timestamp: Some(chrono::Utc::now().timestamp_millis()),
            key: Some(rec.key.as_bytes()),
            payload: Some(&rec.payload),
            format: None,
            seal: None,
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (processed, mut outs) =
            self.processor
                .process(&self.rules, &self.inventory, &mut state, &msg);
        if let Processed::DeadLettered(_) = processed {
            return Ok(None);
        }
        // The daemon reads its held commands back from the approvals topic (in its group)
        // and writes each hold's changelog record: part of what this signal makes it write.
        let held: Vec<_> = outs
            .iter()
            .filter(|o| o.kind == OutKind::Hold)
            .cloned()
            .collect();
        for (i, hold) in held.iter().enumerate() {
            let back = Incoming {
                topic: &hold.topic,
                partition: 0,
                offset: offset * 8 + i as i64,
                key: hold.key.as_deref(),
                payload: Some(&hold.payload),
                ..msg
            };
            let (_, more) = self
                .processor
                .process(&self.rules, &self.inventory, &mut state, &back);
            outs.extend(more);
        }
        drop(state);
        outs.iter()
            .map(|o| {
                let topic = self
                    .output_topics
                    .iter()
                    .position(|t| **t == *o.topic)
                    .with_context(|| format!("output topic {} not in the bench's list", o.topic))?;
                Ok(Out {
                    topic: topic as u8,
                    command: matches!(o.kind, OutKind::Command { .. }),
                    len: o.payload.len() as u32,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

/// Event types of the templates, for the synthetic rules that do match.
pub fn event_types(templates: &[Signal]) -> Vec<String> {
    let types: BTreeSet<String> = templates.iter().map(|s| s.event_type.clone()).collect();
    types.into_iter().collect()
}

/// Keeps the templates containd decides (drops any a test feeds in as invalid input).
pub fn decidable_templates(
    offline: &Offline,
    templates: Vec<Signal>,
    format: InputFormat,
) -> Result<Vec<Signal>> {
    let mut keep = Vec::new();
    for t in templates {
        let probe = Generator::new(vec![t.clone()], 1, format)?;
        if offline.outputs("probe", 0, &probe.record(0)?)?.is_some() {
            keep.push(t);
        }
    }
    Ok(keep)
}

/// Generated records.
type Chunk = Vec<Record>;

/// Generates records `range` (on all cores), computes their outputs with containd's processor
/// in order (state carries from one signal of a subject to the next, as in the daemon), and
/// hands each record to `sink` in order. Returns the spec entries and the mix.
pub fn generate(
    gen: &Generator,
    offline: &Offline,
    topic: &str,
    range: std::ops::Range<u64>,
    spec: &mut Spec,
    mix: &mut Mix,
    mut sink: impl FnMut(u64, Record) -> Result<()>,
) -> Result<()> {
    const CHUNK: u64 = 20_000;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut start = range.start;
    while start < range.end {
        let end = (start + CHUNK * threads as u64).min(range.end);
        let per = (end - start).div_ceil(threads as u64);
        let parts: Vec<Result<Chunk>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let lo = start + t * per;
                    let hi = (lo + per).min(end);
                    s.spawn(move || (lo..hi).map(|i| gen.record(i)).collect())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("generator panicked")))
                })
                .collect()
        });
        let mut i = start;
        for part in parts {
            for rec in part? {
                let outs = offline
                    .outputs(topic, i as i64, &rec)?
                    .with_context(|| format!("signal {i} would be dead-lettered"))?;
                mix.signals += 1;
                mix.input_bytes += rec.payload.len() as u64;
                let commands = outs.iter().filter(|o| o.command).count() as u64;
                mix.commands += commands;
                mix.with_commands += u64::from(commands > 0);
                mix.output_bytes += outs.iter().map(|o| u64::from(o.len)).sum::<u64>();
                spec.push(i, &outs);
                sink(i, rec)?;
                i += 1;
            }
        }
        start = end;
    }
    Ok(())
}
