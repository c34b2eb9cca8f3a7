//! containd-bench: containd against raw Kafka I/O on the same broker, in one run.
//!
//! `scripts/bench` builds it, starts a broker and runs it; see docs/benchmarks.md. The flow:
//! generate the workload and, with containd's own processor, what each signal makes containd
//! produce (`workload`, `spec`); preload the signals; then for the baseline copier (`copier`)
//! and for the daemon in turn: drain the backlog, then offer fixed loads and read the command
//! timestamps back (`measure`, `kafka`); print the table (`report`).

mod copier;
mod kafka;
mod measure;
mod report;
mod scale;
mod spec;
mod workload;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use containd::codec::{AvroCodec, Schemas};
use containd::emit::EnforcementCommand;
use kafka::Kafka;
use measure::System;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use workload::{Generator, InputFormat, Mix, Offline, Record, Topics};

#[derive(Debug, Parser)]
#[command(
    name = "containd-bench",
    about = "containd against a plain rdkafka copier on the same broker",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Broker address (scripts/bench starts one and passes it); default
    /// `$CONTAIND_BENCH_BOOTSTRAP`.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Preloaded signals (default 1,000,000; 100,000 with --quick).
    #[arg(long)]
    signals: Option<u64>,
    /// Smaller backlog and shorter fixed-load phases, for development.
    #[arg(long)]
    quick: bool,
    /// Seconds per fixed-load phase (default 10; 3 with --quick).
    #[arg(long)]
    phase_secs: Option<u64>,
    /// Offered loads of the latency phases, signals per second.
    #[arg(long, value_delimiter = ',', default_value = "5000,20000,50000")]
    rates: Vec<u64>,
    /// Distinct subject identities.
    #[arg(long, default_value_t = 50_000)]
    subjects: u64,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Synthetic rules added to the shipped packs.
    #[arg(long, default_value_t = 1_000)]
    synthetic_rules: usize,
    /// `fetch.wait.max.ms` for both systems' consumers (nisshi polls storage during a fetch's
    /// wait instead of waking on new records; see docs/benchmarks.md).
    #[arg(long, default_value_t = 10)]
    fetch_wait_ms: u32,
    /// Instance counts of the scale-out phase: containd instances in one consumer group
    /// draining the same backlog, each count on its own output topics.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    scale_out: Vec<usize>,
    /// Leave out the scale-out phase.
    #[arg(long)]
    no_scale_out: bool,
    /// containd's `decide.workers` (default: the daemon's own, the cores it may use).
    #[arg(long)]
    workers: Option<usize>,
    /// Signal encoding on the input topics.
    #[arg(long, value_enum, default_value = "avro")]
    format: InputFormat,
    /// The daemon binary (default: `containd` next to this binary).
    #[arg(long)]
    containd: Option<PathBuf>,
    /// The repository (rules/, examples/, docs/).
    #[arg(long, default_value = env!("CARGO_MANIFEST_DIR"))]
    repo: PathBuf,
    /// Write the table into docs/benchmarks.md.
    #[arg(long)]
    write_docs: bool,
    /// The command line to record in the docs (scripts/bench passes its own).
    #[arg(long, hide = true)]
    command_line: Option<String>,
    /// Record a perf profile of containd during its backlog phase into this file.
    #[arg(long)]
    perf_record: Option<PathBuf>,
    /// Keep the working directory (config, rules, logs).
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Internal: the baseline copier process.
    #[command(hide = true)]
    Copy {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        group: String,
        #[arg(long, num_args = 1..)]
        inputs: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Sub::Copy {
            config,
            spec,
            group,
            inputs,
        }) => rt.block_on(copier::run(&config, &spec, &group, &inputs)),
        None => rt.block_on(run(cli.run)),
    }
}

fn say(msg: impl AsRef<str>) {
    eprintln!("containd-bench: {}", msg.as_ref());
}

/// Where and how much one run measures.
struct Setup {
    n: u64,
    phase_secs: u64,
    exe: PathBuf,
    prefix: String,
    work: PathBuf,
    topics: Topics,
    kafka: Kafka,
    load_before: String,
}

