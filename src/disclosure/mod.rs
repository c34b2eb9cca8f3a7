//! Minimal disclosure: each target receives about a subject only what its profile lets it
//! (`[[disclosure.profiles]]`, docs/disclosure.md). A field the profile discloses goes as it
//! is, one it pseudonymises goes as a keyed pseudonym — HMAC-SHA-256 under the deployment's
//! key, per target, so the adapter has a stable reference and two targets cannot join theirs —
//! and every other subject field is withheld. The decision record lists, per command, what was
//! disclosed, pseudonymised and withheld, and under which profile.
//!
//! Applied where a command is made (a signal's decision, a restore on expiry, an escalation),
//! so everything that carries the command afterwards — the target topic, the approvals topic,
//! the results topic — carries only what its target may see.

use crate::config::disclosure::{covers, profile_of};
use crate::config::{ProfileSettings, Settings};
use crate::emit::{DisclosureRecord, EnforcementCommand};
use hmac::{Hmac, Mac};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Parameters containd itself adds to tie a restore or an escalation to what it acts on: kept
/// whatever the profile says (ids of containd's own commands and of the causing signals).
const STRUCTURAL: [&str; 6] = [
    "restores",
    "restores_command_ids",
    "restores_signal_ids",
    "restore_reason",
    "escalation_of",
    "escalation_trigger",
];

/// What one field gets under a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treatment {
    Disclose,
    Pseudonymise,
    Withhold,
}

#[derive(Debug)]
struct Profile {
    name: String,
    disclose: Vec<String>,
    pseudonymise: Vec<String>,
    /// A share target's: a value that looks like a secret never leaves, whatever is listed.
    share: bool,
}

impl Profile {
    fn of(p: &ProfileSettings, share: bool) -> Self {
        Self {
            name: p.name.clone(),
            disclose: p.disclose.clone(),
            pseudonymise: p.pseudonymise.clone(),
            share,
        }
    }

    fn treatment(&self, field: &str) -> Treatment {
        let listed = |list: &[String]| list.iter().any(|f| covers(f, field));
        if listed(&self.disclose) {
            Treatment::Disclose
        } else if listed(&self.pseudonymise) {
            Treatment::Pseudonymise
        } else {
            Treatment::Withhold
        }
    }
}

/// The deployment's disclosure profiles, by target, and the pseudonym key.
#[derive(Default, Clone)]
pub struct Disclosure {
    by_target: HashMap<String, Arc<Profile>>,
    /// `None`: no key configured, or it could not be read (logged once): fields to
    /// pseudonymise are withheld instead.
    key: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Disclosure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Disclosure")
            .field("targets", &self.by_target.keys().collect::<Vec<_>>())
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

impl Disclosure {
    pub fn of(settings: &Settings) -> Self {
        let d = &settings.disclosure;
        let by_target = settings
            .targets
            .iter()
            .filter_map(|t| {
                let p = profile_of(settings, t)?;
                let share = t.kind == crate::config::TargetKind::Share;
                Some((t.name.clone(), Arc::new(Profile::of(&p, share))))
            })
            .collect();
        let key = d.key_file.as_ref().and_then(|path| {
            crate::approvals::read_key(path)
                .map_err(|e| {
                    tracing::error!(file = %path.display(), error = %e,
                        "disclosure key unreadable: fields to pseudonymise are withheld instead");
                })
                .ok()
        });
        Self {
            by_target,
            key: key.map(Arc::from),
        }
    }

    /// Cuts the command down to what its target's profile lets it carry; what was done, or
    /// `None` when the target has no profile (it receives every field).
    pub fn apply(&self, c: &mut EnforcementCommand) -> Option<DisclosureRecord> {
        let profile = self.by_target.get(&c.target)?;
        let mut cut = Cut {
            profile,
            disclosure: self,
            target: &c.target,
            record: DisclosureRecord {
                command_id: c.command_id.clone(),
                target: c.target.clone(),
                profile: profile.name.clone(),
                ..DisclosureRecord::default()
            },
        };
        c.principal_id = c
            .principal_id
            .take()
            .and_then(|v| cut.field("principal_id", v));
        c.subject.id = cut
            .field("subject.id", std::mem::take(&mut c.subject.id))
            .unwrap_or_default();
        c.subject.identifiers = cut.map(
            "subject.identifiers.",
            std::mem::take(&mut c.subject.identifiers),
        );
        let (kept, governed): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut c.parameters)
            .into_iter()
            .partition(|(k, _)| STRUCTURAL.contains(&k.as_str()));
        c.parameters = kept;
        c.parameters.extend(cut.map("parameters.", governed));
        Some(cut.record)
    }

