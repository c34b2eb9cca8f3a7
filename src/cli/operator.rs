//! The operator's commands: `approvals list|approve|deny` (the approvals topic) and
//! `breakers list|reset` (a running daemon's `/breakers`), and the table they print.

use super::{print_problems, say, EXIT_CONFIG};
use crate::config::{self, Settings};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `containd audit`: what the decisions topic proves (docs/evidence.md).
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verifies every evidence chain on the decisions topic; reports the first break (exit 1).
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        /// Default: the config's `output.decisions_topic` (or a copy of it to check).
        #[arg(long)]
        topic: Option<String>,
        /// Only records decided at or after this time (RFC 3339); chains may start mid-way.
        #[arg(long, value_parser = parse_time)]
        from: Option<i64>,
        /// Only records decided at or before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        to: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// An identity's history: every decision record about it, in time order.
    Timeline {
        #[arg(long, short)]
        config: PathBuf,
        /// Its canonical subject id, or its inventory id.
        #[arg(long)]
        subject: String,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("not an RFC 3339 time ({e})"))
}

pub(super) fn audit(command: AuditCommand) -> ExitCode {
    use crate::evidence::audit;
    match command {
        AuditCommand::Verify {
            config,
            topic,
            from,
            to,
            json,
        } => operate(&config, |s| {
            let topic = topic.unwrap_or_else(|| s.output.decisions_topic.clone());
            match audit::show_verify(s, &topic, (from, to), json)? {
                true => Ok(()),
                false => Err(audit::Error::NotVerified),
            }
        }),
        AuditCommand::Timeline {
            config,
            subject,
            topic,
            json,
        } => operate(&config, |s| {
            let topic = topic.unwrap_or_else(|| s.output.decisions_topic.clone());
            audit::show_timeline(s, &topic, &subject, json)
        }),
    }
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// The held commands nobody approved or denied yet.
    List {
        /// The daemon's config: its Kafka settings and `[safety]`.
        #[arg(long, short)]
        config: PathBuf,
        /// A JSON array of the pending holds instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Release a held command to its target topic.
    Approve(VerdictArgs),
    /// Cancel a held command.
    Deny(VerdictArgs),
}

/// A verdict on one held command.
#[derive(Debug, clap::Args)]
pub struct VerdictArgs {
    /// The held command's id, as `containd approvals list` shows it.
    pub id: String,
    /// The daemon's config: its Kafka settings and `[safety]`.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Who decides (one of `[safety] approvers`, when set); default: $USER.
    #[arg(long)]
    pub approver: Option<String>,
    /// Why; recorded with the verdict and in the decision record.
    #[arg(long)]
    pub reason: String,
    /// `approve` only: release the command without these fields (`indicator_value`,
    /// `subject.id`, …; comma-separated) — a reviewer's redaction, recorded with the verdict.
    #[arg(long, value_delimiter = ',')]
    pub redact: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum BreakersCommand {
    /// Every breaker that counted a command: open or closed, count, when it closes.
    List {
        /// The daemon's config: its `telemetry.listen`.
        #[arg(long, short)]
        config: PathBuf,
        /// The daemon's JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Close a breaker (`name`: each of its values; `name:value`: that one), with the
    /// bearer token of `[safety] admin_token_file`.
    Reset {
        /// A breaker's name (`[[safety.breakers]] name`), or `name:value` for one of its
        /// values, as `containd breakers list` shows them.
        name: String,
        /// The daemon's config: its `telemetry.listen` and `[safety] admin_token_file`.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// An operator command's failure: said on stderr; a config to fix exits 78, like `check`.
pub trait Failure: std::fmt::Display {
    /// Whether the config is to blame (the message then starts with the field).
    fn is_config(&self) -> bool;
}

/// Loads the config (its problems exit 78), then runs an operator command on it.
pub(super) fn operate<E: Failure>(
    path: &Path,
    run: impl FnOnce(&Settings) -> Result<(), E>,
) -> ExitCode {
    let settings = match config::load(path) {
        Ok(settings) => settings,
        Err(problems) => {
            print_problems(&problems.0);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_config() => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn approvals(command: ApprovalsCommand) -> ExitCode {
    use crate::approvals::cli;
    match command {
        ApprovalsCommand::List { config, json } => operate(&config, |s| cli::list(s, json)),
        ApprovalsCommand::Approve(v) => operate(&v.config, |s| {
            cli::approve(s, &v.id, v.approver.as_deref(), (&v.reason, &v.redact))
        }),
        ApprovalsCommand::Deny(v) => operate(&v.config, |s| {
            cli::deny(s, &v.id, v.approver.as_deref(), &v.reason)
        }),
    }
}

pub(super) fn breakers(command: BreakersCommand) -> ExitCode {
    use crate::safety::cli;
    match command {
        BreakersCommand::List { config, json } => operate(&config, |s| cli::list(s, json)),
        BreakersCommand::Reset { name, config } => operate(&config, |s| cli::reset(s, &name)),
    }
}

/// A table for the terminal: columns as wide as their widest cell, two spaces apart, the
/// last unpadded (it holds free text). Control characters (a subject id is whatever a
/// signal said) are escaped, so a cell cannot move the cursor or end the row.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |cell: &str| -> String {
        cell.chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect()
    };
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()))
        .collect();
    let mut widths = vec![0; header.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &Vec<String>| {
        let last = row.len().saturating_sub(1);
        let cells = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| match i == last {
                true => c.clone(),
                false => format!("{c:<w$}"),
            });
        cells.collect::<Vec<_>>().join("  ")
    };
    rows.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// A time in milliseconds since the epoch as RFC 3339 (UTC, to the second).
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// `check --connect`: one line per finding; exit 78 when the deployment needs fixing, 1 when
/// the cluster does not answer.
pub fn check_connect(settings: &Settings) -> ExitCode {
    use crate::client::preflight::{check, Finding};
    match check(settings) {
        Ok(findings) => {
            let mut problems = 0;
            for f in &findings {
                match f {
                    Finding::Ok(line) => say!("ok: {line}"),
                    Finding::Problem(field, message) => {
                        problems += 1;
                        eprintln!("error: {field}: {message}");
                    }
                }
            }
            if problems == 0 {
                ExitCode::SUCCESS
            } else {
                eprintln!("{problems} problem(s) with the cluster");
                ExitCode::from(EXIT_CONFIG)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_config() { EXIT_CONFIG } else { 1 })
        }
    }
}
