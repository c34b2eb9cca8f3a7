//! The command line: `run`, `check`, `demo`, `rules`, `replay`, and the operator's
//! `approvals` and `breakers`. Exit codes: 0 success, 1 runtime failure, 78 (EX_CONFIG) for a
//! bad config or rules, 130 when a second signal forces an exit.

use crate::config::{self, Problem, Settings};
use crate::offline;
use crate::pipeline::{self, Runtime, SharedRules};
use crate::rules::{self, RuleSet};
use crate::telemetry::http::{self, Health};
use crate::telemetry::{logging, Metrics};
use crate::trust::Trust;

mod operator;
use clap::{Parser, Subcommand};
use operator::{approvals, audit, breakers};
pub(crate) use operator::{rfc3339, table};
pub use operator::{ApprovalsCommand, AuditCommand, BreakersCommand, Failure, VerdictArgs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Prints a line on stdout; a closed pipe (`containd replay … | head`) ends the output
/// quietly instead of panicking like `println!`.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}
pub(crate) use say;

pub const EXIT_CONFIG: u8 = 78;
pub const EXIT_FORCED: i32 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "containd",
    version,
    about = "Containment daemon for the identity bus"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume signals, decide, produce commands until SIGTERM/SIGINT.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Load the config and rules, print every problem, exit 78 if any.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also connect: credentials, topics and their partitions, the group's offsets.
        #[arg(long)]
        connect: bool,
    },
    /// Run the seed scenarios on an embedded Kafka-protocol cluster; needs nothing installed.
    Demo {
        /// One JSON object per command instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Work with rules offline.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// What-if: decide recorded signals (JSON lines) with a rules directory, no Kafka.
    Replay {
        #[arg(long)]
        rules: PathBuf,
        #[arg(long)]
        signals: PathBuf,
        /// Config giving the targets; default: containd.toml in the rules dir or its parent.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON object per signal: the decision record and its commands.
        #[arg(long)]
        json: bool,
        /// Inventory records (JSON lines, IdentityRecord form) to enrich and fan out with.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
    /// What is contained for an identity: from the state changelog and the adapters' results
    /// (reads Kafka; no daemon needed).
    Status {
        /// The subject: its canonical id, or its inventory id when the inventory knows it.
        #[arg(long)]
        subject: String,
        #[arg(long, short)]
        config: PathBuf,
        /// The topic adapters write results to (docs/adapters.md); default: the config's
        /// `lifecycle.results_topic`.
        #[arg(long)]
        results_topic: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Held commands waiting for an operator, on the approvals topic.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// What the decisions topic proves: `verify` its evidence chains, an identity's `timeline`.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The circuit breakers of a running containd (through its telemetry endpoint).
    #[command(subcommand)]
    Breakers(BreakersCommand),
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Run the `*.test.yaml` cases next to the rules; prints a diff per failure.
    Test {
        dir: PathBuf,
        /// Config giving the targets; default: containd.toml in DIR or its parent.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Same as `containd check`.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("containd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Run { config } => runtime.block_on(run(config)),
        Command::Check { config, connect } => check(&config, connect),
        Command::Demo { json } => runtime.block_on(crate::demo::run(json)),
        Command::Rules(RulesCommand::Check { config }) => check(&config, false),
        Command::Rules(RulesCommand::Test { dir, config }) => rules_test(&dir, config.as_deref()),
        Command::Replay {
            rules,
            signals,
            config,
            json,
            inventory,
        } => replay(
            &rules,
            &signals,
            config.as_deref(),
            inventory.as_deref(),
            json,
        ),
        Command::Status {
            subject,
            config,
            results_topic,
            json,
        } => operator::operate(&config, |s| {
            let topic = results_topic.unwrap_or_else(|| s.lifecycle.results_topic.clone());
            crate::lifecycle::status::show(s, &subject, &topic, json)
        }),
        Command::Approvals(command) => approvals(command),
        Command::Audit(command) => audit(command),
        Command::Breakers(command) => breakers(command),
    }
}

fn print_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("error: {p}");
    }
}

