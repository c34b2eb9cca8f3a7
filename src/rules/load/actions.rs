//! A rule's actions: their names, targets (named, `kind:`, the blast radius, `contained`),
//! parameters, restore lifts and fallbacks, checked against the configured targets.

use super::*;

impl Checker<'_> {
    /// Compiles a list of actions (a rule's, or an escalation step's) at `field`.
    pub(super) fn actions(
        &self,
        specs: &[ActionSpec],
        field: &str,
        report: &mut impl FnMut(&str, &str, String),
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for (i, a) in specs.iter().enumerate() {
            let field = format!("{field}[{i}]");
            if !self.actions.contains(a.action.as_str()) {
                report(
                    &a.action,
                    &format!("{field}.action"),
                    format!("unknown action {:?}", a.action),
                );
                continue;
            }
            if a.targets.is_empty() {
                report(
                    &a.action,
                    &format!("{field}.targets"),
                    "name at least one target".into(),
                );
            }
            let restore = a.action == RESTORE;
            let resolved = self.targets(a, restore, &field, report);
            let lifts = a.lifts.clone().into_lifts();
            self.check_lifts(&lifts, restore, &field, report);
            let object = a
                .object
                .as_ref()
                .and_then(|p| self.param(p, &format!("{field}.object"), "object", report));
            let fallback = self.fallback(a, &field, report);
            let holds = a.holds.unwrap_or_else(|| holds_by_default(&a.action));
            self.check_on_expiry(a, (holds, &resolved), &field, report);
            let parameters = a
                .parameters
                .iter()
                .filter_map(|(name, p)| {
                    let at = format!("{field}.parameters.{name}");
                    Some((name.clone(), self.param(p, &at, name, report)?))
                })
                .collect();
            actions.push(Action {
                action: a.action.clone(),
                targets: resolved,
                parameters,
                expires_in: a.expires_in,
                restore_on_expiry: a.on_expiry == OnExpiry::Restore,
                suppress_for: a.suppress_for,
                holds,
                lifts,
                object,
                fallback,
                require_approval: a.require_approval,
            });
        }
        actions
    }

    /// The action's targets, resolved: names, `kind:`, the blast radius, `contained`.
    fn targets(
        &self,
        a: &ActionSpec,
        restore: bool,
        field: &str,
        report: &mut impl FnMut(&str, &str, String),
    ) -> Vec<TargetRef> {
        let mut resolved: Vec<TargetRef> = Vec::new();
        for t in &a.targets {
            let r = match t.as_str() {
                CONTAINED if restore => Ok(vec![TargetRef::Contained]),
                CONTAINED => Err(format!("{CONTAINED:?} is only for {RESTORE:?}")),
                WHERE_IDENTITY_HAS_ACCESS if restore => Err(format!(
                    "restore what was contained with {CONTAINED:?}, not {WHERE_IDENTITY_HAS_ACCESS:?}"
                )),
                WHERE_IDENTITY_HAS_ACCESS => Ok(vec![TargetRef::WhereIdentityHasAccess]),
                named => self
                    .resolve(named, &a.action)
                    .map(|names| names.into_iter().map(TargetRef::Named).collect()),
            };
            match r {
                Ok(refs) => {
                    for r in refs {
                        if !resolved.contains(&r) {
                            resolved.push(r);
                        }
                    }
                }
                Err(msg) => report(t, &format!("{field}.targets"), msg),
            }
        }
        resolved
    }

    /// A parameter (or object) value: a literal, or CEL compiled and probed.
    fn param(
        &self,
        p: &ParamSpec,
        field: &str,
        name: &str,
        report: &mut impl FnMut(&str, &str, String),
    ) -> Option<Param> {
        match p {
            ParamSpec::Literal(v) => Some(Param::Literal(v.clone())),
            ParamSpec::Expr { cel } => {
                match Condition::compile(cel).and_then(|c| c.probe(false).map(|()| c)) {
                    Ok(c) => Some(Param::Expr(Box::new(c))),
                    Err(e) => {
                        report(name, field, format!("CEL: {e}"));
                        None
                    }
                }
            }
        }
    }

    /// `on_expiry: restore` only on a containment that holds and expires, at targets that
    /// accept `restore` (the blast radius is checked when the containment expires).
    fn check_on_expiry(
        &self,
        a: &ActionSpec,
        (holds, targets): (bool, &[TargetRef]),
        field: &str,
        report: &mut impl FnMut(&str, &str, String),
    ) {
        if a.on_expiry != OnExpiry::Restore {
            return;
        }
        let at = format!("{field}.on_expiry");
        let why = if a.action == RESTORE {
            Some("a restore has nothing to restore when it expires".to_string())
        } else if !holds {
            Some(format!(
                "{:?} does not hold: nothing stays to restore",
                a.action
            ))
        } else if a.expires_in.is_none() {
            Some("on_expiry: restore needs expires_in".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            report("on_expiry", &at, why);
            return;
        }
        for t in targets {
            if let TargetRef::Named(name) = t {
                if let Err(e) = self.resolve(name, RESTORE) {
                    report(name, &at, format!("on_expiry: restore, but {e}"));
                }
            }
        }
    }

    /// `lifts` only on `restore`, naming known actions.
    fn check_lifts(
        &self,
        lifts: &crate::rules::Lifts,
        restore: bool,
        field: &str,
        report: &mut impl FnMut(&str, &str, String),
    ) {
        let at = format!("{field}.lifts");
        if !lifts.is_empty() && !restore {
            report("lifts", &at, format!("only {RESTORE:?} lifts containments"));
        }
        for l in &lifts.actions {
            if !self.actions.contains(l.as_str()) {
                report(l, &at, format!("unknown action {l:?}"));
            }
        }
    }

    /// The action's `fallback_targets`, resolved; only with `where_identity_has_access`.
    fn fallback(
        &self,
        a: &ActionSpec,
        field: &str,
        report: &mut impl FnMut(&str, &str, String),
    ) -> Vec<String> {
        let at = format!("{field}.fallback_targets");
        if !a.fallback_targets.is_empty()
            && !a.targets.iter().any(|t| t == WHERE_IDENTITY_HAS_ACCESS)
        {
            report(
                "fallback_targets",
                &at,
                format!("fallback targets back a {WHERE_IDENTITY_HAS_ACCESS:?} target; this action has none"),
            );
        }
        let mut out: Vec<String> = Vec::new();
        for t in &a.fallback_targets {
            match self.resolve(t, &a.action) {
                Ok(names) => out.extend(
                    names
                        .into_iter()
                        .filter(|n| !out.contains(n))
                        .collect::<Vec<_>>(),
                ),
                Err(msg) => report(t, &at, msg),
            }
        }
        out
    }

    /// A target name, or `kind:<kind>` for every target of that kind that accepts the action.
    fn resolve(&self, target: &str, action: &str) -> Result<Vec<String>, String> {
        if let Some(kind) = target.strip_prefix("kind:") {
            let of_kind: Vec<&TargetSettings> = self
                .targets
                .iter()
                .filter(|t| t.kind.name() == kind)
                .collect();
            if of_kind.is_empty() {
                return Err(format!("no configured target is of kind {kind:?}"));
            }
            let accepting: Vec<String> = of_kind
                .iter()
                .filter(|t| t.actions.iter().any(|a| a == action))
                .map(|t| t.name.clone())
                .collect();
            if accepting.is_empty() {
                return Err(format!("no target of kind {kind:?} accepts {action:?}"));
            }
            return Ok(accepting);
        }
        let t = self
            .targets
            .iter()
            .find(|t| t.name == target)
            .ok_or_else(|| format!("unknown target {target:?}"))?;
        if !t.actions.iter().any(|a| a == action) {
            return Err(format!(
                "target {target:?} does not accept {action:?} (it accepts {:?})",
                t.actions
            ));
        }
        Ok(vec![t.name.clone()])
    }
}
