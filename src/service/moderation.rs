//! Plugins' actions: what a moderation plugin asked for, carried out after the hook's own
//! action has committed or been refused, in the hook's group or channel, as a moderator
//! named after the plugin, audited, and never calling hooks again (CONTRACT.md "Moderation
//! plugins (Rhai)", the actions line).
//!
//! Each action runs on its own, in a transaction of its own taken through
//! [`contexts::begin`] (the context's gate, then its row lock), and writes the same rows and
//! events as a moderator doing the same by hand, with three differences: the audit line has
//! no actor and names the plugin, the events are marked [`Event::by_plugin`] (so `on_event`
//! does not see them), and the target must be a plain member (role `member`). An action the
//! rules refuse (a moderator as target, a member who is not there, a message of another
//! context) is logged and audited with outcome `denied` and the reason; a failure (the
//! database, a gate wait over its bound) is logged. Nothing reaches the request that ran
//! the hook.
//!
//! The lock and slow mode that plugins set are enforced here too: [`require_unlocked`] in
//! joins, invite redemptions and group additions by non-owners, [`require_slow_mode_ok`]
//! when a message is sent; owners lift a lock with [`unlock`].

use entity::{context, context_member, context_message, invite};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Actor;
use super::audit::{self, Entry};
use super::contexts::messages::remove_messages;
use super::contexts::{
    self, Access, DepartureReason, Kind, access_to, context_type_of, lock_context,
};
use super::hooks::Scope;
use super::roles::Role;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{Event, EventType, outbox};
use crate::plugins::{PlannedAction, QueuedAction};
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// How far back `purge_member_messages` reaches at most (24 h).
pub const PURGE_MAX_MS: i64 = 24 * 60 * 60 * 1000;
/// Most messages one purge deletes (the newest ones within its reach).
pub const PURGE_MAX_MESSAGES: u64 = 200;
/// Longest lock (24 h from when it is set).
pub const LOCK_MAX_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest slow mode (24 h from when it is set) and widest gap between messages.
pub const SLOW_MODE_MAX_MS: i64 = 24 * 60 * 60 * 1000;
pub const SLOW_MODE_MAX_SECS: i64 = 3_600;
/// Alerts and warnings one plugin may send in one group or channel per minute, together;
/// more are dropped (logged, not audited).
pub const NOTES_PER_MINUTE: i64 = 10;

/// Carries out the queued actions, one after another, in the hook's group or channel.
/// Monitor-mode actions (`simulated`) were audited by `hooks::after` and are skipped; in a
/// conversation, or with no context at all, there is nothing to act in and the actions are
/// logged and skipped. Failures are logged and never reach the request that triggered the
/// hook.
pub async fn run_actions(state: &AppState, scope: &Scope, actions: Vec<QueuedAction>) {
    let Some((kind, context_id)) = scope.context else {
        for queued in actions.iter().filter(|q| !q.simulated) {
            tracing::info!(
                plugin = %queued.plugin,
                action = queued.action.audit_action(),
                "a plugin action needs a group or channel; skipped"
            );
        }
        return;
    };
    for queued in actions {
        if queued.simulated {
            continue;
        }
        let run = Run {
            state,
            kind,
            context_id,
            plugin: &queued.plugin,
        };
        let action = audit_action(kind, &queued.action);
        match run.carry_out(&queued.action).await {
            Ok(Done::Carried) => {
                tracing::info!(plugin = %queued.plugin, action, context = %context_id, "plugin action carried out");
            }
            Ok(Done::Dropped) => {
                tracing::warn!(
                    plugin = %queued.plugin,
                    action,
                    context = %context_id,
                    "plugin alert or warning dropped: at most {NOTES_PER_MINUTE} a minute per plugin and context"
                );
            }
            Err(err) if is_refusal(&err) => {
                let reason = err.to_string();
                tracing::info!(plugin = %queued.plugin, action, context = %context_id, reason, "plugin action refused");
                let entry = Entry {
                    outcome: "denied",
                    ..run.entry(action, action_target(&queued.action), Some(reason))
                };
                if let Err(err) = audit::record_entries(&state.db.write, vec![entry]).await {
                    tracing::warn!(error = %err, "auditing a refused plugin action failed");
                }
            }
            Err(err) => {
                tracing::warn!(plugin = %queued.plugin, action, context = %context_id, error = %err, "plugin action failed");
            }
        }
    }
}