/// Loads settings and rules, or every problem of both: a config that parses but has
/// semantic problems still has its rules checked, so one run shows everything to fix.
pub fn load(path: &std::path::Path) -> Result<(Settings, RuleSet, Trust), Vec<Problem>> {
    let text = config::read(path).map_err(|p| p.0)?;
    let settings = config::parse(path, &text).map_err(|p| p.0)?;
    let mut problems = config::validate(&settings, path, &text);
    let rules = rules::load_dir(
        &settings.rules.dir,
        &settings.targets,
        &settings.extra_actions,
    );
    let trust = Trust::load(&settings, path);
    if let Err(trust_problems) = &trust {
        problems.extend(trust_problems.iter().cloned());
    }
    if problems.is_empty() {
        // librdkafka's own validation (certificate files, mechanisms), once the rest is right.
        problems.extend(crate::client::client_problems(&settings).into_iter().map(
            |(field, message)| Problem {
                file: path.into(),
                line: None,
                field,
                message,
            },
        ));
    }
    match (rules, trust) {
        (Ok(rules), Ok(trust)) if problems.is_empty() => Ok((settings, rules, trust)),
        (Err(mut rule_problems), _) => {
            problems.append(&mut rule_problems);
            Err(problems)
        }
        _ => Err(problems),
    }
}

fn check(path: &std::path::Path, connect: bool) -> ExitCode {
    match load(path) {
        Ok((settings, rules, _trust)) => {
            for w in rules.warnings() {
                eprintln!("warning: {w}");
            }
            say!(
                "ok: {} targets, {} rules (version {}) from {}",
                settings.targets.len(),
                rules.len(),
                rules.version(),
                settings.rules.dir.display()
            );
            if connect {
                return operator::check_connect(&settings);
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&problems);
            eprintln!("{} problem(s); containd would not start", problems.len());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn offline(dir: &Path, config: Option<&Path>) -> Result<offline::OfflineDecider, ExitCode> {
    offline::find_config(dir, config)
        .and_then(|c| offline::OfflineDecider::load(&c, dir))
        .map_err(|problems| {
            print_problems(&problems);
            ExitCode::from(EXIT_CONFIG)
        })
}

fn rules_test(dir: &Path, config: Option<&Path>) -> ExitCode {
    let mut decider = match offline(dir, config) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let (mut passed, mut failed) = (0, 0);
    for file in offline::test_files(dir) {
        let tests = match offline::parse_test_file(&file) {
            Ok(t) => t,
            Err(p) => {
                eprintln!("error: {p}");
                failed += 1;
                continue;
            }
        };
        for case in &tests.tests {
            match offline::run_case(&mut decider, case) {
                Ok(()) => {
                    passed += 1;
                    say!("ok   {}: {}", file.display(), case.name);
                }
                Err(diff) => {
                    failed += 1;
                    say!("FAIL {}: {}", file.display(), case.name);
                    for line in diff {
                        say!("     {line}");
                    }
                }
            }
        }
    }
    say!("{passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn replay(
    dir: &Path,
    signals: &Path,
    config: Option<&Path>,
    inventory: Option<&Path>,
    json: bool,
) -> ExitCode {
    let (mut decider, text) = match replay_inputs(dir, signals, config, inventory) {
        Ok(ok) => ok,
        Err(code) => return code,
    };
    let (mut decided, mut rejected) = (0, 0);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = format!("{}:{}", signals.display(), i + 1);
        match decider.decide_line(line.as_bytes(), i as i64 + 1) {
            Ok(d) => {
                decided += 1;
                print_decision(&at, &d, json);
            }
            Err(reason) => {
                rejected += 1;
                if json {
                    say!(
                        "{}",
                        serde_json::json!({"line": i + 1, "dead_letter": reason})
                    );
                } else {
                    say!("{at} dead-letter: {reason}");
                }
            }
        }
    }
    eprintln!(
        "replayed {decided} signals ({rejected} would be dead-lettered) with rule set {}",
        decider.rules().version()
    );
    ExitCode::SUCCESS
}

/// The offline decider (with the inventory, if given) and the signals file's text.
fn replay_inputs(
    dir: &Path,
    signals: &Path,
    config: Option<&Path>,
    inventory: Option<&Path>,
) -> Result<(offline::OfflineDecider, String), ExitCode> {
    let mut decider = offline(dir, config)?;
    if let Some(path) = inventory {
        let records = offline::read_inventory(path).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        })?;
        records.into_iter().for_each(|r| decider.add_identity(r));
    }
    let text = std::fs::read_to_string(signals).map_err(|e| {
        eprintln!("error: {}: cannot read: {e}", signals.display());
        ExitCode::FAILURE
    })?;
    Ok((decider, text))
}

/// One replayed decision: a JSON object, or `FILE:LINE id outcome rules=… commands=…
/// held[…] error[…]`.
fn print_decision(at: &str, d: &crate::decide::Decision, json: bool) {
    if json {
        say!(
            "{}",
            serde_json::json!({"decision": d.record, "commands": d.commands})
        );
        return;
    }
    let rules: Vec<&str> = d
        .record
        .matched_rules
        .iter()
        .map(|r| r.rule_id.as_str())
        .collect();
    let commands: Vec<String> = d
        .commands
        .iter()
        .map(|c| format!("{}→{}", c.action, c.target))
        .collect();
    let errors: String = d
        .record
        .errors
        .iter()
        .map(|e| format!(" error[{}]={}", e.rule_id, e.error))
        .collect();
    let held: String = d
        .record
        .held
        .iter()
        .map(|h| format!(" held[{}→{}]={}", h.action, h.target, h.reason))
        .collect();
    say!(
        "{at} {} {} rules={} commands={}{held}{errors}",
        d.record.signal_id,
        d.record.outcome.name(),
        rules.join(","),
        commands.join(",")
    );
}

/// The breaker reset token (`[safety] admin_token_file`, checked readable by `check`).
fn admin_token(settings: &Settings) -> Option<crate::trust::bearer::TokenHash> {
    let path = settings.safety.admin_token_file.as_ref()?;
    match crate::safety::cli::read_token(path) {
        Ok(t) => Some(crate::trust::bearer::hash(&t)),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "admin token unreadable: breaker resets refused");
            None
        }
    }
}

