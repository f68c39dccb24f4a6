//! What groups and channels share ("contexts"): access checks, membership changes with
//! key rotation, mutes. Messages live in [`messages`]. Group- and channel-specific rules
//! call into these functions, so both follow one set of rules.

pub mod messages;

use entity::{context, context_member, context_mute};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::hooks::{self, Scope};
use super::keys;
use super::roles::{Permission, Role, may_assign};
use super::{Actor, validate};
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType, outbox};
use crate::plugins::Hook;
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// Which kind of context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Group,
    Channel,
}

impl Kind {
    /// The stored name (also `contextType` in events).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::Channel => "channel",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Group => "Group",
            Kind::Channel => "Channel",
        }
    }

    /// 404 for this kind.
    pub fn not_found(self) -> ServiceError {
        ServiceError::not_found(format!("{} not found", self.noun()))
    }
}

/// The event context type of a stored context.
pub fn context_type_of(context: &context::Model) -> ContextType {
    if context.kind == Kind::Channel.as_str() {
        ContextType::Channel
    } else {
        ContextType::Group
    }
}

/// `{memberId}`: the data of membership events.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRef {
    pub member_id: Uuid,
}

/// `{epoch}`: the data of `key_rotated`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct EpochRef {
    pub epoch: i32,
}

/// Why a member goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepartureReason {
    /// It left by itself (`member_left`).
    Left,
    /// It was removed or kicked (`member_kicked`).
    Removed,
}

/// A member of a context: the context, the member's row and role.
#[derive(Clone, Debug)]
pub struct Access {
    pub context: context::Model,
    pub membership: context_member::Model,
    pub role: Role,
}

impl Access {
    /// 403 unless the member's role holds `permission`.
    pub fn require(&self, permission: Permission) -> ServiceResult<()> {
        if self.role.can(permission) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "Missing permission: {}",
                permission.name()
            )))
        }
    }

    /// 403 unless the member may post here: the one rule of [`crate::service::posting`]
    /// (send permission, not muted) that send, edit, react and typing share.
    pub fn require_may_post(&self, now: i64) -> ServiceResult<()> {
        super::posting::in_context(&self.membership, now)
    }
}

/// A member as listed in group and channel metadata.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(complex)]
pub struct MemberEntry {
    pub member_id: Uuid,
    pub role: Role,
    pub joined_at: String,
    /// Set while the member is muted.
    pub muted_until: Option<String>,
}

impl MemberEntry {
    pub fn from_row(row: &context_member::Model, now: i64) -> Self {
        Self {
            member_id: row.member_id,
            role: Role::parse(&row.role),
            joined_at: rfc3339(row.joined_at),
            muted_until: row.muted_until.filter(|u| *u > now).map(rfc3339),
        }
    }
}

/// A context of the given kind, or that kind's 404.
pub async fn find_context(
    db: &impl ConnectionTrait,
    kind: Kind,
    id: Uuid,
) -> ServiceResult<context::Model> {
    context::Entity::find_by_id(id)
        .filter(context::Column::Kind.eq(kind.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| kind.not_found())
}

/// Opens the write transaction for a change to one context (or conversation), once that context's gate is
/// free (see [`crate::service::gates`]): waiters hold no pooled connection, and a wait past
/// `lock_wait` answers 503. Keep the gate until the transaction has committed.
pub async fn begin(
    state: &AppState,
    context_id: Uuid,
) -> ServiceResult<(super::gates::Gate, sea_orm::DatabaseTransaction)> {
    let gate = state
        .gates
        .enter(context_id, state.config.lock_wait)
        .await?;
    let txn = state.db.write.begin().await?;
    Ok((gate, txn))
}

/// Reads a context inside a transaction, holding its row lock on PostgreSQL (SQLite has
/// one writer, so the transaction alone serialises). Every membership change takes this
/// lock first, so concurrent changes to one context apply one after another.
pub async fn lock_context(
    txn: &impl ConnectionTrait,
    kind: Kind,
    id: Uuid,
) -> ServiceResult<context::Model> {
    let mut query = context::Entity::find_by_id(id).filter(context::Column::Kind.eq(kind.as_str()));
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_exclusive();
    }
    query.one(txn).await?.ok_or_else(|| kind.not_found())
}

