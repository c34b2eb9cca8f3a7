//! Commands a decision holds instead of sending: a protected identity's drastic action, one a
//! rule, target or policy requires approval for, and one missing a parameter its action needs.

use super::targets::Dest;
use super::{Acting, Planned};
use crate::emit::command::requirement;
use crate::emit::Held;
use crate::rules::Action;
use std::collections::BTreeMap;

impl Acting<'_, '_> {
    /// Holds a command automated containment may not issue alone — a protected identity's
    /// drastic action, whatever the rule says, or one a rule, target or policy requires
    /// approval for — complete, for the approvals topic; returns whether it did.
    pub(super) fn held_for_approval(
        &mut self,
        p: &Planned<'_>,
        dest: &Dest<'_>,
        command_id: &str,
    ) -> bool {
        let action = &p.action.action;
        let rails = self.input.rails;
        let (reason, detail) = match self.input.protection {
            Some(why) if rails.is_drastic(action) => (
                "protected_identity",
                format!("{why}: {action} is never issued automatically"),
            ),
            _ if p.action.require_approval => (
                "approval_required",
                format!("rule {} requires approval for {action}", p.rule.id),
            ),
            _ => match rails.approval(action, dest.target, self.input.identity) {
                Some(why) => ("approval_required", why),
                None => return false,
            },
        };
        self.held.push(Held {
            command_id: command_id.to_string(),
            action: action.clone(),
            target: dest.target.to_string(),
            reason: reason.into(),
            detail,
        });
        let command = self.command(p, command_id.to_string(), dest, p.parameters.clone());
        self.held_commands.push(command);
        true
    }

    /// Holds a command whose action lacks a required parameter; returns whether it did.
    pub(super) fn held_for_parameters(
        &mut self,
        action: &Action,
        dest: &Dest<'_>,
        parameters: &BTreeMap<String, String>,
        command_id: &str,
    ) -> bool {
        let Some(detail) =
            requirement(&action.action).and_then(|r| r.missing(parameters, dest.principal))
        else {
            return false;
        };
        self.held.push(Held {
            command_id: command_id.to_string(),
            action: action.action.clone(),
            target: dest.target.to_string(),
            reason: "missing_parameter".into(),
            detail,
        });
        true
    }
}
