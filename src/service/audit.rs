//! The moderation audit log of groups and channels (CONTRACT.md, the audit log lines).
//!
//! Every moderation action is recorded in the transaction that makes it, so an entry
//! exists exactly when the action happened: mute, unmute, kick, remove, role change,
//! invite created or redeemed, settings changed, and a message deleted by someone other
//! than its sender. Owners and admins read it, newest first, paginated like every list.
//! Plugin decisions (`denied`, `modified`, `simulated`) and plugins' own actions are
//! recorded here too (see [`record_entries`]).

use entity::audit_entry;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;
use uuid::Uuid;

use super::Actor;
use super::contexts::{Kind, require_member};
use super::pagination::{CursorKey, Page, PageParams};
use super::roles::Permission;
use crate::error::ServiceResult;
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Mute,
    Unmute,
    Kick,
    Remove,
    RoleChange,
    InviteCreate,
    InviteRedeem,
    SettingsChange,
    MessageDelete,
}

impl Action {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mute => "mute",
            Action::Unmute => "unmute",
            Action::Kick => "kick",
            Action::Remove => "remove",
            Action::RoleChange => "role_change",
            Action::InviteCreate => "invite_create",
            Action::InviteRedeem => "invite_redeem",
            Action::SettingsChange => "settings_change",
            Action::MessageDelete => "message_delete",
        }
    }
}

/// One audit line to write.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub context_id: Uuid,
    /// One of the contract's actions (`mute`, `message`, `alert`…).
    pub action: &'static str,
    /// `None` for a plugin's own action.
    pub actor: Option<Uuid>,
    pub target: Option<Uuid>,
    /// `allowed`, `denied`, `modified` or `simulated`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub plugin: Option<String>,
}

/// Writes audit lines (plugin decisions and actions), on their own or inside the caller's
/// transaction.
pub async fn record_entries(db: &impl ConnectionTrait, entries: Vec<Entry>) -> ServiceResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let rows = entries.into_iter().map(|entry| audit_entry::ActiveModel {
        id: Set(Uuid::now_v7()),
        context_id: Set(entry.context_id),
        context_type: Set(entry.kind.as_str().to_owned()),
        action: Set(entry.action.to_owned()),
        actor_id: Set(entry.actor),
        target_id: Set(entry.target),
        outcome: Set(entry.outcome.to_owned()),
        reason: Set(entry.reason),
        plugin: Set(entry.plugin),
        created_at: Set(now),
    });
    audit_entry::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records an action that was carried out (`outcome` = `allowed`), inside the caller's
/// transaction.
pub async fn record(
    txn: &impl ConnectionTrait,
    kind: Kind,
    context_id: Uuid,
    action: Action,
    actor: Uuid,
    target: Option<Uuid>,
    reason: Option<String>,
) -> ServiceResult<()> {
    audit_entry::Entity::insert(audit_entry::ActiveModel {
        id: Set(Uuid::now_v7()),
        context_id: Set(context_id),
        context_type: Set(kind.as_str().to_owned()),
        action: Set(action.as_str().to_owned()),
        actor_id: Set(Some(actor)),
        target_id: Set(target),
        outcome: Set("allowed".to_owned()),
        reason: Set(reason),
        plugin: Set(None),
        created_at: Set(now_ms()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// An audit entry as owners and admins read it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "AuditEntry")]
pub struct AuditView {
    pub id: Uuid,
    /// `mute`, `unmute`, `kick`, `remove`, `role_change`, `invite_create`, `invite_redeem`,
    /// `join`, `settings_change`, `message_delete`, `message`, `reaction`, `purge`, `lock`,
    /// `slow_mode`, `invite_revoke`, `alert` or `warn`.
    pub action: String,
    pub actor_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    /// `group` or `channel`.
    pub context_type: String,
    pub context_id: Uuid,
    /// `allowed`, `denied`, `modified` or `simulated`.
    pub outcome: String,
    pub reason: Option<String>,
    pub plugin: Option<String>,
    pub created_at: String,
}

impl From<audit_entry::Model> for AuditView {
    fn from(row: audit_entry::Model) -> Self {
        Self {
            id: row.id,
            action: row.action,
            actor_id: row.actor_id,
            target_id: row.target_id,
            context_type: row.context_type,
            context_id: row.context_id,
            outcome: row.outcome,
            reason: row.reason,
            plugin: row.plugin,
            created_at: rfc3339(row.created_at),
        }
    }
}

/// A context's audit log, newest first: owners and admins only (others 403, or 404 where
/// the channel is invisible to them).
pub async fn list(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    params: &PageParams,
) -> ServiceResult<Page<AuditView>> {
    let access = require_member(&state.db.read, kind, context_id, actor).await?;
    access.require(Permission::ReadAudit)?;
    let scope = format!("{}:{context_id}:audit", kind.as_str());
    let request = state.cursors.request(&scope, params, false)?;
    let mut query = audit_entry::Entity::find()
        .filter(audit_entry::Column::ContextId.eq(context_id))
        .order_by_desc(audit_entry::Column::Id);
    if let Some(after) = request.after {
        query = query.filter(audit_entry::Column::Id.lt(after.id));
    }
    let rows = query.limit(request.limit + 1).all(&state.db.read).await?;
    let page = state.cursors.page(&scope, &request, rows, |row| CursorKey {
        time: 0,
        id: row.id,
    });
    Ok(page.map(AuditView::from))
}