/// Whether an error is the rules refusing the action (audited as `denied`) rather than a
/// failure to carry it out (only logged).
fn is_refusal(err: &ServiceError) -> bool {
    !matches!(
        err,
        ServiceError::Internal(_) | ServiceError::Unavailable(_) | ServiceError::RateLimited { .. }
    )
}

/// What became of an action that was not refused.
enum Done {
    Carried,
    /// An alert or warning over the per-minute cap.
    Dropped,
}

/// One plugin's actions in one group or channel.
struct Run<'a> {
    state: &'a AppState,
    kind: Kind,
    context_id: Uuid,
    plugin: &'a str,
}

impl Run<'_> {
    /// An `allowed` audit line of this plugin, with no actor.
    fn entry(&self, action: &'static str, target: Option<Uuid>, reason: Option<String>) -> Entry {
        Entry {
            kind: self.kind,
            context_id: self.context_id,
            action,
            actor: None,
            target,
            outcome: "allowed",
            reason,
            plugin: Some(self.plugin.to_owned()),
        }
    }

    /// Takes the context's gate, opens the transaction and locks the context's row.
    async fn begin(
        &self,
    ) -> ServiceResult<(
        super::gates::Gate,
        DatabaseTransaction,
        entity::context::Model,
    )> {
        let (gate, txn) = contexts::begin(self.state, self.context_id).await?;
        let context = lock_context(&txn, self.kind, self.context_id).await?;
        Ok((gate, txn, context))
    }

    /// Writes the audit line and the events (marked as a plugin's) and commits.
    async fn finish(
        &self,
        txn: DatabaseTransaction,
        entry: Entry,
        events: Vec<Event>,
    ) -> ServiceResult<Done> {
        audit::record_entries(&txn, vec![entry]).await?;
        outbox::record(&txn, events.into_iter().map(Event::by_plugin).collect()).await?;
        outbox::commit(self.state, txn).await?;
        Ok(Done::Carried)
    }

    async fn carry_out(&self, action: &PlannedAction) -> ServiceResult<Done> {
        match action {
            PlannedAction::MuteMember {
                member_id,
                duration_ms,
                reason,
            } => self.mute(*member_id, *duration_ms, reason).await,
            PlannedAction::KickMember { member_id, reason } => self.kick(*member_id, reason).await,
            PlannedAction::DeleteMessage { message_id, reason } => {
                self.delete_message(*message_id, reason).await
            }
            PlannedAction::PurgeMemberMessages {
                member_id,
                within_ms,
                reason,
            } => self.purge(*member_id, *within_ms, reason).await,
            PlannedAction::LockContext { until_ms, reason } => self.lock(*until_ms, reason).await,
            PlannedAction::SetSlowMode { seconds, until_ms } => {
                self.slow_mode(*seconds, *until_ms).await
            }
            PlannedAction::RevokeInvite { invite_id, reason } => {
                self.revoke_invite(invite_id, reason).await
            }
            PlannedAction::NotifyModerators { text, member_id } => {
                if !self.within_note_cap().await {
                    return Ok(Done::Dropped);
                }
                self.alert(text, *member_id).await
            }
            PlannedAction::WarnMember { member_id, text } => {
                if !self.within_note_cap().await {
                    return Ok(Done::Dropped);
                }
                self.warn(*member_id, text).await
            }
        }
    }

    /// `mute_member`: as a moderator's mute (the membership's `muted_until`, the standing
    /// record, `member_muted`).
    async fn mute(&self, member: Uuid, duration_ms: i64, reason: &str) -> ServiceResult<Done> {
        let until = now_ms() + duration_ms.clamp(1, super::validate::MAX_MUTE_MS);
        let (_gate, txn, context) = self.begin().await?;
        plain_member(&txn, self.context_id, member).await?;
        let event = contexts::store_mute(&txn, &context, member, Some(until)).await?;
        let entry = self.entry(
            "mute",
            Some(member),
            Some(with_reason(format!("until {}", rfc3339(until)), reason)),
        );
        self.finish(txn, entry, vec![event]).await
    }

    /// `kick_member`: a channel kick or a group removal, with key rotation
    /// (`member_kicked`, `key_rotated`).
    async fn kick(&self, member: Uuid, reason: &str) -> ServiceResult<Done> {
        let (_gate, txn, context) = self.begin().await?;
        let row = plain_member(&txn, self.context_id, member).await?;
        let mut events = Vec::new();
        contexts::depart(
            self.state,
            &txn,
            &context,
            &row,
            DepartureReason::Removed,
            now_ms(),
            &mut events,
        )
        .await?;
        let action = match self.kind {
            Kind::Channel => "kick",
            Kind::Group => "remove",
        };
        let entry = self.entry(action, Some(member), non_empty(reason));
        self.finish(txn, entry, events).await
    }

    /// `delete_message`: a message of this context, as a moderator deleting it; its author
    /// must be a plain member (or have left).
    async fn delete_message(&self, message_id: Uuid, reason: &str) -> ServiceResult<Done> {
        let (_gate, txn, context) = self.begin().await?;
        let message = context_message::Entity::find_by_id(message_id)
            .filter(context_message::Column::ContextId.eq(self.context_id))
            .one(&txn)
            .await?
            .ok_or_else(|| ServiceError::not_found("Message not found"))?;
        below_plugin(&txn, self.context_id, message.sender_id).await?;
        let mut events = Vec::new();
        remove_messages(&txn, self.kind, &context, &[message_id], &mut events).await?;
        let entry = self.entry("message_delete", Some(message.sender_id), non_empty(reason));
        self.finish(txn, entry, events).await
    }

    /// `purge_member_messages`: the member's newest messages here, at most 200 and 24 h
    /// back; one `message_deleted` each, one audit line with the count. The member must be
    /// a plain member (or have left: its messages stay behind it).
    async fn purge(&self, member: Uuid, within_ms: i64, reason: &str) -> ServiceResult<Done> {
        let since = now_ms() - within_ms.clamp(1, PURGE_MAX_MS);
        let (_gate, txn, context) = self.begin().await?;
        below_plugin(&txn, self.context_id, member).await?;
        let ids: Vec<Uuid> = context_message::Entity::find()
            .select_only()
            .column(context_message::Column::Id)
            .filter(context_message::Column::ContextId.eq(self.context_id))
            .filter(context_message::Column::SenderId.eq(member))
            .filter(context_message::Column::CreatedAt.gte(since))
            .order_by_desc(context_message::Column::Id)
            .limit(PURGE_MAX_MESSAGES)
            .into_tuple()
            .all(&txn)
            .await?;
        let mut events = Vec::new();
        let count = remove_messages(&txn, self.kind, &context, &ids, &mut events).await?;
        let noun = if count == 1 { "message" } else { "messages" };
        let entry = self.entry(
            "purge",
            Some(member),
            Some(with_reason(format!("{count} {noun} deleted"), reason)),
        );
        self.finish(txn, entry, events).await
    }

    /// `lock_context`: joins, invite redemptions and additions by non-owners are refused
    /// until then (at most 24 h). A lock already running longer is kept.
    async fn lock(&self, until_ms: i64, reason: &str) -> ServiceResult<Done> {
        let now = now_ms();
        let until = until_ms.min(now + LOCK_MAX_MS);
        if until <= now {
            return Err(ServiceError::validation("The lock's end has passed"));
        }
        let (_gate, txn, mut context) = self.begin().await?;
        // A lock already running longer is kept, with its own reason.
        match context.locked_until.filter(|current| *current > until) {
            Some(_) => {}
            None => {
                context.locked_until = Some(until);
                context.lock_reason = non_empty(reason);
            }
        }
        let until = context.locked_until.unwrap_or(until);
        context::Entity::update_many()
            .col_expr(context::Column::LockedUntil, context.locked_until.into())
            .col_expr(
                context::Column::LockReason,
                context.lock_reason.clone().into(),
            )
            .filter(context::Column::Id.eq(self.context_id))
            .exec(&txn)
            .await?;
        let entry = self.entry(
            "lock",
            None,
            Some(with_reason(format!("until {}", rfc3339(until)), reason)),
        );
        self.finish(txn, entry, vec![restrictions_event(&context, now)])
            .await
    }

    /// `set_slow_mode`: members below moderator send one message per `seconds` until
    /// `until_ms` (at most 24 h); 0 seconds lifts it.
    async fn slow_mode(&self, seconds: i64, until_ms: i64) -> ServiceResult<Done> {
        let now = now_ms();
        let setting = if seconds <= 0 {
            None
        } else {
            let until = until_ms.min(now + SLOW_MODE_MAX_MS);
            if until <= now {
                return Err(ServiceError::validation("The slow mode's end has passed"));
            }
            Some((seconds.min(SLOW_MODE_MAX_SECS) as i32, until))
        };
        let (_gate, txn, mut context) = self.begin().await?;
        context.slow_mode_secs = setting.map(|(secs, _)| secs);
        context.slow_mode_until = setting.map(|(_, until)| until);
        context::Entity::update_many()
            .col_expr(context::Column::SlowModeSecs, context.slow_mode_secs.into())
            .col_expr(
                context::Column::SlowModeUntil,
                context.slow_mode_until.into(),
            )
            .filter(context::Column::Id.eq(self.context_id))
            .exec(&txn)
            .await?;
        let reason = match setting {
            Some((secs, until)) => format!("{secs} s between messages until {}", rfc3339(until)),
            None => "lifted".to_owned(),
        };
        let entry = self.entry("slow_mode", None, Some(reason));
        self.finish(txn, entry, vec![restrictions_event(&context, now)])
            .await
    }

    /// `revoke_invite`: deletes the invite whose id (hex SHA-256 of its token) is given,
    /// in this channel only.
    async fn revoke_invite(&self, invite_id: &str, reason: &str) -> ServiceResult<Done> {
        let not_found = || ServiceError::not_found("Invite not found in this channel");
        if self.kind != Kind::Channel {
            return Err(ServiceError::validation("Only channels have invites"));
        }
        let hash = hex::decode(invite_id.trim())
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or_else(not_found)?;
        let (_gate, txn, _context) = self.begin().await?;
        let removed = invite::Entity::delete_many()
            .filter(invite::Column::TokenHash.eq(hash))
            .filter(invite::Column::ChannelId.eq(self.context_id))
            .exec(&txn)
            .await?;
        if removed.rows_affected == 0 {
            return Err(not_found());
        }
        let entry = self.entry("invite_revoke", None, non_empty(reason));
        self.finish(txn, entry, Vec::new()).await
    }

    /// `notify_moderators`: a `moderation_alert` to the context's moderators, admins and
    /// owner, and no one else.
    async fn alert(&self, text: &str, member: Option<Uuid>) -> ServiceResult<Done> {
        let (_gate, txn, context) = self.begin().await?;
        let staff: Vec<Uuid> = context_member::Entity::find()
            .select_only()
            .column(context_member::Column::MemberId)
            .filter(context_member::Column::ContextId.eq(self.context_id))
            .filter(context_member::Column::Role.is_in([
                Role::Moderator.as_str(),
                Role::Admin.as_str(),
                Role::Owner.as_str(),
            ]))
            .into_tuple()
            .all(&txn)
            .await?;
        let event = Event::for_members(
            EventType::ModerationAlert,
            context_type_of(&context),
            self.context_id,
            staff,
            AlertData {
                plugin: self.plugin,
                text,
                member_id: member,
            },
        );
        let entry = self.entry("alert", member, Some(text.to_owned()));
        self.finish(txn, entry, vec![event]).await
    }

    /// `warn_member`: a `moderation_warning` to that member alone (a plain member here).
    async fn warn(&self, member: Uuid, text: &str) -> ServiceResult<Done> {
        let (_gate, txn, context) = self.begin().await?;
        plain_member(&txn, self.context_id, member).await?;
        let event = Event::for_members(
            EventType::ModerationWarning,
            context_type_of(&context),
            self.context_id,
            vec![member],
            WarningData {
                plugin: self.plugin,
                text,
            },
        );
        let entry = self.entry("warn", Some(member), Some(text.to_owned()));
        self.finish(txn, entry, vec![event]).await
    }

    /// Counts one alert or warning of this plugin in this context and says whether it is
    /// within [`NOTES_PER_MINUTE`]. The count lives with the plugins' state in the database
    /// (one atomic upsert, exact across nodes), under a name no plugin can reach: plugin
    /// names come from file names, which hold no `/`. Called before the action's
    /// transaction (SQLite has one writer). Fails closed: a count that cannot be taken
    /// drops the note.
    async fn within_note_cap(&self) -> bool {
        let store = self.state.plugins.state.clone();
        let plugin = if self.plugin.len() <= 200 {
            self.plugin.to_owned()
        } else {
            hex::encode(Sha256::digest(self.plugin.as_bytes()))
        };
        let key = format!("{}/{plugin}", self.context_id);
        let counted = tokio::task::spawn_blocking(move || {
            store.incr("/notes", &key, 1, Some(60_000), now_ms())
        })
        .await;
        match counted {
            Ok(Ok(count)) => count <= NOTES_PER_MINUTE,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "counting a plugin's alerts failed");
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "counting a plugin's alerts failed");
                false
            }
        }
    }
}