async fn run(path: PathBuf) -> ExitCode {
    let (settings, rules, trust) = match load(&path) {
        Ok(ok) => ok,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    announce(&settings, &rules, &path);
    let metrics = Arc::new(Metrics::new());
    metrics.prime(&settings);
    let health = Arc::new(Health::default());
    let breakers = crate::safety::breakers::SharedBreakers::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin = crate::safety::admin::Admin {
        breakers: breakers.clone(),
        token: admin_token(&settings),
    };
    let telemetry = (metrics.clone(), health.clone(), admin);
    if let Err(code) = serve_telemetry(&settings, telemetry, stop_rx.clone()).await {
        return code;
    }
    if let Err(e) = start_push(&settings, &trust, stop_rx.clone()).await {
        tracing::error!(config = %path.display(), error = %e, exit = EXIT_CONFIG, "stopped");
        return ExitCode::from(EXIT_CONFIG);
    }
    let shared: SharedRules = rules::shared(rules);
    tokio::spawn(
        rules::Reloader {
            dir: settings.rules.dir.clone(),
            targets: settings.targets.clone(),
            extra_actions: settings.extra_actions.clone(),
            rules: shared.clone(),
            metrics: metrics.clone(),
            poll: settings.rules.reload_poll,
        }
        .watch(stop_rx.clone()),
    );
    let settings = Arc::new(settings);
    let shutdown = shutdown_signal(settings.shutdown.grace);
    flag_stopping(health.clone());
    let runtime = Runtime {
        trust: Arc::new(trust),
        rules: shared,
        metrics,
        health,
        breakers,
    };
    let result = pipeline::run(settings.clone(), runtime, shutdown).await;
    let _ = stop_tx.send(true);
    ended(&settings, result)
}

/// Logging as configured, and the lines that open a run.
fn announce(settings: &Settings, rules: &RuleSet, path: &Path) {
    logging::init(settings.telemetry.log_format, &settings.telemetry.log_level);
    tracing::info!(rules = rules.len(), version = rules.version(), config = %path.display(), "starting");
    for w in rules.warnings() {
        tracing::warn!(warning = %w, "rules");
    }
    if settings.safety.approvals_key_file.is_none() {
        tracing::warn!(topic = %settings.safety.approvals_topic,
            "held commands are not sealed ([safety] approvals_key_file unset): whoever can write the approvals topic can publish a hold to approve");
    }
}

/// The exit code of a run, and its last line in the configured log format, secrets scrubbed:
/// 78 for a configuration or deployment to fix, 1 for anything else.
fn ended(
    settings: &Settings,
    result: Result<pipeline::RunSummary, pipeline::PipelineError>,
) -> ExitCode {
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            let secrets = settings.kafka.secret_values();
            let error = crate::config::kafka::scrub(&e.to_string(), &secrets);
            let code = if e.is_config() { EXIT_CONFIG } else { 1 };
            tracing::error!(%error, exit = code, "stopped");
            ExitCode::from(code)
        }
    }
}