/// A member's row in a context, if it is a member.
pub async fn membership(
    db: &impl ConnectionTrait,
    context_id: Uuid,
    member_id: Uuid,
) -> ServiceResult<Option<context_member::Model>> {
    Ok(context_member::Entity::find_by_id((context_id, member_id))
        .one(db)
        .await?)
}

/// What a non-member is told: 404 for an invisible channel (it does not exist for them),
/// otherwise 403.
pub fn non_member_error(context: &context::Model) -> ServiceError {
    let kind = if context.kind == Kind::Group.as_str() {
        Kind::Group
    } else {
        Kind::Channel
    };
    outsider_error(kind, context.visibility.as_deref())
}

/// [`non_member_error`] from a context's kind and visibility.
pub fn outsider_error(kind: Kind, visibility: Option<&str>) -> ServiceError {
    if kind == Kind::Channel && visibility == Some("invisible") {
        return Kind::Channel.not_found();
    }
    let noun = match kind {
        Kind::Group => "group",
        Kind::Channel => "channel",
    };
    ServiceError::forbidden(format!("Not a {noun} member"))
}

/// The actor's access to a context: 404 when it does not exist, 403 (or 404 for an
/// invisible channel) when the actor is not a member.
pub async fn require_member(
    db: &impl ConnectionTrait,
    kind: Kind,
    id: Uuid,
    actor: &Actor,
) -> ServiceResult<Access> {
    let context = find_context(db, kind, id).await?;
    access_to(db, context, actor.member_id).await
}

/// A member's access for reads (history, search), from the gate's cache when it holds it
/// (see [`super::gates`]), else from the database, then cached. Errors are those of
/// [`require_member`] and are never cached.
pub async fn read_access(
    state: &AppState,
    kind: Kind,
    id: Uuid,
    actor: &Actor,
) -> ServiceResult<super::gates::ReadAccess> {
    let snapshot = match state.gates.cached(id, actor.member_id) {
        Ok(hit) if hit.kind == kind.as_str() => return Ok(hit),
        Ok(_) => return Err(kind.not_found()),
        Err(snapshot) => snapshot,
    };
    let access = require_member(&state.db.read, kind, id, actor).await?;
    let read = super::gates::ReadAccess {
        kind: access.context.kind,
        membership: access.membership,
    };
    state
        .gates
        .remember(id, actor.member_id, snapshot, read.clone());
    Ok(read)
}

/// Like [`require_member`] for a context already read (inside a transaction, say).
pub async fn access_to(
    db: &impl ConnectionTrait,
    context: context::Model,
    member_id: Uuid,
) -> ServiceResult<Access> {
    match membership(db, context.id, member_id).await? {
        Some(row) => Ok(Access {
            role: Role::parse(&row.role),
            membership: row,
            context,
        }),
        None => Err(non_member_error(&context)),
    }
}

/// Every member of a context, oldest membership first.
pub async fn members_of(
    db: &impl ConnectionTrait,
    context_id: Uuid,
) -> ServiceResult<Vec<context_member::Model>> {
    Ok(context_member::Entity::find()
        .filter(context_member::Column::ContextId.eq(context_id))
        .order_by_asc(context_member::Column::JoinedAt)
        .order_by_asc(context_member::Column::MemberId)
        .all(db)
        .await?)
}

/// How many members a group or channel view embeds (the first by join time, then id);
/// the rest are read page by page from the members route.
pub const VIEW_MEMBERS: usize = 100;