/// `{plugin, text, memberId?}`: the data of `moderation_alert`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertData<'a> {
    plugin: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    member_id: Option<Uuid>,
}

/// `{plugin, text}`: the data of `moderation_warning`.
#[derive(Debug, Serialize)]
struct WarningData<'a> {
    plugin: &'a str,
    text: &'a str,
}

/// `reason` unless blank.
fn non_empty(reason: &str) -> Option<String> {
    Some(reason.trim().to_owned()).filter(|r| !r.is_empty())
}

/// `what`, then the plugin's reason where it gave one: `until …: flooding`.
fn with_reason(what: String, reason: &str) -> String {
    match non_empty(reason) {
        Some(reason) => format!("{what}: {reason}"),
        None => what,
    }
}

/// The target of a plugin's action on a member: a member here (404) whose role is
/// `member` (403): plugins act as moderators, who outrank plain members only.
async fn plain_member(
    db: &impl ConnectionTrait,
    context_id: Uuid,
    member: Uuid,
) -> ServiceResult<context_member::Model> {
    let row = contexts::membership(db, context_id, member)
        .await?
        .ok_or_else(|| ServiceError::not_found("Member not found in this context"))?;
    if Role::parse(&row.role) != Role::Member {
        return Err(only_plain_members());
    }
    Ok(row)
}