/// Retry loops (a partition's state rebuild waiting for the broker) watch this flag: the
/// pipeline future is busy in them, not polling its shutdown future.
fn flag_stopping(health: Arc<Health>) {
    tokio::spawn(async move {
        wait_for_signal().await;
        health.set_stopping();
    });
}

/// Serves `/metrics`, `/healthz`, `/readyz` and `/breakers` on `telemetry.listen` (when set)
/// until `stop` says so; a listener that cannot bind is a config error.
async fn serve_telemetry(
    settings: &Settings,
    (metrics, health, admin): (Arc<Metrics>, Arc<Health>, crate::safety::admin::Admin),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ExitCode> {
    let Some(addr) = settings.telemetry.listen else {
        return Ok(());
    };
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    match http::serve(addr, metrics, health, Some(admin), stopped).await {
        Ok((local, server)) => {
            tracing::info!(%local, "serving /metrics, /healthz, /readyz, /breakers");
            tokio::spawn(server);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %format!("telemetry.listen: cannot bind {addr}: {e}"),
                exit = EXIT_CONFIG, "stopped");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// Starts the SSF push receiver when `[ssf_push]` is configured; it stops with the daemon.
async fn start_push(
    settings: &Settings,
    trust: &Trust,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), crate::trust::push::PushError> {
    let Some(push) = &settings.ssf_push else {
        return Ok(());
    };
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let (local, server) =
        crate::trust::push::serve(settings, push, trust.sets.clone(), stopped).await?;
    tracing::info!(%local, topic = %push.topic, "serving SSF push at /ssf/events");
    tokio::spawn(server);
    Ok(())
}

/// Resolves on the first SIGTERM/SIGINT. A second signal, or the grace period running out,
/// exits the process at once.
pub async fn shutdown_signal(grace: std::time::Duration) {
    wait_for_signal().await;
    tracing::info!(?grace, "shutting down; a second signal exits at once");
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = wait_for_signal() => {
                tracing::warn!("second signal; exiting now");
                EXIT_FORCED
            }
            _ = tokio::time::sleep(grace + std::time::Duration::from_secs(5)) => {
                // Signals still in flight are replayed by the next owner, as when the grace
                // runs out in the pipeline's own drain (exit 1, docs/operations.md).
                tracing::error!("shutdown did not finish within the grace period; exiting");
                1
            }
        };
        std::process::exit(code);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
