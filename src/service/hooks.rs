//! Where the service layer meets the moderation plugins: building a hook's `ctx` (with the
//! facts plugins get without queries of their own), asking the plugins before an action,
//! and afterwards recording their decisions and running the actions they asked for.
//!
//! Every service function that a hook covers follows one shape, whichever API called it:
//!
//! ```text
//! let pending = hooks::before(state, Hook::Mute, scope, params).await?; // 403 on a deny
//! let result = do_the_action(..., pending.verdict.int("duration_ms")...).await;
//! hooks::after(state, pending).await;  // audit decisions, run actions
//! result
//! ```
//!
//! `before` runs before any gate or row lock is taken, so a slow plugin holds up nothing
//! but its own request.

use entity::dm_message;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::contexts::Kind;
use crate::error::{ServiceError, ServiceResult};
use crate::plugins::{ContextFacts, Hook, HookCall, MemberFacts, QueuedAction, Verdict};
use crate::state::AppState;
use crate::time::now_ms;

/// Where a hook runs and who is involved.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The group or channel (`None` in a conversation or for a profile change).
    pub context: Option<(Kind, Uuid)>,
    /// A conversation's id.
    pub conversation: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub target: Option<Uuid>,
}

impl Scope {
    /// A hook in a group or channel.
    pub fn context(kind: Kind, id: Uuid, actor: Uuid, target: Option<Uuid>) -> Self {
        Self {
            context: Some((kind, id)),
            conversation: None,
            actor: Some(actor),
            target,
        }
    }

    /// A hook in a direct conversation: `target` is the recipient. `conversation` is
    /// `None` for a first message, whose conversation does not exist yet.
    pub fn conversation(conversation: Option<Uuid>, actor: Uuid, recipient: Uuid) -> Self {
        Self {
            context: None,
            conversation: Some(conversation.unwrap_or_else(Uuid::nil)),
            actor: Some(actor),
            target: Some(recipient),
        }
    }
}

/// The plugins' verdict on a hook call, to settle with [`after`].
#[derive(Debug)]
pub struct Pending {
    pub scope: Scope,
    pub hook: Hook,
    pub verdict: Verdict,
}

impl Pending {
    /// Nothing to do (no plugin defines the hook).
    fn none(scope: Scope, hook: Hook) -> Self {
        Self {
            scope,
            hook,
            verdict: Verdict::default(),
        }
    }

    /// Nothing to do, for a caller that skipped [`before`] because no plugin defines
    /// `hook` (and so built no scope).
    pub fn none_for(hook: Hook) -> Self {
        Self::none(
            Scope {
                context: None,
                conversation: None,
                actor: None,
                target: None,
            },
            hook,
        )
    }
}

/// Asks the plugins about an action before it happens. A deny is recorded, its actions
/// run, and it comes back as 403 `FORBIDDEN` with the reason and `details.plugin`.
/// `params` are the request's fields in snake_case.
pub async fn before(
    state: &AppState,
    hook: Hook,
    scope: Scope,
    params: Map<String, Value>,
) -> ServiceResult<Pending> {
    if !state.plugins.wants(hook) {
        return Ok(Pending::none(scope, hook));
    }
    let call = build_call(state, hook, &scope, params).await?;
    if let Some(refusal) = outsider_refusal(&call, &scope) {
        return Err(refusal);
    }
    let verdict = state.plugins.decide(call).await;
    let pending = Pending {
        scope,
        hook,
        verdict,
    };
    if let Some(denial) = pending.verdict.denied.clone() {
        after(state, pending).await;
        let mut details = Map::new();
        details.insert("plugin".into(), Value::String(denial.plugin));
        return Err(ServiceError::Forbidden {
            message: denial.reason,
            details: Some(details),
        });
    }
    Ok(pending)
}

/// `on_message` for a send or an edit: [`before`] with the params the server parses out of
/// the text (`kind`, `content`, `message_id` on an edit, `links`, `mentions`; see
/// [`super::message_facts`]), parsed only when some plugin defines `on_message`.
pub async fn before_message(
    state: &AppState,
    scope: Scope,
    kind: &str,
    content: &str,
    message_id: Option<Uuid>,
) -> ServiceResult<Pending> {
    if !state.plugins.wants(Hook::Message) {
        return Ok(Pending::none(scope, Hook::Message));
    }
    let params = super::message_facts::message_params(kind, content, message_id);
    before(state, Hook::Message, scope, params).await
}

/// Settles several pending verdicts (see [`after`]), in order.
pub async fn after_all(state: &AppState, pendings: Vec<Pending>) {
    for pending in pendings {
        after(state, pending).await;
    }
}