/// The workload, generated once for both systems.
struct Prepared {
    config: PathBuf,
    spec: spec::Spec,
    spec_file: PathBuf,
    mix: Mix,
    phases: Vec<Vec<Record>>,
    templates: usize,
    shipped_rules: usize,
    /// The synthetic rule file, for the scale-out runs' configs.
    synthetic: String,
}

async fn run(args: RunArgs) -> Result<()> {
    let setup = setup(&args)?;
    let prepared = prepare(&args, &setup).await?;
    let producer = setup.kafka.signal_producer(1)?;
    // The baseline, then containd, one at a time.
    let measured = Measured {
        args: &args,
        s: &setup,
        p: &prepared,
        producer: &producer,
    };
    let baseline = run_baseline(measured)?;
    let containd = run_containd(measured)?;
    let scale_out = scale::run(&args, &setup, &prepared)?;
    let report = report::Report {
        command: args
            .command_line
            .clone()
            .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" ")),
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        machine: report::machine(),
        load: (setup.load_before.clone(), report::load_average()),
        format: match args.format {
            InputFormat::Avro => "Avro single-object",
            InputFormat::Json => "JSON",
        },
        templates: prepared.templates,
        subjects: args.subjects,
        partitions: args.partitions,
        shipped_rules: prepared.shipped_rules,
        synthetic_rules: args.synthetic_rules,
        phase_secs: setup.phase_secs,
        fetch_wait_ms: args.fetch_wait_ms,
        mix: prepared.mix,
        baseline,
        containd,
        scale_out,
    };
    publish(&args, &report, &setup.work)
}

fn setup(args: &RunArgs) -> Result<Setup> {
    let bootstrap = args
        .bootstrap
        .clone()
        .or_else(|| std::env::var("CONTAIND_BENCH_BOOTSTRAP").ok())
        .context("--bootstrap or CONTAIND_BENCH_BOOTSTRAP is required (scripts/bench sets it)")?;
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let prefix = format!("bench-{}-{stamp}", std::process::id());
    let work = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&work)?;
    Ok(Setup {
        n: args
            .signals
            .unwrap_or(if args.quick { 100_000 } else { 1_000_000 }),
        phase_secs: args.phase_secs.unwrap_or(if args.quick { 3 } else { 10 }),
        exe: std::env::current_exe()?,
        topics: Topics::new(&prefix),
        kafka: Kafka::new(&bootstrap, args.partitions)?,
        load_before: report::load_average(),
        prefix,
        work,
    })
}

/// The config, containd's own processing of the workload (what each signal must make it
/// produce), the topics, the preloaded backlog and the fixed-load phases.
async fn prepare(args: &RunArgs, s: &Setup) -> Result<Prepared> {
    let all_templates = workload::load_templates(&args.repo)?;
    let synthetic =
        workload::synthetic_rules(args.synthetic_rules, &workload::event_types(&all_templates));
    let bootstrap = s.kafka.bootstrap.clone();
    let config = workload::write_config(
        &s.work,
        &args.repo,
        &s.topics,
        &workload::ConfigParams {
            system: "containd",
            inputs: &[s.topics.preload.clone(), s.topics.rate("containd")],
            bootstrap: &bootstrap,
            metrics_port: free_port()?,
            format: args.format,
            fetch_wait_ms: args.fetch_wait_ms,
            workers: args.workers,
            synthetic: &synthetic,
        },
    )?;
    let (offline, _settings) = Offline::load(&config, s.topics.outputs("containd"))?;
    let templates = workload::decidable_templates(&offline, all_templates, args.format)?;
    let template_count = templates.len();
    let shipped_rules = offline.rules().len() - args.synthetic_rules;
    let gen = Generator::new(templates, args.subjects, args.format)?;
    say(format!(
        "{} rules ({} synthetic), {template_count} templates; topics {}.*",
        offline.rules().len(),
        args.synthetic_rules,
        s.prefix
    ));
    create_topics(args, s).await?;
    let mut spec = spec::Spec::new(s.topics.outputs("containd"));
    let mix = preload(s, &gen, &offline, &mut spec)?;
    let phases = fixed_load_phases(args, s, &gen, &offline, &mut spec)?;
    let (subjects, entries, largest) = offline.state_size();
    say(format!(
        "offline pass: state of {subjects} subjects, {entries} entries, largest changelog record {largest} B"
    ));
    let spec_file = s.work.join("baseline.spec");
    spec.write(&spec_file, &s.topics.outputs("baseline"))?;
    Ok(Prepared {
        config,
        spec,
        spec_file,
        mix,
        phases,
        templates: template_count,
        shipped_rules,
        synthetic,
    })
}

