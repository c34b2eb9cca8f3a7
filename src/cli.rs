//! The command line: `run`, `check`, `demo`. Exit codes: 0 success, 1 runtime failure,
//! 78 (EX_CONFIG) for a bad config or rules, 130 when a second signal forces an exit.

use crate::config::{self, Problem, Settings};
use crate::pipeline::{self, Runtime, SharedRules};
use crate::rules::{self, RuleSet};
use crate::telemetry::http::{self, Health};
use crate::telemetry::{logging, Metrics};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    },
    /// Run the seed scenarios on an embedded Kafka-protocol cluster; needs nothing installed.
    Demo {
        /// One JSON object per command instead of a table.
        #[arg(long)]
        json: bool,
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
        Command::Check { config } => check(&config),
        Command::Demo { json } => runtime.block_on(crate::demo::run(json)),
    }
}

fn print_problems(problems: &[Problem]) {
    for p in problems {
        eprintln!("error: {p}");
    }
}

/// Loads settings and rules, or the complete list of problems.
pub fn load(path: &std::path::Path) -> Result<(Settings, RuleSet), Vec<Problem>> {
    let settings = config::load(path).map_err(|p| p.0)?;
    let rules = rules::load_dir(
        &settings.rules.dir,
        &settings.targets,
        &settings.extra_actions,
    )?;
    Ok((settings, rules))
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok((settings, rules)) => {
            println!(
                "ok: {} targets, {} rules (version {}) from {}",
                settings.targets.len(),
                rules.len(),
                rules.version(),
                settings.rules.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print_problems(&problems);
            eprintln!("{} problem(s); containd would not start", problems.len());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn run(path: PathBuf) -> ExitCode {
    let (settings, rules) = match load(&path) {
        Ok(ok) => ok,
        Err(problems) => {
            print_problems(&problems);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    logging::init(settings.telemetry.log_format, &settings.telemetry.log_level);
    tracing::info!(rules = rules.len(), version = rules.version(), config = %path.display(), "starting");
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = settings.telemetry.listen {
        let mut rx = stop_rx.clone();
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        match http::serve(addr, metrics.clone(), health.clone(), stopped).await {
            Ok((local, server)) => {
                tracing::info!(%local, "serving /metrics, /healthz, /readyz");
                tokio::spawn(server);
            }
            Err(e) => {
                eprintln!(
                    "error: {}: telemetry.listen: cannot bind {addr}: {e}",
                    path.display()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        }
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
    let shutdown = shutdown_signal(settings.shutdown.grace);
    let result = pipeline::run(
        Arc::new(settings),
        Runtime {
            rules: shared,
            metrics,
            health,
        },
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "pipeline stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGTERM/SIGINT. A second signal, or the grace period running out,
/// exits the process at once.
pub async fn shutdown_signal(grace: std::time::Duration) {
    wait_for_signal().await;
    tracing::info!(?grace, "shutting down; a second signal exits at once");
    tokio::spawn(async move {
        tokio::select! {
            _ = wait_for_signal() => tracing::warn!("second signal; exiting now"),
            _ = tokio::time::sleep(grace + std::time::Duration::from_secs(5)) => {
                tracing::error!("shutdown did not finish within the grace period; exiting");
            }
        }
        std::process::exit(EXIT_FORCED);
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
