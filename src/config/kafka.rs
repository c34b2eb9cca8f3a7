//! `[kafka]`: librdkafka properties for every client, `[kafka.consumer]` and `[kafka.producer]`
//! overrides for one kind, and secrets read from files (`"sasl.password_file"`).

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Suffix of a property whose value is read from the named file (trailing newline dropped).
pub const FILE_SUFFIX: &str = "_file";

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KafkaSettings {
    /// Overrides for the consumers only (signal, inventory and approvals readers).
    #[serde(default)]
    pub consumer: BTreeMap<String, Property>,
    /// Overrides for the producers only (commands, decisions, state, dead letters).
    #[serde(default)]
    pub producer: BTreeMap<String, Property>,
    /// Properties for every client.
    #[serde(flatten)]
    pub common: BTreeMap<String, Property>,
}

/// A property value as written: TOML strings, numbers and booleans all become librdkafka's
/// string form, so `"linger.ms" = 5` and `"linger.ms" = "5"` are the same.
#[derive(Clone, PartialEq, Eq)]
pub struct Property(pub String);

impl std::fmt::Debug for Property {
    /// Never the value: it may be a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Property(..)")
    }
}

impl<'de> Deserialize<'de> for Property {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
            B(bool),
        }
        Ok(Property(match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
            Raw::F(f) => f.to_string(),
            Raw::B(b) => b.to_string(),
        }))
    }
}

/// Which client a set of properties is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Consumer,
    Producer,
    /// Topic administration (no overrides of its own: the common properties).
    Admin,
}

/// Whether a librdkafka property holds a secret: its value is never printed, logged or put in
/// an error message.
pub fn is_secret(key: &str) -> bool {
    let key = key.strip_suffix(FILE_SUFFIX).unwrap_or(key);
    key.contains("password")
        || key.contains("secret")
        || matches!(key, "ssl.key.pem" | "sasl.oauthbearer.config")
}

impl KafkaSettings {
    /// The common properties with the kind's overrides on top, in the file's form (`_file`
    /// keys not yet read).
    pub fn for_kind(&self, kind: ClientKind) -> BTreeMap<&str, &str> {
        let extra = match kind {
            ClientKind::Consumer => Some(&self.consumer),
            ClientKind::Producer => Some(&self.producer),
            ClientKind::Admin => None,
        };
        let mut merged: BTreeMap<&str, &str> = self
            .common
            .iter()
            .map(|(k, v)| (k.as_str(), v.0.as_str()))
            .collect();
        for (k, v) in extra.into_iter().flatten() {
            merged.insert(k, &v.0);
        }
        merged
    }

    /// A property set for every client (the common section); what `check` and the clients'
    /// defaults look at.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.common.get(key).map(|p| p.0.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.common.contains_key(key)
            || self.consumer.contains_key(key)
            || self.producer.contains_key(key)
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.common.insert(key.into(), Property(value.into()));
    }

    /// Every section with its name in messages: `kafka`, `kafka.consumer`, `kafka.producer`.
    pub fn sections(&self) -> [(&'static str, &BTreeMap<String, Property>); 3] {
        [
            ("kafka", &self.common),
            ("kafka.consumer", &self.consumer),
            ("kafka.producer", &self.producer),
        ]
    }

    /// Environment keys arrive as `bootstrap_servers` (librdkafka names have no `_`) and
    /// override the file's `bootstrap.servers`; `sasl_password_file` is `sasl.password_file`.
    /// Relative secret-file paths are resolved against the config file's directory.
    pub(crate) fn normalize(&mut self, config_dir: Option<&Path>) {
        for map in [&mut self.common, &mut self.consumer, &mut self.producer] {
            let (env, file): (Vec<_>, Vec<_>) = std::mem::take(map)
                .into_iter()
                .partition(|(k, _)| env_key(k));
            *map = file
                .into_iter()
                .chain(env.into_iter().map(|(k, v)| (dotted(&k), v)))
                .map(|(k, v)| {
                    let v = match (k.ends_with(FILE_SUFFIX), config_dir) {
                        (true, Some(dir)) => Property(resolve(dir, &v.0)),
                        _ => v,
                    };
                    (k, v)
                })
                .collect();
        }
    }
}

/// `sasl_password_file` came from the environment; `sasl.password_file` from the file.
fn env_key(k: &str) -> bool {
    k.strip_suffix(FILE_SUFFIX).unwrap_or(k).contains('_')
}

fn dotted(k: &str) -> String {
    match k.strip_suffix(FILE_SUFFIX) {
        Some(base) => format!("{}{FILE_SUFFIX}", base.replace('_', ".")),
        None => k.replace('_', "."),
    }
}

fn resolve(dir: &Path, path: &str) -> String {
    let p = PathBuf::from(path);
    if p.is_relative() {
        dir.join(p).display().to_string()
    } else {
        path.into()
    }
}

impl KafkaSettings {
    /// Replaces every `<property>_file` by `<property>` with the file's contents (one trailing
    /// newline dropped). Problems name the field and the file, never the contents.
    pub(crate) fn read_secret_files(&mut self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (section, map) in [
            ("kafka", &mut self.common),
            ("kafka.consumer", &mut self.consumer),
            ("kafka.producer", &mut self.producer),
        ] {
            let files: Vec<String> = map
                .keys()
                .filter(|k| k.ends_with(FILE_SUFFIX))
                .cloned()
                .collect();
            for key in files {
                let Some(Property(path)) = map.remove(&key) else {
                    continue;
                };
                let property = key.trim_end_matches(FILE_SUFFIX).to_string();
                let field = format!("{section}.{key}");
                if map.contains_key(&property) {
                    problems.push((field, format!("both `{property}` and `{key}` are set")));
                    continue;
                }
                match read_secret(Path::new(&path)) {
                    Ok(value) => {
                        map.insert(property, Property(value));
                    }
                    Err(message) => problems.push((field, format!("{path}: {message}"))),
                }
            }
        }
        problems
    }

    /// Every secret value set, to be scrubbed out of messages that librdkafka or its wrapper
    /// might echo.
    pub fn secret_values(&self) -> Vec<&str> {
        self.sections()
            .into_iter()
            .flat_map(|(_, map)| map.iter())
            .filter(|(k, v)| is_secret(k) && !v.0.is_empty())
            .map(|(_, v)| v.0.as_str())
            .collect()
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err("is empty".into());
    }
    Ok(value.to_string())
}

/// `text` with every secret value replaced by `[redacted]`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s, "[redacted]"))
}
