//! One typed [`Settings`], loaded from a TOML file layered with `CONTAIND__SECTION__KEY`
//! environment variables, and validated by a pure function that returns every problem with
//! its file, line (when known) and field.

pub mod disclosure;
pub mod kafka;
pub mod lifecycle;
mod locate;
pub mod safety;
mod settings;
pub mod trust;
mod validate;

pub use disclosure::{DisclosureSettings, ProfileSettings};
pub use kafka::{ClientKind, KafkaSettings};
pub use lifecycle::{Escalation, LifecycleSettings, Trigger};
pub use safety::{ApprovalPolicy, BreakerScope, BreakerSettings, SafetySettings};
pub use settings::*;
pub use trust::{SourceSettings, SsfPushSettings, TransmitterSettings, TrustSettings};
pub use validate::validate;

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the configuration or the rules, pointing at where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, so an operator fixes them in one pass.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Environment variable prefix; `CONTAIND__RULES__DIR=/x` overrides `rules.dir`.
pub const ENV_PREFIX: &str = "CONTAIND";

/// Loads and validates the settings. Relative paths in the file (the rules directory) are
/// resolved against the file's directory, so the daemon can be started from anywhere.
pub fn load(path: &Path) -> Result<Settings, Problems> {
    let text = read(path)?;
    let settings = parse(path, &text)?;
    let problems = validate(&settings, path, &text);
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(Problems(problems))
    }
}

/// Reads the config file, or the problem naming it.
pub fn read(path: &Path) -> Result<String, Problems> {
    std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.into(),
            line: None,
            field: String::new(),
            message: format!("cannot read config file: {e}"),
        }])
    })
}

/// Parses file text plus the process environment into settings, without semantic checks.
pub fn parse(path: &Path, text: &str) -> Result<Settings, Problems> {
    let env = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    parse_with_env(path, text, env)
}

/// [`parse`] with the environment given (`CONTAIND__…` variables).
pub fn parse_with_env(
    path: &Path,
    text: &str,
    env: std::collections::HashMap<String, String>,
) -> Result<Settings, Problems> {
    let fail = |message: String, field: String| {
        let line = locate::line_of(text, &field).or_else(|| locate::line_in_message(&message));
        Problems(vec![Problem {
            file: path.into(),
            line,
            field,
            message,
        }])
    };
    syntax(path, text)?;
    // Environment values stay strings (`000123` is not `123`, topic `007` not `7`); the
    // typed fields parse them. List fields are split on `,`.
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false)
                .source(Some(env.clone().into_iter().collect())),
        );
    for (key, items) in env_lists(&env) {
        builder = builder
            .set_override(key, items)
            .map_err(|e| fail(e.to_string(), key.into()))?;
    }
    let built = builder
        .build()
        .map_err(|e| fail(e.to_string(), String::new()))?;
    let mut settings: Settings = built.try_deserialize().map_err(|e| {
        let field = match &e {
            config::ConfigError::Type { key: Some(k), .. } => k.clone(),
            _ => locate::field_in_message(&e.to_string()).unwrap_or_default(),
        };
        fail(e.to_string(), field)
    })?;
    settings.normalize(path);
    let unreadable = settings.kafka.read_secret_files();
    if !unreadable.is_empty() {
        let problems = unreadable
            .into_iter()
            .map(|(field, message)| Problem {
                file: path.into(),
                line: locate::line_of(text, &field),
                field,
                message,
            })
            .collect();
        return Err(Problems(problems));
    }
    Ok(settings)
}

/// Syntax first, with the TOML parser's own line and column.
fn syntax(path: &Path, text: &str) -> Result<(), Problems> {
    let Err(e) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
    Err(Problems(vec![Problem {
        file: path.into(),
        line,
        field: String::new(),
        message: format!("TOML syntax: {}", e.message()),
    }]))
}

/// Fields that are lists, as their environment variables give them: `a,b` is `["a", "b"]`.
const ENV_LISTS: [&str; 3] = ["input.topics", "extra_actions", "safety.approvers"];

fn env_lists(env: &std::collections::HashMap<String, String>) -> Vec<(&'static str, Vec<String>)> {
    ENV_LISTS
        .iter()
        .filter_map(|key| {
            let var = format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase());
            let value = env.get(&var).filter(|v| !v.is_empty())?;
            Some((
                *key,
                value.split(',').map(|s| s.trim().to_string()).collect(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;