/// The author of messages a plugin deletes: a plain member, or someone who has left (as
/// when a moderator deletes a departed member's message).
async fn below_plugin(
    db: &impl ConnectionTrait,
    context_id: Uuid,
    member: Uuid,
) -> ServiceResult<()> {
    match contexts::membership(db, context_id, member).await? {
        Some(row) if Role::parse(&row.role) != Role::Member => Err(only_plain_members()),
        _ => Ok(()),
    }
}

fn only_plain_members() -> ServiceError {
    ServiceError::forbidden("A plugin can only act on plain members")
}

/// `{lockedUntil, lockReason, slowModeSeconds, slowModeUntil}`: a context's restrictions
/// as they stand (each `null` when not in force), the data of `restrictions_changed`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Restrictions {
    pub locked_until: Option<String>,
    pub lock_reason: Option<String>,
    pub slow_mode_seconds: Option<i32>,
    pub slow_mode_until: Option<String>,
}

impl Restrictions {
    /// What is in force at `now`.
    pub fn of(context: &context::Model, now: i64) -> Self {
        let locked = context.locked_until.filter(|until| *until > now);
        let slow = match (context.slow_mode_secs, context.slow_mode_until) {
            (Some(secs), Some(until)) if secs > 0 && until > now => Some((secs, until)),
            _ => None,
        };
        Self {
            locked_until: locked.map(rfc3339),
            lock_reason: locked.and(context.lock_reason.clone()),
            slow_mode_seconds: slow.map(|(secs, _)| secs),
            slow_mode_until: slow.map(|(_, until)| rfc3339(until)),
        }
    }
}

