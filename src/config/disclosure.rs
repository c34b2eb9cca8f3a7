//! `[disclosure]`: what each target may receive about a subject (docs/disclosure.md). A
//! target names a profile; a profile lists the command fields the target gets as they are
//! (`disclose`) and those it gets as a keyed pseudonym (`pseudonymise`); everything else about
//! the subject is withheld. A target without a profile receives every field.

use super::Settings;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureSettings {
    /// A file holding the key (≥ 16 bytes) pseudonyms are made with (HMAC-SHA-256). Required
    /// when a profile pseudonymises a field or withholds `subject.id` (the command's record
    /// key is then the subject id's pseudonym).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub profiles: Vec<ProfileSettings>,
}

/// A target's own lists (`disclose`/`pseudonymise` in its `[[targets]]` table): a profile
/// named after the target.
pub fn inline_profile(t: &super::TargetSettings) -> Option<ProfileSettings> {
    let disclose = t.disclose.clone()?;
    Some(ProfileSettings {
        name: t.name.clone(),
        disclose,
        pseudonymise: t.pseudonymise.clone(),
    })
}

/// The profile governing a target: its own lists, or the named one; a share target without
/// either gets [`share_minimal`].
pub fn profile_of(settings: &Settings, t: &super::TargetSettings) -> Option<ProfileSettings> {
    explicit_profile(settings, t)
        .or_else(|| (t.kind == super::TargetKind::Share).then(share_minimal))
}

/// The profile a target names or lists itself.
fn explicit_profile(settings: &Settings, t: &super::TargetSettings) -> Option<ProfileSettings> {
    inline_profile(t).or_else(|| {
        settings
            .disclosure
            .profile(t.disclosure.as_deref()?)
            .cloned()
    })
}

/// What a share target gets unless it says otherwise: the indicator, when it was first seen
/// and how sure the source is — nothing about the subject.
pub fn share_minimal() -> ProfileSettings {
    ProfileSettings {
        name: "share-minimal".into(),
        disclose: [
            "indicator_type",
            "indicator_value",
            "first_seen",
            "confidence",
        ]
        .map(|f| format!("parameters.{f}"))
        .to_vec(),
        pseudonymise: Vec::new(),
    }
}

/// `[[disclosure.profiles]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSettings {
    pub name: String,
    /// Fields sent as they are: `principal_id`, `subject.id`, `subject.identifiers.<name>`,
    /// `subject.identifiers.*`, `parameters.<name>`, `parameters.*`.
    #[serde(default)]
    pub disclose: Vec<String>,
    /// Fields sent as a keyed pseudonym (stable per target and value), same names.
    #[serde(default)]
    pub pseudonymise: Vec<String>,
}

/// Whether `field` names a command field a profile can govern: a full name, or a bare one
/// (`credential_id`, `email`) standing for the parameter and the subject identifier so named.
pub fn is_field(field: &str) -> bool {
    let named = |prefix: &str| {
        field
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['.', ' ']))
    };
    let bare = !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    matches!(field, "principal_id" | "subject.id")
        || named("subject.identifiers.")
        || named("parameters.")
        || bare
}

/// Whether a profile's entry `listed` covers the command field `field` (`parameters.x`,
/// `subject.identifiers.x`, `subject.id`, `principal_id`): the same name, a `.*` over its
/// kind, or the bare name of a parameter or identifier.
pub fn covers(listed: &str, field: &str) -> bool {
    if listed == field {
        return true;
    }
    if let Some(prefix) = listed.strip_suffix('*') {
        return prefix.ends_with('.') && field.starts_with(prefix);
    }
    let bare = |prefix: &str| field.strip_prefix(prefix) == Some(listed);
    !listed.contains('.') && (bare("parameters.") || bare("subject.identifiers."))
}

impl DisclosureSettings {
    pub fn profile(&self, name: &str) -> Option<&ProfileSettings> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Whether any profile in use needs the pseudonym key.
    fn needs_key(&self, settings: &Settings) -> Option<String> {
        // share-minimal needs none: its commands carry nothing about the subject to key.
        settings.targets.iter().find_map(|t| {
            let p = explicit_profile(settings, t)?;
            let subject_withheld = !p.disclose.iter().any(|f| covers(f, "subject.id"));
            (!p.pseudonymise.is_empty() || subject_withheld).then(|| p.name.clone())
        })
    }
}

