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

async fn run(args: RunArgs) -> Result<()> {
    let bootstrap = args
        .bootstrap
        .clone()
        .or_else(|| std::env::var("CONTAIND_BENCH_BOOTSTRAP").ok())
        .context("--bootstrap or CONTAIND_BENCH_BOOTSTRAP is required (scripts/bench sets it)")?;
    let n = args
        .signals
        .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
    let phase_secs = args.phase_secs.unwrap_or(if args.quick { 3 } else { 10 });
    let exe = std::env::current_exe()?;
    let containd_bin = args
        .containd
        .clone()
        .unwrap_or_else(|| exe.with_file_name("containd"));
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let prefix = format!("bench-{}-{stamp}", std::process::id());
    let work = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&work)?;
    let topics = Topics::new(&prefix);
    let kafka = Kafka::new(&bootstrap, args.partitions)?;
    let load_before = report::load_average();

    // Workload, config, and containd's own processing of it.
    let all_templates = workload::load_templates(&args.repo)?;
    let synthetic =
        workload::synthetic_rules(args.synthetic_rules, &workload::event_types(&all_templates));
    let metrics_port = free_port()?;
    let config = workload::write_config(
        &work,
        &args.repo,
        &topics,
        &workload::ConfigParams {
            bootstrap: &bootstrap,
            metrics_port,
            format: args.format,
            fetch_wait_ms: args.fetch_wait_ms,
            workers: args.workers,
            synthetic: &synthetic,
        },
    )?;
    let (offline, _settings) = Offline::load(&config, topics.outputs("containd"))?;
    let templates = workload::decidable_templates(&offline, all_templates, args.format)?;
    let template_count = templates.len();
    let total_rules = offline.rules().len();
    let gen = Generator::new(templates, args.subjects, args.format)?;
    say(format!(
        "{} rules ({} synthetic), {template_count} templates; topics {prefix}.*",
        offline.rules().len(),
        args.synthetic_rules
    ));

    kafka
        .create_topics(std::slice::from_ref(&topics.preload), false)
        .await?;
    // The rate topics and every output topic are stamped by the broker on arrival.
    kafka
        .create_topics(&[topics.rate("containd"), topics.rate("baseline")], true)
        .await?;
    let mut outputs = Vec::new();
    for sys in ["containd", "baseline"] {
        outputs.extend(topics.outputs(sys));
        outputs.push(topics.dead_letter(sys));
    }
    kafka.create_topics(&outputs, true).await?;

    say(format!("generating and preloading {n} signals"));
    let mut spec = spec::Spec::new(topics.outputs("containd"));
    let mut mix = Mix::default();
    let producer = kafka.signal_producer(5)?;
    workload::generate(
        &gen,
        &offline,
        &topics.preload,
        0..n,
        &mut spec,
        &mut mix,
        |i, rec| kafka::send_signal(&producer, &topics.preload, i, &rec, now_ms()),
    )?;
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60))?;
    drop(producer);

    let mut phases: Vec<Vec<Record>> = Vec::new();
    let mut next = n;
    for rate in &args.rates {
        let count = rate * phase_secs;
        let mut recs = Vec::with_capacity(count as usize);
        let mut ignored = Mix::default();
        workload::generate(
            &gen,
            &offline,
            &topics.rate("containd"),
            next..next + count,
            &mut spec,
            &mut ignored,
            |_, rec| {
                recs.push(rec);
                Ok(())
            },
        )?;
        phases.push(recs);
        next += count;
    }
    let (subjects, entries, largest) = offline.state_size();
    say(format!(
        "offline pass: state of {subjects} subjects, {entries} entries, largest changelog record {largest} B"
    ));
    let spec_file = work.join("baseline.spec");
    spec.write(&spec_file, &topics.outputs("baseline"))?;
    drop(offline);

    let producer = kafka.signal_producer(1)?;
    let codec = AvroCodec::new(Arc::new(Schemas::bundled()?), &[]);

    // The baseline, then containd, one at a time.
    let mut cmd = Command::new(&exe);
    cmd.arg("copy")
        .arg("--config")
        .arg(&config)
        .arg("--spec")
        .arg(&spec_file)
        .args(["--group", &format!("{prefix}.baseline"), "--inputs"])
        .args([topics.preload.clone(), topics.rate("baseline")]);
    let baseline = System::spawn(
        "baseline",
        cmd,
        work.join("baseline.log"),
        topics.outputs("baseline"),
        topics.rate("baseline"),
    )?;
    let baseline_of = |m: &rdkafka::message::BorrowedMessage<'_>| {
        let v = kafka::header_value(m, "containd.command_id")?;
        std::str::from_utf8(v).ok()?.parse().ok()
    };
    let baseline = measure_system(
        &kafka,
        &producer,
        baseline,
        &spec,
        n,
        &phases,
        &args,
        phase_secs,
        &baseline_of,
        None,
    )?;

    let mut cmd = Command::new(&containd_bin);
    cmd.arg("run").arg("--config").arg(&config);
    let containd = System::spawn(
        "containd",
        cmd,
        work.join("containd.log"),
        topics.outputs("containd"),
        topics.rate("containd"),
    )?;
    let containd_of = |m: &rdkafka::message::BorrowedMessage<'_>| {
        let c: EnforcementCommand = codec.decode_command(rdkafka::Message::payload(m)?).ok()?;
        c.why
            .signal_ids
            .first()?
            .strip_prefix("bench-")?
            .parse()
            .ok()
    };
    let containd = measure_system(
        &kafka,
        &producer,
        containd,
        &spec,
        n,
        &phases,
        &args,
        phase_secs,
        &containd_of,
        args.perf_record.as_deref(),
    )?;

    let report = report::Report {
        command: args
            .command_line
            .clone()
            .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" ")),
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        machine: report::machine(),
        load: (load_before, report::load_average()),
        format: match args.format {
            InputFormat::Avro => "Avro single-object",
            InputFormat::Json => "JSON",
        },
        templates: template_count,
        subjects: args.subjects,
        partitions: args.partitions,
        shipped_rules: total_rules - args.synthetic_rules,
        synthetic_rules: args.synthetic_rules,
        phase_secs,
        fetch_wait_ms: args.fetch_wait_ms,
        mix,
        baseline,
        containd,
    };
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
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// The backlog phase, then each fixed-load phase, then the peak RSS; stops the system.
#[allow(clippy::too_many_arguments)]
fn measure_system(
    kafka: &Kafka,
    producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    mut sys: System,
    spec: &spec::Spec,
    n: u64,
    phases: &[Vec<Record>],
    args: &RunArgs,
    phase_secs: u64,
    signal_of: &dyn Fn(&rdkafka::message::BorrowedMessage<'_>) -> Option<u64>,
    perf: Option<&Path>,
) -> Result<report::SystemResult> {
    say(format!("{}: draining the {n}-signal backlog", sys.name));
    let mut perf_child = match perf {
        Some(file) => Some(
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
                .args(["-p", &sys.pid().to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("start perf record")?,
        ),
        None => None,
    };
    let base = vec![0; sys.outputs.len()];
    let throughput = measure::drain(
        kafka,
        &mut sys,
        &base,
        &spec.totals(0..n as usize),
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
    let mut latency = Vec::new();
    let mut first = n;
    for (rate, records) in args.rates.iter().zip(phases) {
        say(format!("{}: {rate} signals/s for {phase_secs} s", sys.name));
        let l = measure::latency(
            kafka, producer, &mut sys, spec, first, records, *rate, signal_of,
        )?;
        say(format!(
            "{}: p50 {} p99 {} p99.9 {} max {} ms (broker to broker: p50 {} p99 {}) over {} commands; done {:.1} s after the last send",
            sys.name, l.total.p50, l.total.p99, l.total.p999, l.total.max, l.hop.p50, l.hop.p99, l.commands, l.drain_secs
        ));
        latency.push(l);
        first += records.len() as u64;
        std::thread::sleep(Duration::from_secs(1));
    }
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
        name: sys.name,
        throughput,
        peak_rss_kib,
        latency,
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