/// `restrictions_changed` for the members of `context`.
fn restrictions_event(context: &context::Model, now: i64) -> Event {
    Event::for_context(
        EventType::RestrictionsChanged,
        context_type_of(context),
        context.id,
        Restrictions::of(context, now),
    )
}

/// 403 while the context is locked (`lock_context`): joins, invite redemptions and group
/// additions by non-owners check it under the context's lock.
pub fn require_unlocked(context: &context::Model, now: i64) -> ServiceResult<()> {
    match context.locked_until {
        Some(until) if until > now => {
            let noun = if context.kind == Kind::Channel.as_str() {
                "channel"
            } else {
                "group"
            };
            Err(ServiceError::forbidden(format!(
                "The {noun} is locked until {}",
                rfc3339(until)
            )))
        }
        _ => Ok(()),
    }
}

/// 429 `RATE_LIMITED` with `Retry-After` while slow mode is on and the sender, below
/// moderator, sent its last message here less than the slow mode's seconds ago. Checked
/// under the context's lock, so two quick sends cannot both pass.
pub async fn require_slow_mode_ok(
    db: &impl ConnectionTrait,
    access: &Access,
    now: i64,
) -> ServiceResult<()> {
    let context = &access.context;
    let Some(secs) = Restrictions::of(context, now).slow_mode_seconds else {
        return Ok(());
    };
    if access.role >= Role::Moderator {
        return Ok(());
    }
    let last: Option<i64> = context_message::Entity::find()
        .select_only()
        .column(context_message::Column::CreatedAt)
        .filter(context_message::Column::ContextId.eq(context.id))
        .filter(context_message::Column::SenderId.eq(access.membership.member_id))
        .order_by_desc(context_message::Column::CreatedAt)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    slow_mode_wait(secs, last, now)
}