/// What the action itself would answer someone outside the context, so that no plugin is
/// asked (and no plugin's 403 reveals an invisible channel) on behalf of a member who may
/// not act there: the actor must be a member, except when it is joining (a public channel,
/// or with an invite) or redeeming an invite.
fn outsider_refusal(call: &HookCall, scope: &Scope) -> Option<ServiceError> {
    let (kind, _) = scope.context?;
    let context = call.context.as_ref()?;
    let is_member = call.actor.as_ref().is_some_and(|a| a.role.is_some());
    if is_member || scope.actor.is_none() {
        return None;
    }
    match call.hook {
        Hook::InviteRedeem => None,
        Hook::Join if call.params.contains_key("invite_id") => None,
        Hook::Join if scope.actor == scope.target && kind == Kind::Channel => {
            let visibility = super::channels::Visibility::parse(context.visibility.as_deref());
            (visibility != super::channels::Visibility::Public)
                .then(|| super::channels::join_refusal(visibility))
        }
        _ => Some(super::contexts::outsider_error(
            kind,
            context.visibility.as_deref(),
        )),
    }
}

/// After the hook's own action has committed or been refused: records the plugins'
/// decisions in the audit log and runs the actions they asked for. Never fails the
/// request: problems are logged.
pub async fn after(state: &AppState, pending: Pending) {
    let Pending {
        scope,
        hook,
        verdict,
    } = pending;
    if verdict.decisions.is_empty() && verdict.actions.is_empty() {
        return;
    }
    if let Err(err) = record_decisions(state, &scope, hook, &verdict).await {
        tracing::warn!(error = %err, "recording plugin decisions failed");
    }
    if !verdict.actions.is_empty() {
        super::moderation::run_actions(state, &scope, verdict.actions).await;
    }
}

/// `on_event`: runs the plugins' `on_event` on one committed `communication:*` event
/// (never one a plugin's action made). Decisions mean nothing here; actions run as usual.
pub async fn on_event(state: &AppState, event: &crate::events::Event) -> ServiceResult<()> {
    use crate::events::ContextType;
    if !state.plugins.wants(Hook::Event) || event.from_plugin {
        return Ok(());
    }
    if !runs_on_event(event) {
        return Ok(());
    }
    let kind = match event.context_type {
        ContextType::Group => Kind::Group,
        _ => Kind::Channel,
    };
    // The member the event is about: `memberId` (membership, roles, mutes, reactions) or
    // a message's `senderId`.
    let member = ["memberId", "senderId"]
        .iter()
        .find_map(|key| event.data.get(*key).and_then(Value::as_str))
        .and_then(|id| Uuid::parse_str(id).ok());
    let scope = Scope::context(kind, event.context_id, member.unwrap_or_default(), member);
    let scope = Scope {
        actor: member,
        ..scope
    };
    let mut params = Map::new();
    params.insert(
        "type".into(),
        Value::String(event.event_type.as_str().to_owned()),
    );
    params.insert("data".into(), event.data.clone());
    params.insert("seq".into(), Value::from(event.seq));
    let call = build_call(state, Hook::Event, &scope, params).await?;
    let verdict = state.plugins.decide(call).await;
    after(
        state,
        Pending {
            scope,
            hook: Hook::Event,
            verdict,
        },
    )
    .await;
    Ok(())
}

/// Whether `on_event` runs on this event: every committed `communication:*` event of a
/// group or channel, except those a plugin's action made (plugins never call each other
/// in a loop) and typing indicators. Typing is left out because it is chatter, not
/// something moderation acts on, and it comes at the rate of keystrokes: each would cost
/// a `ctx` (several queries) and a script run. Presence (context `member`) and direct
/// conversations have no group or channel whose plugins' settings and actions could
/// apply, so they are left out too.
pub fn runs_on_event(event: &crate::events::Event) -> bool {
    use crate::events::{ContextType, EventType};
    !event.from_plugin
        && matches!(
            event.context_type,
            ContextType::Group | ContextType::Channel
        )
        && !matches!(
            event.event_type,
            EventType::TypingStart | EventType::TypingStop
        )
}

