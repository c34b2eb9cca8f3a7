//! Loading a rules directory: every `*.yaml`/`*.yml` file in name order, each rule checked
//! against the configured targets and the action vocabulary. Every problem is reported with
//! its file, line and field; a directory with any problem does not load.

use super::model::{ActionSpec, OnExpiry, ParamSpec, RuleFile, RuleSpec};
use super::{Action, Condition, Escalate, Param, Rule, RuleSet, TargetRef, Window};
use crate::config::{Problem, TargetSettings};
use crate::emit::command::VOCABULARY;
use crate::signal::SubjectFormat;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

mod actions;

const MEMBERS: [&str; 7] = crate::signal::Subject::MEMBER_NAMES;
const RESTORE: &str = "restore";
const CONTAINED: &str = "contained";
const WHERE_IDENTITY_HAS_ACCESS: &str = "where_identity_has_access";

/// Actions that stay in force until restored. One-shot actions (revoking sessions, rotating a
/// credential, syncing policy, restore itself) leave nothing to lift; actions from
/// `extra_actions` hold unless the rule says otherwise.
fn holds_by_default(action: &str) -> bool {
    !matches!(
        action,
        "revoke_sessions" | "rotate_credential" | "sync_policy" | "restore"
    )
}

/// Largest rules file: YAML parsing cost grows faster than the text (nesting, aliases), and
/// real rule files are a few KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// Loads, checks and compiles the rules in `dir`.
pub fn load_dir(
    dir: &Path,
    targets: &[TargetSettings],
    extra_actions: &[String],
) -> Result<RuleSet, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    for path in rule_files(dir)? {
        match std::fs::read_to_string(&path) {
            Ok(text) if text.len() > MAX_FILE_BYTES => problems.push(problem(
                &path,
                None,
                "",
                format!(
                    "{} bytes; a rules file may have at most {MAX_FILE_BYTES} (split it)",
                    text.len()
                ),
            )),
            Ok(text) => sources.push((path, text)),
            Err(e) => problems.push(problem(&path, None, "", format!("cannot read: {e}"))),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    load_sources(sources, targets, extra_actions)
}

/// The rule files parsed: their rules with file index and line, the files' text (kept once
/// per file, for error lines), the content hash, and the YAML problems.
struct Parsed {
    problems: Vec<Problem>,
    version: String,
    files: Vec<(PathBuf, String)>,
    specs: Vec<(usize, Option<usize>, RuleSpec)>,
}

fn parse(sources: Vec<(PathBuf, String)>) -> Parsed {
    let mut problems = Vec::new();
    let mut hasher = Sha256::new();
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut specs: Vec<(usize, Option<usize>, RuleSpec)> = Vec::new();
    for (path, text) in sources {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        hasher.update(name.unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        match serde_yaml::from_str::<RuleFile>(&text) {
            Ok(file) => {
                let mut lines = rule_lines(&text);
                let index = files.len();
                specs.extend(file.rules.into_iter().map(|r| {
                    let line = lines.get_mut(&r.id).and_then(|l| l.pop_front());
                    (index, line, r)
                }));
                files.push((path, text));
            }
            Err(e) => problems.push(yaml_problem(&path, &e)),
        }
    }
    Parsed {
        problems,
        version: crate::codec::hex(&hasher.finalize()[..6]),
        files,
        specs,
    }
}

fn yaml_problem(path: &Path, e: &serde_yaml::Error) -> Problem {
    let line = e.location().map(|l| l.line());
    let message = e.to_string();
    let field = field_of_yaml_error(&message);
    let message = message
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(&message)
        .to_string();
    problem(path, line, &field, message)
}

/// Checks and compiles rules from (file name, text) pairs, in the order given.
pub fn load_sources(
    sources: Vec<(PathBuf, String)>,
    targets: &[TargetSettings],
    extra_actions: &[String],
) -> Result<RuleSet, Vec<Problem>> {
    let Parsed {
        mut problems,
        version,
        files,
        specs,
    } = parse(sources);
    let checker = Checker::new(targets, extra_actions);
    let mut seen: HashMap<String, (PathBuf, Option<usize>)> = HashMap::new();
    let mut compiled = Vec::new();
    let mut warnings = Vec::new();
    for (order, (file, line, spec)) in specs.into_iter().enumerate() {
        let (path, text) = &files[file];
        if let Some((other, other_line)) = seen.get(&spec.id) {
            let at = match other_line {
                Some(l) => format!("{}:{l}", other.display()),
                None => other.display().to_string(),
            };
            problems.push(problem(
                path,
                line,
                &format!("rule {}.id", spec.id),
                format!("duplicate rule id (first defined at {at})"),
            ));
        }
        seen.insert(spec.id.clone(), (path.clone(), line));
        let allow_broad = spec.allow_broad;
        match checker.compile(path, text, line, spec) {
            Ok(rule) => {
                problems.extend(super::lint::too_broad(&rule, allow_broad, path, text));
                warnings.extend(super::lint::warnings_of(&rule.0, path, text));
                compiled.push((order, rule))
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    compiled.sort_by_key(|(order, (rule, _))| (std::cmp::Reverse(rule.priority), *order));
    let (rules, types): (Vec<Rule>, Vec<Vec<String>>) =
        compiled.into_iter().map(|(_, pair)| pair).unzip();
    let accepts = targets
        .iter()
        .map(|t| (t.name.clone(), t.actions.clone()))
        .collect();
    let mut set = RuleSet::new(rules, types, version, accepts);
    set.warnings = warnings;
    Ok(set)
}

fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, Vec<Problem>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![problem(
            dir,
            None,
            "rules.dir",
            format!("cannot read rules directory: {e}"),
        )]
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

pub(super) fn problem(file: &Path, line: Option<usize>, field: &str, message: String) -> Problem {
    Problem {
        file: file.into(),
        line,
        field: field.into(),
        message,
    }
}

/// Lines of every `id: <id>` in a file (a rule's first line in practice), in one pass, in
/// order per id.
fn rule_lines(text: &str) -> HashMap<String, std::collections::VecDeque<usize>> {
    let mut lines: HashMap<String, std::collections::VecDeque<usize>> = HashMap::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start().trim_start_matches("- ").trim();
        if let Some(v) = t.strip_prefix("id:") {
            let id = v.trim().trim_matches(|c| c == '"' || c == '\'');
            lines.entry(id.to_string()).or_default().push_back(i + 1);
        }
    }
    lines
}

/// Line at or after `from` whose text contains `needle`.
pub(super) fn line_after(text: &str, from: Option<usize>, needle: &str) -> Option<usize> {
    let start = from.unwrap_or(1);
    text.lines()
        .enumerate()
        .skip(start - 1)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .or(from)
}

fn field_of_yaml_error(message: &str) -> String {
    message
        .split(": ")
        .next()
        .filter(|f| f.starts_with("rules") && !f.contains(' '))
        .unwrap_or("")
        .to_string()
}

struct Checker<'a> {
    targets: &'a [TargetSettings],
    actions: BTreeSet<&'a str>,
}

impl<'a> Checker<'a> {
    fn new(targets: &'a [TargetSettings], extra_actions: &'a [String]) -> Self {
        let actions = VOCABULARY
            .iter()
            .copied()
            .chain(extra_actions.iter().map(String::as_str))
            .collect();
        Self { targets, actions }
    }

    fn compile(
        &self,
        path: &Path,
        text: &str,
        line: Option<usize>,
        spec: RuleSpec,
    ) -> Result<(Rule, Vec<String>), Vec<Problem>> {
        let mut problems = Vec::new();
        let id = spec.id.clone();
        let mut report = |needle: &str, field: &str, message: String| {
            problems.push(problem(
                path,
                line_after(text, line, needle),
                &format!("rule {id}.{field}"),
                message,
            ))
        };
        check_match(&spec, &mut report);
        let condition = condition(&spec, &mut report);
        let actions = self.actions(&spec.actions, "actions", &mut report);
        let window = spec.window.as_ref().map(|w| {
            if w.within.is_zero() {
                report("within", "window.within", "must be longer than 0s".into());
            }
            if w.count == 0 {
                report("count", "window.count", "must be at least 1".into());
            }
            Window {
                within: w.within,
                count: w.count,
                event_types: w.event_types.clone(),
            }
        });
        let mut escalate = spec
            .escalate
            .as_ref()
            .map(|e| self.escalate(e, &mut report));
        let rule_suppress = spec.suppress_for;
        let mut actions = actions;
        for a in actions.iter_mut().chain(
            escalate
                .iter_mut()
                .flat_map(|e| e.steps.iter_mut().flatten()),
        ) {
            a.suppress_for = a.suppress_for.or(rule_suppress);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let rule = Rule {
            id: spec.id,
            description: spec.description,
            priority: spec.priority,
            dry_run: spec.dry_run,
            stop: spec.stop,
            sources: spec.matcher.sources,
            subject_formats: spec.matcher.subject_formats,
            subject_members: spec.matcher.subject_members,
            condition,
            actions,
            window,
            escalate,
            file: path.into(),
            line,
        };
        Ok((rule, spec.matcher.event_types))
    }

    /// An escalation ladder: its period and each step's actions.
    fn escalate(
        &self,
        e: &super::model::EscalateSpec,
        report: &mut impl FnMut(&str, &str, String),
    ) -> Escalate {
        if e.within.is_zero() {
            report("within", "escalate.within", "must be longer than 0s".into());
        }
        if e.steps.is_empty() {
            report(
                "escalate",
                "escalate.steps",
                "list at least one step".into(),
            );
        }
        let steps = e
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                self.actions(
                    &step.actions,
                    &format!("escalate.steps[{i}].actions"),
                    report,
                )
            })
            .collect();
        Escalate {
            within: e.within,
            steps,
        }
    }
}

/// The rule's id and match: an id, event types, known subject formats and members.
fn check_match(spec: &RuleSpec, report: &mut impl FnMut(&str, &str, String)) {
    if spec.id.trim().is_empty() {
        report("id:", "id", "must not be empty".into());
    }
    if spec.matcher.event_types.is_empty() {
        report(
            "event_types",
            "match.event_types",
            "list at least one event type (or \"*\")".into(),
        );
    }
    for f in &spec.matcher.subject_formats {
        if SubjectFormat::parse(f).is_none() {
            report(
                f,
                "match.subject_formats",
                format!("unknown subject format {f:?}"),
            );
        }
    }
    for m in &spec.matcher.subject_members {
        if !MEMBERS.contains(&m.as_str()) {
            report(
                m,
                "match.subject_members",
                format!("unknown complex member {m:?}; one of {MEMBERS:?}"),
            );
        }
    }
}

/// The compiled condition (probed once), and that it reads `window` only with a window.
fn condition(spec: &RuleSpec, report: &mut impl FnMut(&str, &str, String)) -> Option<Condition> {
    let condition = match spec
        .condition
        .as_deref()
        .map(|c| Condition::compile(c).and_then(|c| c.probe(true).map(|()| c)))
    {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            report("condition", "condition", format!("CEL: {e}"));
            None
        }
    };
    if let Some(c) = &condition {
        if c.uses_window() && spec.window.is_none() {
            report(
                "condition",
                "condition",
                "uses `window`, but the rule declares no window".into(),
            );
        }
    }
    condition
}