/// Slow mode's answer to a member whose last message was at `last`: 429 with the seconds
/// left until the next may go, or fine.
pub fn slow_mode_wait(secs: i32, last: Option<i64>, now: i64) -> ServiceResult<()> {
    let next = last.map(|last| last + i64::from(secs) * 1000);
    match next {
        Some(next) if next > now => Err(ServiceError::RateLimited {
            message: format!("Slow mode is on: one message every {secs} s"),
            retry_after_secs: u64::try_from((next - now + 999) / 1000).unwrap_or(1).max(1),
        }),
        _ => Ok(()),
    }
}

/// `{"unlocked": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unlocked {
    pub unlocked: bool,
}

/// Lifts a lock (owner only; others 403, an invisible channel's non-members 404). Audited
/// as `lock` with reason `lifted` and announced with `restrictions_changed`; lifting a
/// lock that is not in force changes nothing and records nothing.
pub async fn unlock(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    id: Uuid,
) -> ServiceResult<Unlocked> {
    let now = now_ms();
    let (_gate, txn) = contexts::begin(state, id).await?;
    let context = lock_context(&txn, kind, id).await?;
    let access = access_to(&txn, context, actor.member_id).await?;
    if access.role != Role::Owner {
        return Err(ServiceError::forbidden("Only the owner can lift the lock"));
    }
    let mut context = access.context;
    if context.locked_until.is_none_or(|until| until <= now) {
        return Ok(Unlocked { unlocked: true });
    }
    context.locked_until = None;
    context.lock_reason = None;
    context::Entity::update_many()
        .col_expr(context::Column::LockedUntil, None::<i64>.into())
        .col_expr(context::Column::LockReason, None::<String>.into())
        .filter(context::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    audit::record_entries(
        &txn,
        vec![Entry {
            kind,
            context_id: id,
            action: "lock",
            actor: Some(actor.member_id),
            target: None,
            outcome: "allowed",
            reason: Some("lifted".to_owned()),
            plugin: None,
        }],
    )
    .await?;
    outbox::record(&txn, vec![restrictions_event(&context, now)]).await?;
    outbox::commit(state, txn).await?;
    Ok(Unlocked { unlocked: true })
}

/// The audit log's `action` for a plugin action in a context: removing a member from a
/// group is `remove`, as when a person does it.
pub fn audit_action(kind: Kind, action: &PlannedAction) -> &'static str {
    match (kind, action) {
        (Kind::Group, PlannedAction::KickMember { .. }) => "remove",
        _ => action.audit_action(),
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