/// The first `limit` members of a context, oldest membership first (the order of
/// [`members_of`]).
pub async fn first_members(
    db: &impl ConnectionTrait,
    context_id: Uuid,
    limit: usize,
) -> ServiceResult<Vec<context_member::Model>> {
    Ok(context_member::Entity::find()
        .filter(context_member::Column::ContextId.eq(context_id))
        .order_by_asc(context_member::Column::JoinedAt)
        .order_by_asc(context_member::Column::MemberId)
        .limit(u64::try_from(limit).unwrap_or(u64::MAX))
        .all(db)
        .await?)
}

/// How many members a context has.
pub async fn member_count(db: &impl ConnectionTrait, context_id: Uuid) -> ServiceResult<usize> {
    let count = context_member::Entity::find()
        .filter(context_member::Column::ContextId.eq(context_id))
        .count(db)
        .await?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// A page of a context's members, oldest membership first (join time, then member id).
/// The caller has checked that the actor may read the context.
pub async fn member_page(
    state: &AppState,
    kind: Kind,
    context_id: Uuid,
    params: &super::pagination::PageParams,
) -> ServiceResult<super::pagination::Page<MemberEntry>> {
    let scope = format!("{}:{context_id}:members", kind.as_str());
    let request = state.cursors.request(&scope, params, false)?;
    let mut query =
        context_member::Entity::find().filter(context_member::Column::ContextId.eq(context_id));
    if let Some(after) = request.after {
        query = query.filter(
            Condition::any()
                .add(context_member::Column::JoinedAt.gt(after.time))
                .add(
                    Condition::all()
                        .add(context_member::Column::JoinedAt.eq(after.time))
                        .add(context_member::Column::MemberId.gt(after.id)),
                ),
        );
    }
    let rows = query
        .order_by_asc(context_member::Column::JoinedAt)
        .order_by_asc(context_member::Column::MemberId)
        .limit(request.limit + 1)
        .all(&state.db.read)
        .await?;
    let page = state
        .cursors
        .page(&scope, &request, rows, |row| super::pagination::CursorKey {
            time: row.joined_at,
            id: row.member_id,
        });
    let now = now_ms();
    Ok(page.map(|row| MemberEntry::from_row(&row, now)))
}

/// How members are admitted.
#[derive(Clone, Copy, Debug)]
pub struct Admission {
    /// Newcomers are entitled to every epoch (from the first) and see all earlier
    /// messages; otherwise only to epochs made from their join on, and messages issued
    /// after it.
    pub with_history: bool,
    /// Make a new epoch for everyone (a context's first members always get epoch 1).
    pub rotate: bool,
    /// Emit `member_joined` for each newcomer (not when the caller announces the context
    /// itself, as `group_created` does).
    pub announce: bool,
}

/// Adds members to a context inside a locked transaction, as `how` says; returns the new
/// epoch if the key rotated. Events go to `events`.
pub async fn admit(
    state: &AppState,
    txn: &impl ConnectionTrait,
    context: &context::Model,
    newcomers: &[(Uuid, Role)],
    how: Admission,
    now: i64,
    events: &mut Vec<Event>,
) -> ServiceResult<Option<i32>> {
    let Admission {
        with_history,
        rotate,
        announce,
    } = how;
    state.facts.forget(context.id);
    let ids: Vec<Uuid> = newcomers.iter().map(|(id, _)| *id).collect();
    // Without history, newcomers see only messages issued after this point.
    let history_after = if with_history {
        None
    } else {
        context.last_issued_id
    };
    // Entitlement is recorded on the membership; copies are wrapped on first read.
    let key_epoch_from = if with_history {
        1
    } else {
        context.current_epoch + 1
    };
    let mutes = standing_mutes(txn, context, &ids, now).await?;
    for chunk in newcomers.chunks(crate::db::ROWS_PER_STATEMENT) {
        let rows = chunk.iter().map(|(id, role)| context_member::ActiveModel {
            context_id: Set(context.id),
            member_id: Set(*id),
            role: Set(role.as_str().to_owned()),
            joined_at: Set(now),
            muted_until: Set(mutes.get(id).copied()),
            history_after: Set(history_after),
            key_epoch_from: Set(key_epoch_from),
        });
        context_member::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    if announce {
        for id in &ids {
            events.push(
                Event::for_context(
                    EventType::MemberJoined,
                    context_type_of(context),
                    context.id,
                    MemberRef { member_id: *id },
                )
                .joining_after(vec![*id], history_after),
            );
        }
    }
    if rotate || context.current_epoch == 0 {
        let (epoch, _) = keys::new_epoch(state, txn, context, now).await?;
        if context.current_epoch > 0 {
            events.push(Event::for_context(
                EventType::KeyRotated,
                context_type_of(context),
                context.id,
                EpochRef { epoch },
            ));
        }
        return Ok(Some(epoch));
    }
    Ok(None)
}

/// Mutes still running for members (re)joining a context: a mute belongs to the member
/// and the context until it expires, so leaving and joining again does not lift it.
async fn standing_mutes(
    txn: &impl ConnectionTrait,
    context: &context::Model,
    ids: &[Uuid],
    now: i64,
) -> ServiceResult<std::collections::HashMap<Uuid, i64>> {
    if context.current_epoch == 0 || ids.is_empty() {
        // A context being created has no history, so no mutes either.
        return Ok(Default::default());
    }
    let mut mutes = std::collections::HashMap::new();
    for chunk in ids.chunks(crate::db::ROWS_PER_STATEMENT) {
        let rows = context_mute::Entity::find()
            .filter(context_mute::Column::ContextId.eq(context.id))
            .filter(context_mute::Column::MemberId.is_in(chunk.to_vec()))
            .filter(context_mute::Column::MutedUntil.gt(now))
            .all(txn)
            .await?;
        mutes.extend(rows.into_iter().map(|row| (row.member_id, row.muted_until)));
    }
    Ok(mutes)
}

/// Forgets mutes that have run out (janitor upkeep).
pub async fn prune_expired_mutes(state: &AppState) -> ServiceResult<()> {
    context_mute::Entity::delete_many()
        .filter(context_mute::Column::MutedUntil.lte(now_ms()))
        .exec(&state.db.write)
        .await?;
    Ok(())
}

/// What a departure did.
#[derive(Debug)]
pub enum Departure {
    /// The last member left: the context is gone.
    Deleted,
    /// Members remain; keys rotated to `epoch`; `new_owner` when ownership passed on.
    Rotated { epoch: i32, new_owner: Option<Uuid> },
}

/// Removes a member inside a locked transaction: deletes its membership and every key
/// copy wrapped for it, passes ownership on when the owner goes (to the highest-ranked,
/// longest-standing member), deletes the context when nobody is left, and otherwise
/// rotates the key so the departed member cannot read what comes next.
pub async fn depart(
    state: &AppState,
    txn: &impl ConnectionTrait,
    context: &context::Model,
    departing: &context_member::Model,
    reason: DepartureReason,
    now: i64,
    events: &mut Vec<Event>,
) -> ServiceResult<Departure> {
    state.facts.forget(context.id);
    let event_type = match reason {
        DepartureReason::Left => EventType::MemberLeft,
        DepartureReason::Removed => EventType::MemberKicked,
    };
    let ctx_type = context_type_of(context);
    events.push(
        Event::for_context(
            event_type,
            ctx_type,
            context.id,
            MemberRef {
                member_id: departing.member_id,
            },
        )
        .leaving_after(departing.member_id, departing.history_after),
    );
    context_member::Entity::delete_by_id((context.id, departing.member_id))
        .exec(txn)
        .await?;
    keys::revoke_all(txn, context.id, departing.member_id).await?;
    if !has_members(txn, context.id).await? {
        context::Entity::delete_by_id(context.id).exec(txn).await?;
        return Ok(Departure::Deleted);
    }
    let mut new_owner = None;
    if Role::parse(&departing.role) == Role::Owner
        && let Some(heir) = heir(txn, context.id).await?
    {
        set_role(txn, context.id, heir, Role::Owner).await?;
        events.push(Event::for_context(
            EventType::RoleChanged,
            ctx_type,
            context.id,
            RoleAssigned {
                member_id: heir,
                role: Role::Owner,
            },
        ));
        new_owner = Some(heir);
    }
    let (epoch, _) = keys::new_epoch(state, txn, context, now).await?;
    events.push(Event::for_context(
        EventType::KeyRotated,
        ctx_type,
        context.id,
        EpochRef { epoch },
    ));
    Ok(Departure::Rotated { epoch, new_owner })
}

/// Whether a context has any member left.
async fn has_members(txn: &impl ConnectionTrait, context_id: Uuid) -> ServiceResult<bool> {
    Ok(context_member::Entity::find()
        .filter(context_member::Column::ContextId.eq(context_id))
        .limit(1)
        .one(txn)
        .await?
        .is_some())
}

/// Who inherits ownership when the owner goes: nobody while another owner remains,
/// otherwise the highest-ranked member, the longest-standing first (join time, then id).
/// A few indexed single-row reads, whatever the member count.
async fn heir(txn: &impl ConnectionTrait, context_id: Uuid) -> ServiceResult<Option<Uuid>> {
    let first = |role: Option<Role>| {
        let mut query =
            context_member::Entity::find().filter(context_member::Column::ContextId.eq(context_id));
        if let Some(role) = role {
            query = query.filter(context_member::Column::Role.eq(role.as_str()));
        }
        query
            .order_by_asc(context_member::Column::JoinedAt)
            .order_by_asc(context_member::Column::MemberId)
            .limit(1)
            .one(txn)
    };
    if first(Some(Role::Owner)).await?.is_some() {
        return Ok(None);
    }
    for role in [Some(Role::Admin), Some(Role::Moderator), None] {
        if let Some(row) = first(role).await? {
            return Ok(Some(row.member_id));
        }
    }
    Ok(None)
}

/// Stores a member's role.
pub async fn set_role(
    txn: &impl ConnectionTrait,
    context_id: Uuid,
    member_id: Uuid,
    role: Role,
) -> ServiceResult<()> {
    context_member::Entity::update_many()
        .col_expr(context_member::Column::Role, role.as_str().into())
        .filter(context_member::Column::ContextId.eq(context_id))
        .filter(context_member::Column::MemberId.eq(member_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// The target of a moderation action: must be a member (404) whom the actor outranks
/// (403).
pub async fn target_below(
    db: &impl ConnectionTrait,
    access: &Access,
    target: Uuid,
) -> ServiceResult<context_member::Model> {
    let row = membership(db, access.context.id, target)
        .await?
        .ok_or_else(|| ServiceError::not_found("Member not found in this context"))?;
    if !access.role.outranks(Role::parse(&row.role)) {
        return Err(ServiceError::forbidden(
            "You can only act on members ranked below you",
        ));
    }
    Ok(row)
}

/// `POST …/mute/:memberId` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MuteRequest {
    /// 1..=2,419,200,000 (28 days).
    pub duration_ms: i64,
}

/// `{"muted": true, "until": …}`.
#[derive(Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
pub struct Muted {
    pub muted: bool,
    pub until: String,
}

/// `{"unmuted": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unmuted {
    pub unmuted: bool,
}

/// Mutes a member below the actor's rank for a while (persisted, so it survives restarts).
pub async fn mute(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    target: Uuid,
    input: MuteRequest,
) -> ServiceResult<Muted> {
    let duration = validate::mute_duration(input.duration_ms)?;
    let mut params = serde_json::Map::new();
    params.insert("duration_ms".into(), duration.into());
    let scope = Scope::context(kind, context_id, actor.member_id, Some(target));
    let pending = hooks::before(state, Hook::Mute, scope, params).await?;
    let result = async {
        // A plugin may shorten or lengthen the mute; the value must still be a valid one.
        let duration = match pending.verdict.int("duration_ms") {
            Some(changed) => validate::mute_duration(changed).map_err(|err| {
                ServiceError::validation(format!(
                    "A moderation plugin changed durationMs to {changed}: {}",
                    err.public_message()
                ))
            })?,
            None => duration,
        };
        let until = now_ms() + duration;
        set_mute(state, actor, kind, context_id, target, Some(until)).await?;
        Ok(Muted {
            muted: true,
            until: rfc3339(until),
        })
    }
    .await;
    hooks::after(state, pending).await;
    result
}

/// Lifts a mute.
pub async fn unmute(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    target: Uuid,
) -> ServiceResult<Unmuted> {
    let scope = Scope::context(kind, context_id, actor.member_id, Some(target));
    let pending = hooks::before(state, Hook::Unmute, scope, serde_json::Map::new()).await?;
    let result = set_mute(state, actor, kind, context_id, target, None).await;
    hooks::after(state, pending).await;
    result.map(|()| Unmuted { unmuted: true })
}

/// `{memberId, until}`: the data of `member_muted`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MutedData {
    member_id: Uuid,
    until: String,
}

async fn set_mute(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    target: Uuid,
    until: Option<i64>,
) -> ServiceResult<()> {
    let (_gate, txn) = begin(state, context_id).await?;
    let context = lock_context(&txn, kind, context_id).await?;
    let access = access_to(&txn, context, actor.member_id).await?;
    access.require(Permission::MuteMembers)?;
    target_below(&txn, &access, target).await?;
    super::audit::record(
        &txn,
        kind,
        context_id,
        if until.is_some() {
            super::audit::Action::Mute
        } else {
            super::audit::Action::Unmute
        },
        actor.member_id,
        Some(target),
        until.map(|until| format!("until {}", rfc3339(until))),
    )
    .await?;
    let event = store_mute(&txn, &access.context, target, until).await?;
    outbox::record(&txn, vec![event]).await?;
    outbox::commit(state, txn).await
}

/// Stores a mute of `target` until `until` (or lifts it with `None`) inside a locked
/// transaction: the membership row, and the standing record that outlives it (see
/// `standing_mutes`). Returns the `member_muted` or `member_unmuted` event to record.
/// Moderators' mutes and plugins' `mute_member` share it.
pub(crate) async fn store_mute(
    txn: &impl ConnectionTrait,
    context: &context::Model,
    target: Uuid,
    until: Option<i64>,
) -> ServiceResult<Event> {
    let context_id = context.id;
    context_member::Entity::update_many()
        .col_expr(context_member::Column::MutedUntil, until.into())
        .filter(context_member::Column::ContextId.eq(context_id))
        .filter(context_member::Column::MemberId.eq(target))
        .exec(txn)
        .await?;
    match until {
        Some(until) => {
            context_mute::Entity::insert(context_mute::ActiveModel {
                context_id: Set(context_id),
                member_id: Set(target),
                muted_until: Set(until),
            })
            .on_conflict(
                OnConflict::columns([
                    context_mute::Column::ContextId,
                    context_mute::Column::MemberId,
                ])
                .update_column(context_mute::Column::MutedUntil)
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        }
        None => {
            context_mute::Entity::delete_many()
                .filter(context_mute::Column::ContextId.eq(context_id))
                .filter(context_mute::Column::MemberId.eq(target))
                .exec(txn)
                .await?;
        }
    }
    let ctx_type = context_type_of(context);
    Ok(match until {
        Some(until) => Event::for_context(
            EventType::MemberMuted,
            ctx_type,
            context_id,
            MutedData {
                member_id: target,
                until: rfc3339(until),
            },
        ),
        None => Event::for_context(
            EventType::MemberUnmuted,
            ctx_type,
            context_id,
            MemberRef { member_id: target },
        ),
    })
}

/// The epoch keys the actor may read in a context, wrapped for it (copies it does not
/// hold yet are made now; see [`keys::list_for_member`]).
pub async fn keys(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    params: &super::pagination::PageParams,
) -> ServiceResult<super::pagination::Page<keys::KeyView>> {
    let access = require_member(&state.db.read, kind, context_id, actor).await?;
    keys::list_for_member(state, &access, params).await
}

/// `{"left": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Left {
    pub left: bool,
}

/// Leaves a group or channel: an owner hands over to the highest-ranked, longest-standing
/// member; the last member leaving deletes it; otherwise the key rotates.
pub async fn leave_context(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    id: Uuid,
) -> ServiceResult<Departure> {
    require_member(&state.db.read, kind, id, actor).await?;
    let now = now_ms();
    let (_gate, txn) = begin(state, id).await?;
    let context = lock_context(&txn, kind, id).await?;
    let access = access_to(&txn, context, actor.member_id).await?;
    let mut events = Vec::new();
    let outcome = depart(
        state,
        &txn,
        &access.context,
        &access.membership,
        DepartureReason::Left,
        now,
        &mut events,
    )
    .await?;
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(outcome)
}

/// `PUT …/roles/:memberId` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AssignRole {
    pub role: Role,
}

/// `{"memberId", "role"}`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssigned {
    pub member_id: Uuid,
    pub role: Role,
}