async fn create_topics(args: &RunArgs, s: &Setup) -> Result<()> {
    let (kafka, topics) = (&s.kafka, &s.topics);
    kafka
        .create_topics(std::slice::from_ref(&topics.preload), false)
        .await?;
    // The rate topics and every output topic are stamped by the broker on arrival.
    kafka
        .create_topics(&[topics.rate("containd"), topics.rate("baseline")], true)
        .await?;
    let mut outputs = Vec::new();
    let mut systems = vec!["containd".to_string(), "baseline".to_string()];
    systems.extend(scale::systems(args));
    for sys in &systems {
        outputs.extend(topics.outputs(sys));
        outputs.push(topics.dead_letter(sys));
    }
    kafka.create_topics(&outputs, true).await
}

/// Generates the backlog and writes it to the preload topic; its outcome mix.
fn preload(s: &Setup, gen: &Generator, offline: &Offline, spec: &mut spec::Spec) -> Result<Mix> {
    say(format!("generating and preloading {} signals", s.n));
    let mut mix = Mix::default();
    let producer = s.kafka.signal_producer(5)?;
    let topic = &s.topics.preload;
    workload::generate(gen, offline, topic, 0..s.n, spec, &mut mix, |i, rec| {
        kafka::send_signal(&producer, topic, i, &rec, now_ms())
    })?;
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60))?;
    Ok(mix)
}

/// The records of each fixed-load phase, numbered after the backlog.
fn fixed_load_phases(
    args: &RunArgs,
    s: &Setup,
    gen: &Generator,
    offline: &Offline,
    spec: &mut spec::Spec,
) -> Result<Vec<Vec<Record>>> {
    let mut phases = Vec::new();
    let mut next = s.n;
    for rate in &args.rates {
        let count = rate * s.phase_secs;
        let mut recs = Vec::with_capacity(count as usize);
        let mut ignored = Mix::default();
        let topic = s.topics.rate("containd");
        workload::generate(
            gen,
            offline,
            &topic,
            next..next + count,
            spec,
            &mut ignored,
            |_, rec| {
                recs.push(rec);
                Ok(())
            },
        )?;
        phases.push(recs);
        next += count;
    }
    Ok(phases)
}

type SignalProducer =
    rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>;

fn run_baseline(m: Measured<'_>) -> Result<report::SystemResult> {
    let (s, p) = (m.s, m.p);
    let mut cmd = Command::new(&s.exe);
    cmd.arg("copy")
        .arg("--config")
        .arg(&p.config)
        .arg("--spec")
        .arg(&p.spec_file)
        .args(["--group", &format!("{}.baseline", s.prefix), "--inputs"])
        .args([s.topics.preload.clone(), s.topics.rate("baseline")]);
    let sys = System::spawn(
        "baseline",
        cmd,
        s.work.join("baseline.log"),
        s.topics.outputs("baseline"),
        s.topics.rate("baseline"),
    )?;
    let signal_of = |m: &rdkafka::message::BorrowedMessage<'_>| {
        let v = kafka::header_value(m, "containd.command_id")?;
        std::str::from_utf8(v).ok()?.parse().ok()
    };
    measure_system(m, sys, &signal_of, None)
}

/// The daemon binary: `--containd`, or `containd` next to this binary.
fn containd_bin(args: &RunArgs, s: &Setup) -> PathBuf {
    args.containd
        .clone()
        .unwrap_or_else(|| s.exe.with_file_name("containd"))
}

fn run_containd(m: Measured<'_>) -> Result<report::SystemResult> {
    let (s, p) = (m.s, m.p);
    let mut cmd = Command::new(containd_bin(m.args, s));
    cmd.arg("run").arg("--config").arg(&p.config);
    let sys = System::spawn(
        "containd",
        cmd,
        s.work.join("containd.log"),
        s.topics.outputs("containd"),
        s.topics.rate("containd"),
    )?;
    let codec = AvroCodec::new(Arc::new(Schemas::bundled()?), &[]);
    let signal_of = |m: &rdkafka::message::BorrowedMessage<'_>| {
        let c: EnforcementCommand = codec.decode_command(rdkafka::Message::payload(m)?).ok()?;
        c.why
            .signal_ids
            .first()?
            .strip_prefix("bench-")?
            .parse()
            .ok()
    };
    measure_system(m, sys, &signal_of, m.args.perf_record.as_deref())
}

