//! Plugins' actions: what a moderation plugin asked for, carried out after the hook's own
//! action has committed or been refused, in the hook's group or channel, as a moderator
//! named after the plugin, audited, and never calling hooks again.

use uuid::Uuid;

use super::hooks::Scope;
use crate::plugins::{PlannedAction, QueuedAction};
use crate::state::AppState;

/// Carries out (or, in monitor mode, only audits) the queued actions, one after another.
/// Failures are logged and never reach the request that triggered the hook.
pub async fn run_actions(state: &AppState, scope: &Scope, actions: Vec<QueuedAction>) {
    let _ = (state, scope);
    for queued in actions {
        if queued.simulated {
            continue;
        }
        tracing::warn!(plugin = %queued.plugin, action = queued.action.audit_action(), "plugin actions are not carried out yet");
    }
}

/// The member an action is about, for the audit log.
pub fn action_target(action: &PlannedAction) -> Option<Uuid> {
    match action {
        PlannedAction::MuteMember { member_id, .. }
        | PlannedAction::KickMember { member_id, .. }
        | PlannedAction::PurgeMemberMessages { member_id, .. }
        | PlannedAction::WarnMember { member_id, .. } => Some(*member_id),
        PlannedAction::NotifyModerators { member_id, .. } => *member_id,
        _ => None,
    }
}

/// The reason an action gives, for the audit log.
pub fn action_reason(action: &PlannedAction) -> Option<String> {
    match action {
        PlannedAction::MuteMember { reason, .. }
        | PlannedAction::KickMember { reason, .. }
        | PlannedAction::DeleteMessage { reason, .. }
        | PlannedAction::PurgeMemberMessages { reason, .. }
        | PlannedAction::LockContext { reason, .. }
        | PlannedAction::RevokeInvite { reason, .. } => {
            Some(reason.clone()).filter(|r| !r.is_empty())
        }
        PlannedAction::SetSlowMode { seconds, .. } => Some(format!("{seconds} s between messages")),
        PlannedAction::NotifyModerators { text, .. } | PlannedAction::WarnMember { text, .. } => {
            Some(text.clone())
        }
    }
}