/// Assigns a role (shared with channels). Needs `MANAGE_ROLES` and a rank above the
/// target's; nobody hands out a role at or above their own, except the owner handing over
/// `owner`, which makes the old owner an admin.
pub async fn assign_role(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    id: Uuid,
    target: Uuid,
    input: AssignRole,
) -> ServiceResult<RoleAssigned> {
    let mut params = serde_json::Map::new();
    params.insert("role".into(), input.role.as_str().into());
    let scope = Scope::context(kind, id, actor.member_id, Some(target));
    let pending = hooks::before(state, Hook::RoleAssign, scope, params).await?;
    let result = store_role(state, actor, kind, id, target, input).await;
    state.facts.forget(id);
    hooks::after(state, pending).await;
    result
}

async fn store_role(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    id: Uuid,
    target: Uuid,
    input: AssignRole,
) -> ServiceResult<RoleAssigned> {
    let access = require_member(&state.db.read, kind, id, actor).await?;
    access.require(Permission::ManageRoles)?;
    let (_gate, txn) = begin(state, id).await?;
    let context = lock_context(&txn, kind, id).await?;
    let access = access_to(&txn, context, actor.member_id).await?;
    access.require(Permission::ManageRoles)?;
    let row = membership(&txn, id, target)
        .await?
        .ok_or_else(|| ServiceError::not_found("Member not found in this context"))?;
    let current = Role::parse(&row.role);
    if target == actor.member_id {
        return Err(ServiceError::forbidden("You cannot change your own role"));
    }
    if !may_assign(access.role, current, input.role) {
        return Err(ServiceError::forbidden(
            "You can only assign roles below your own to members ranked below you",
        ));
    }
    let ctx_type = context_type_of(&access.context);
    let mut events = Vec::new();
    if input.role == Role::Owner {
        set_role(&txn, id, actor.member_id, Role::Admin).await?;
        events.push(Event::for_context(
            EventType::RoleChanged,
            ctx_type,
            id,
            RoleAssigned {
                member_id: actor.member_id,
                role: Role::Admin,
            },
        ));
    }
    set_role(&txn, id, target, input.role).await?;
    super::audit::record(
        &txn,
        kind,
        id,
        super::audit::Action::RoleChange,
        actor.member_id,
        Some(target),
        Some(format!("role {}", input.role.as_str())),
    )
    .await?;
    events.push(Event::for_context(
        EventType::RoleChanged,
        ctx_type,
        id,
        RoleAssigned {
            member_id: target,
            role: input.role,
        },
    ));
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(RoleAssigned {
        member_id: target,
        role: input.role,
    })
}