/// `[disclosure]` checks: known fields, unique profiles, targets naming existing ones, a key
/// when one is needed, and every action a target accepts left with what it requires.
pub(crate) fn validate(settings: &Settings, problem: &mut dyn FnMut(String, String)) {
    let d = &settings.disclosure;
    let mut names = HashSet::new();
    for (i, p) in d.profiles.iter().enumerate() {
        let at = format!("disclosure.profiles[{i}]");
        if !names.insert(p.name.as_str()) {
            problem(
                format!("{at}.name"),
                format!("profile {:?} is defined twice", p.name),
            );
        }
        for (list, fields) in [("disclose", &p.disclose), ("pseudonymise", &p.pseudonymise)] {
            for f in fields.iter().filter(|f| !is_field(f)) {
                problem(
                    format!("{at}.{list}"),
                    format!("{f:?} is not a command field (principal_id, subject.id, subject.identifiers.<name>, parameters.<name>, or .* of the last two)"),
                );
            }
        }
    }
    for (i, t) in settings.targets.iter().enumerate() {
        targets_profile(settings, (i, t), problem);
    }
    match (&d.key_file, d.needs_key(settings)) {
        (None, Some(profile)) => problem(
            "disclosure.key_file".into(),
            format!("profile {profile:?} pseudonymises or withholds subject.id: pseudonyms need a key file"),
        ),
        (Some(path), _) => {
            if let Err(e) = crate::approvals::read_key(path) {
                // Names the file and its length, never its content.
                problem("disclosure.key_file".into(), format!("{}: {e}", path.display()));
            }
        }
        (None, None) => {}
    }
}

/// A target's profile: its own lists or a named profile (not both), with known fields, leaving
/// every action it accepts something to act on.
fn targets_profile(
    settings: &Settings,
    (i, t): (usize, &super::TargetSettings),
    problem: &mut dyn FnMut(String, String),
) {
    if t.disclose.is_none() && !t.pseudonymise.is_empty() {
        let at = format!("targets[{i}].pseudonymise");
        problem(
            at,
            "pseudonymise needs disclose (what the target gets as it is; [] for nothing)".into(),
        );
    }
    if let Some(p) = inline_profile(t) {
        if t.disclosure.is_some() {
            let at = format!("targets[{i}].disclosure");
            problem(
                at,
                "a target has its own disclose list or a named profile, not both".into(),
            );
        }
        for (list, fields) in [("disclose", &p.disclose), ("pseudonymise", &p.pseudonymise)] {
            for f in fields.iter().filter(|f| !is_field(f)) {
                problem(
                    format!("targets[{i}].{list}"),
                    format!("{f:?} is not a command field"),
                );
            }
        }
        return requirements(t, &p, &format!("targets[{i}].disclose"), problem);
    }
    let Some(name) = &t.disclosure else { return };
    let at = format!("targets[{i}].disclosure");
    match settings.disclosure.profile(name) {
        None => problem(at, format!("no [[disclosure.profiles]] is named {name:?}")),
        Some(p) => requirements(t, p, &at, problem),
    }
}

/// Every action the target accepts keeps, under the profile, something that satisfies its
/// requirement (e.g. `disable_credential`: a credential parameter or the principal).
fn requirements(
    t: &super::TargetSettings,
    p: &ProfileSettings,
    at: &str,
    problem: &mut dyn FnMut(String, String),
) {
    // Only a disclosed field lets the adapter act: a pseudonym names nothing it can find.
    let kept = |field: &str| p.disclose.iter().any(|f| covers(f, field));
    for action in &t.actions {
        let Some(r) = crate::emit::command::requirement(action) else {
            continue;
        };
        if let Some(n) = r.all_of.iter().find(|n| !kept(&format!("parameters.{n}"))) {
            problem(
                at.to_string(),
                format!("profile {:?} leaves target {:?} no way to carry out {action:?}: it needs parameters.{n} disclosed", p.name, t.name),
            );
            continue;
        }
        if r.any_of.is_empty() {
            continue;
        }
        let parameter = r.any_of.iter().any(|n| kept(&format!("parameters.{n}")));
        if !(parameter || r.or_principal && kept("principal_id")) {
            problem(
                at.to_string(),
                format!(
                    "profile {:?} leaves target {:?} no way to carry out {action:?}: disclose (not pseudonymise) one of {} or principal_id",
                    p.name,
                    t.name,
                    r.any_of.iter().map(|n| format!("parameters.{n}")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}