    /// The record key of a command for `target` about `subject_key`: the key itself where the
    /// target may see `subject.id`, its pseudonym otherwise (the same for every command of the
    /// subject, so they stay in order on one partition).
    pub fn record_key<'k>(
        &self,
        target: &str,
        subject_key: &'k [u8],
    ) -> std::borrow::Cow<'k, [u8]> {
        let Some(profile) = self.by_target.get(target) else {
            return subject_key.into();
        };
        if profile.treatment("subject.id") == Treatment::Disclose {
            return subject_key.into();
        }
        let value = String::from_utf8_lossy(subject_key);
        let key = self.pseudonym(target, &value).unwrap_or_default();
        key.into_bytes().into()
    }

    /// `ps_` and the first 16 bytes of HMAC-SHA-256(key, target, value), hex; `None` without
    /// a key.
    fn pseudonym(&self, target: &str, value: &str) -> Option<String> {
        let key = self.key.as_deref()?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
        mac.update(b"containd.pseudonym.v1\0");
        mac.update(target.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        Some(format!(
            "ps_{}",
            crate::codec::hex(&mac.finalize().into_bytes()[..16])
        ))
    }
}

/// Removes `fields` (names as a profile lists them) from the command — a reviewer's
/// redaction of a held command before its release; returns the fields removed.
pub fn redact(c: &mut EnforcementCommand, fields: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    let listed = |field: &str| fields.iter().any(|f| covers(f, field));
    if listed("principal_id") && c.principal_id.take().is_some() {
        removed.push("principal_id".to_string());
    }
    if listed("subject.id") && !c.subject.id.is_empty() {
        c.subject.id.clear();
        removed.push("subject.id".to_string());
    }
    for (prefix, map) in [
        ("subject.identifiers.", &mut c.subject.identifiers),
        ("parameters.", &mut c.parameters),
    ] {
        map.retain(|k, _| {
            let field = format!("{prefix}{k}");
            let keep = !listed(&field) || STRUCTURAL.contains(&k.as_str());
            if !keep {
                removed.push(field);
            }
            keep
        });
    }
    removed
}

/// Whether a value looks like a credential itself rather than a fingerprint of one: the
/// prefixes of common key and token formats, or a PEM block. A share carries a fingerprint,
/// never the key.
fn looks_like_secret(value: &str) -> bool {
    const PREFIXES: [&str; 14] = [
        "AKIA",
        "ASIA",
        "ghp_",
        "gho_",
        "ghs_",
        "ghu_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "sk_live_",
        "rk_live_",
        "AIza",
        "-----BEGIN",
    ];
    let v = value.trim();
    PREFIXES.iter().any(|p| v.starts_with(p)) || v.contains("PRIVATE KEY")
}

/// One command being cut down, and the record of it.
struct Cut<'a> {
    profile: &'a Profile,
    disclosure: &'a Disclosure,
    target: &'a str,
    record: DisclosureRecord,
}

impl Cut<'_> {
    /// The value the target gets for `field`, recording what happened to it.
    fn field(&mut self, field: &str, value: String) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        let r = &mut self.record;
        match self.profile.treatment(field) {
            Treatment::Disclose if self.profile.share && looks_like_secret(&value) => {
                r.withheld.push(format!("{field} (looks like a secret)"));
                None
            }
            Treatment::Disclose => {
                r.disclosed.push(field.to_string());
                Some(value)
            }
            Treatment::Pseudonymise => match self.disclosure.pseudonym(self.target, &value) {
                Some(p) => {
                    r.pseudonymised.push(field.to_string());
                    Some(p)
                }
                None => {
                    r.withheld.push(field.to_string());
                    None
                }
            },
            Treatment::Withhold => {
                r.withheld.push(field.to_string());
                None
            }
        }
    }

    fn map(&mut self, prefix: &str, values: BTreeMap<String, String>) -> BTreeMap<String, String> {
        values
            .into_iter()
            .filter_map(|(k, v)| {
                let v = self.field(&format!("{prefix}{k}"), v)?;
                Some((k, v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