/// Builds a hook's `ctx` from the database: the facts plugins read without queries.
pub async fn build_call(
    state: &AppState,
    hook: Hook,
    scope: &Scope,
    params: Map<String, Value>,
) -> ServiceResult<HookCall> {
    let db = &state.db.read;
    let now = now_ms();
    let ids: Vec<Uuid> = scope.actor.into_iter().chain(scope.target).collect();
    let mut profiles = state.facts.profiles(db, &ids).await?;
    let mut facts = |id: Uuid| -> Option<MemberFacts> {
        let id = id.to_string();
        let at = profiles.iter().position(|m| m.id == id)?;
        Some(profiles.swap_remove(at))
    };
    let mut actor = scope.actor.and_then(&mut facts);
    let mut target = match (scope.target, scope.actor) {
        (Some(t), Some(a)) if t == a => actor.clone(),
        (Some(t), _) => facts(t),
        _ => None,
    };
    let context =
        if let Some((kind, id)) = scope.context {
            let Some(info) = state
                .facts
                .context(db, id, now)
                .await?
                .filter(|info| info.kind == kind.as_str())
            else {
                return Err(kind.not_found());
            };
            let standings = super::facts::standings(&state.facts, db, id, &ids).await?;
            for (person, standing) in [&mut actor, &mut target].into_iter().zip(
                [scope.actor, scope.target].into_iter().map(|who| {
                    who.and_then(|who| ids.iter().position(|m| *m == who))
                        .map(|at| standings[at].clone())
                }),
            ) {
                if let (Some(person), Some(standing)) = (person, standing) {
                    person.role = standing.role;
                    person.joined_at_ms = standing.joined_at;
                    person.message_count = standing.message_count;
                    person.last_message_at_ms = standing.last_message_at;
                }
            }
            let joins_last_minute = info.joins_last_minute;
            Some(ContextFacts {
                kind: kind.as_str().to_owned(),
                id: id.to_string(),
                name: info.name,
                visibility: info.visibility,
                member_count: info.member_count,
                joins_last_minute,
            })
        } else if let Some(id) = scope.conversation {
            // `Uuid::nil()`: a first message, whose conversation does not exist yet.
            if let Some(person) = actor.as_mut().filter(|_| !id.is_nil()) {
                let sender = scope.actor.unwrap_or_default();
                let (n, last): (i64, Option<i64>) = dm_message::Entity::find()
                    .select_only()
                    .column_as(Expr::col(dm_message::Column::Id).count(), "n")
                    .column_as(Expr::col(dm_message::Column::CreatedAt).max(), "last")
                    .filter(dm_message::Column::ConversationId.eq(id))
                    .filter(dm_message::Column::SenderId.eq(sender))
                    .into_tuple()
                    .one(db)
                    .await?
                    .unwrap_or((0, None));
                person.message_count = n;
                person.last_message_at_ms = last;
            }
            Some(ContextFacts {
                kind: "conversation".to_owned(),
                id: if id.is_nil() {
                    String::new()
                } else {
                    id.to_string()
                },
                name: String::new(),
                visibility: None,
                member_count: 2,
                joins_last_minute: 0,
            })
        } else {
            None
        };
    Ok(HookCall {
        hook,
        actor,
        target,
        context,
        params,
        now_ms: now,
    })
}

/// Writes the plugins' decisions (`denied`, `modified`, `simulated`) and simulated actions
/// to the audit log of the group or channel. Decisions elsewhere (a conversation, a
/// profile change) have no audit log to go to and are logged instead.
async fn record_decisions(
    state: &AppState,
    scope: &Scope,
    hook: Hook,
    verdict: &Verdict,
) -> ServiceResult<()> {
    let Some((kind, context_id)) = scope.context else {
        for queued in verdict.actions.iter().filter(|q| q.simulated) {
            tracing::info!(
                plugin = %queued.plugin,
                hook = hook.function(),
                action = queued.action.audit_action(),
                outcome = "simulated",
                "plugin action"
            );
        }
        for decision in &verdict.decisions {
            tracing::info!(
                plugin = %decision.plugin,
                hook = hook.function(),
                outcome = decision.outcome,
                reason = decision.reason.as_deref().unwrap_or(""),
                "plugin decision"
            );
        }
        return Ok(());
    };
    let mut entries = Vec::new();
    for decision in &verdict.decisions {
        entries.push(super::audit::Entry {
            kind,
            context_id,
            action: decision.action,
            actor: scope.actor,
            target: scope.target,
            outcome: decision.outcome,
            reason: decision.reason.clone(),
            plugin: Some(decision.plugin.clone()),
        });
    }
    for QueuedAction {
        plugin,
        simulated,
        action,
    } in &verdict.actions
    {
        if *simulated {
            entries.push(super::audit::Entry {
                kind,
                context_id,
                action: super::moderation::audit_action(kind, action),
                actor: None,
                target: super::moderation::action_target(action),
                outcome: "simulated",
                reason: super::moderation::action_reason(action),
                plugin: Some(plugin.clone()),
            });
        }
    }
    super::audit::record_entries(&state.db.write, entries).await
}