/// Prints the table, writes it into the docs when asked, and removes the working directory
/// unless it is to be kept.
fn publish(args: &RunArgs, report: &report::Report, work: &Path) -> Result<()> {
    let md = report.markdown();
    println!("{md}");
    if args.write_docs {
        let docs = args.repo.join("docs/benchmarks.md");
        report::write_docs(&docs, &md)?;
        say(format!("wrote {}", docs.display()));
    }
    if args.keep {
        say(format!("kept {}", work.display()));
    } else {
        let _ = std::fs::remove_dir_all(work);
    }
    Ok(())
}

/// What every system is measured with.
#[derive(Clone, Copy)]
struct Measured<'a> {
    args: &'a RunArgs,
    s: &'a Setup,
    p: &'a Prepared,
    producer: &'a SignalProducer,
}

/// The backlog phase, then each fixed-load phase, then the peak RSS; stops the system.
fn measure_system(
    m: Measured<'_>,
    mut sys: System,
    signal_of: &dyn Fn(&rdkafka::message::BorrowedMessage<'_>) -> Option<u64>,
    perf: Option<&Path>,
) -> Result<report::SystemResult> {
    let n = m.s.n;
    say(format!("{}: draining the {n}-signal backlog", sys.name));
    let mut perf_child = perf.map(|f| start_perf(f, sys.pid())).transpose()?;
    let base = vec![0; sys.outputs.len()];
    let throughput = measure::drain(
        &m.s.kafka,
        &mut sys,
        &base,
        &m.p.spec.totals(0..n as usize),
        Duration::from_secs(120),
    )?;
    if let Some(p) = perf_child.as_mut() {
        Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status()?;
        p.wait()?;
    }
    say(format!(
        "{}: {:.0} signals/s, {:.1} CPU s per 1M",
        sys.name,
        throughput.rate(),
        throughput.cpu_per_million()
    ));
    let latency = latency_phases(m, &mut sys, signal_of)?;
    let peak_rss_kib = sys.peak_rss_kib()?;
    let status = sys.stop()?;
    if !status.success() {
        say(format!(
            "{} exited with {status}; log tail:\n{}",
            sys.name,
            sys.log_tail()
        ));
    }
    Ok(report::SystemResult {
        name: sys.name.clone(),
        throughput,
        peak_rss_kib,
        latency,
    })
}

/// `perf record` attached to the system for its backlog phase.
fn start_perf(file: &Path, pid: u32) -> Result<std::process::Child> {
    Command::new("perf")
        .args([
            "record",
            "-F",
            "499",
            "-g",
            "--call-graph",
            "dwarf,16384",
            "-o",
        ])
        .arg(file)
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("start perf record")
}

/// Each fixed-load phase in turn, a second apart.
fn latency_phases(
    m: Measured<'_>,
    sys: &mut System,
    signal_of: &dyn Fn(&rdkafka::message::BorrowedMessage<'_>) -> Option<u64>,
) -> Result<Vec<measure::Latency>> {
    let mut latency = Vec::new();
    let mut first = m.s.n;
    for (rate, records) in m.args.rates.iter().zip(&m.p.phases) {
        say(format!(
            "{}: {rate} signals/s for {} s",
            sys.name, m.s.phase_secs
        ));
        let l = measure::latency(
            &m.s.kafka, m.producer, sys, &m.p.spec, first, records, *rate, signal_of,
        )?;
        say(format!(
            "{}: p50 {} p99 {} p99.9 {} max {} ms (broker to broker: p50 {} p99 {}) over {} commands; done {:.1} s after the last send",
            sys.name, l.total.p50, l.total.p99, l.total.p999, l.total.max, l.hop.p50, l.hop.p99, l.commands, l.drain_secs
        ));
        latency.push(l);
        first += records.len() as u64;
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(latency)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
