//! Groups (reference "Groups"): creation, metadata, membership with key rotation, roles,
//! and promotion of a direct conversation. Messages, reactions, pins and mutes are the
//! shared context functions with [`Kind::Group`].

use std::collections::{HashMap, HashSet};

use entity::{context, context_member, context_message, conversation, dm_message};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::contexts::{self, Kind, Left, MemberEntry, access_to, lock_context, messages};
use super::hooks::{self, Scope};
use super::keys;
use super::pagination::{CursorKey, Page, PageParams};
use super::roles::{Permission, Role};
use super::{Actor, validate};
use crate::crypto;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType, outbox};
use crate::plugins::Hook;
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// Name of a group made by promoting a conversation, when none is given.
pub const PROMOTED_NAME: &str = "Group Chat";
/// Messages a promotion reads, re-encrypts and writes at a time.
const PROMOTE_BATCH: u64 = 500;

/// `POST /api/groups` body.
#[derive(Debug, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "CreateGroupInput")]
pub struct CreateGroup {
    /// 1..=100 characters.
    pub name: String,
    /// Members besides the creator (the creator becomes owner).
    pub member_ids: Vec<Uuid>,
}

/// A group as its members see it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Group", complex)]
pub struct GroupView {
    pub id: Uuid,
    pub name: String,
    pub creator_id: Uuid,
    /// The first 100 members by join time (then id); page through all of them with
    /// `GET /api/groups/:id/members` (GraphQL `memberPage`).
    #[graphql(
        complexity = "crate::graphql::cost::list(crate::service::contexts::VIEW_MEMBERS, child_complexity)"
    )]
    pub members: Vec<MemberEntry>,
    /// How many members the group has (`members` holds at most 100 of them).
    pub member_count: usize,
    pub pinned_message_ids: Vec<Uuid>,
    pub created_at: String,
    pub last_message_at: Option<String>,
    /// The key epoch new messages use.
    pub key_epoch: i32,
    /// The conversation this group was promoted from, if any.
    pub promoted_from_conversation: Option<Uuid>,
}

/// `members`: the first [`contexts::VIEW_MEMBERS`] (more are cut off); `member_count`: all.
fn group_view(
    group: &context::Model,
    members: &[context_member::Model],
    member_count: usize,
    pinned: Vec<Uuid>,
    now: i64,
) -> GroupView {
    GroupView {
        id: group.id,
        name: group.name.clone(),
        creator_id: group.creator_id,
        members: members
            .iter()
            .take(contexts::VIEW_MEMBERS)
            .map(|m| MemberEntry::from_row(m, now))
            .collect(),
        member_count,
        pinned_message_ids: pinned,
        created_at: rfc3339(group.created_at),
        last_message_at: group.last_message_at.map(rfc3339),
        key_epoch: group.current_epoch,
        promoted_from_conversation: group.promoted_from,
    }
}

/// All of `ids` must be registered members (404 otherwise).
async fn require_registered(state: &AppState, ids: &[Uuid]) -> ServiceResult<()> {
    if super::members::count_registered(&state.db.read, ids).await? != ids.len() {
        return Err(ServiceError::not_found("Member not found"));
    }
    Ok(())
}

fn dedup(ids: &[Uuid], except: Option<Uuid>) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    ids.iter()
        .copied()
        .filter(|id| Some(*id) != except && seen.insert(*id))
        .collect()
}

/// Inserts a group row (epoch 0; [`contexts::admit`] makes epoch 1).
async fn insert_group(
    txn: &impl sea_orm::ConnectionTrait,
    name: String,
    creator: Uuid,
    promoted_from: Option<Uuid>,
    now: i64,
) -> ServiceResult<context::Model> {
    let model = context::Model {
        id: Uuid::now_v7(),
        kind: Kind::Group.as_str().to_owned(),
        name,
        unique_name: None,
        creator_id: creator,
        created_at: now,
        last_message_at: None,
        activity_at: now,
        last_issued_id: None,
        current_epoch: 0,
        promoted_from,
        topic: None,
        visibility: None,
        history_visible: true,
        locked_until: None,
        lock_reason: None,
        slow_mode_secs: None,
        slow_mode_until: None,
    };
    context::Entity::insert(context::ActiveModel {
        id: Set(model.id),
        kind: Set(model.kind.clone()),
        name: Set(model.name.clone()),
        unique_name: Set(None),
        creator_id: Set(creator),
        created_at: Set(now),
        last_message_at: Set(None),
        activity_at: Set(now),
        last_issued_id: Set(None),
        current_epoch: Set(0),
        promoted_from: Set(promoted_from),
        topic: Set(None),
        visibility: Set(None),
        history_visible: Set(true),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    Ok(model)
}

/// Creates a group; the creator is its owner, everyone gets epoch 1's key.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    input: CreateGroup,
) -> ServiceResult<GroupView> {
    let name = validate::group_name(&input.name)?;
    let others = dedup(&input.member_ids, Some(actor.member_id));
    require_registered(state, &others).await?;
    let now = now_ms();
    let txn = state.db.write.begin().await?;
    let group = insert_group(&txn, name, actor.member_id, None, now).await?;
    let mut newcomers = vec![(actor.member_id, Role::Owner)];
    newcomers.extend(others.iter().map(|id| (*id, Role::Member)));
    let mut events = Vec::new();
    contexts::admit(
        state,
        &txn,
        &group,
        &newcomers,
        contexts::Admission {
            with_history: false,
            rotate: true,
            announce: false,
        },
        now,
        &mut events,
    )
    .await?;
    let view = view_in(&txn, group.id).await?;
    events.push(created_event(
        &view,
        newcomers.iter().map(|(id, _)| *id).collect(),
    ));
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(view)
}

/// `group_created`, which also makes every initial member (`members`: all of them, not
/// only the view's first 100) a subscriber of the group.
fn created_event(view: &GroupView, members: Vec<Uuid>) -> Event {
    Event::for_context(EventType::GroupCreated, ContextType::Group, view.id, view).joining(members)
}

async fn view_in(db: &impl sea_orm::ConnectionTrait, id: Uuid) -> ServiceResult<GroupView> {
    let group = contexts::find_context(db, Kind::Group, id).await?;
    let members = contexts::first_members(db, id, contexts::VIEW_MEMBERS).await?;
    let count = contexts::member_count(db, id).await?;
    let pinned = messages::pinned_ids(db, id).await?;
    Ok(group_view(&group, &members, count, pinned, now_ms()))
}

/// A group's metadata, for its members.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<GroupView> {
    contexts::require_member(&state.db.read, Kind::Group, id, actor).await?;
    view_in(&state.db.read, id).await
}

/// A page of a group's members, oldest membership first (join time, then member id):
/// members only, others 403.
pub async fn members(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    params: &PageParams,
) -> ServiceResult<Page<MemberEntry>> {
    contexts::require_member(&state.db.read, Kind::Group, id, actor).await?;
    contexts::member_page(state, Kind::Group, id, params).await
}

/// The actor's groups, newest activity first.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    params: &PageParams,
) -> ServiceResult<Page<GroupView>> {
    let scope = format!("groups:{}", actor.member_id);
    let request = state.cursors.request(&scope, params, false)?;
    let mine = Query::select()
        .column(context_member::Column::ContextId)
        .from(context_member::Entity)
        .and_where(context_member::Column::MemberId.eq(actor.member_id))
        .to_owned();
    let mut query = context::Entity::find()
        .filter(context::Column::Kind.eq(Kind::Group.as_str()))
        .filter(context::Column::Id.in_subquery(mine));
    if let Some(after) = request.after {
        query = query.filter(
            Condition::any()
                .add(context::Column::ActivityAt.lt(after.time))
                .add(
                    Condition::all()
                        .add(context::Column::ActivityAt.eq(after.time))
                        .add(context::Column::Id.lt(after.id)),
                ),
        );
    }
    let rows = query
        .order_by_desc(context::Column::ActivityAt)
        .order_by_desc(context::Column::Id)
        .limit(request.limit + 1)
        .all(&state.db.read)
        .await?;
    let page = state.cursors.page(&scope, &request, rows, |g| CursorKey {
        time: g.activity_at,
        id: g.id,
    });
    // Member counts and pins of the whole page in two queries; each group's first members
    // (at most VIEW_MEMBERS, read by the (context_id, joined_at) index) in one each.
    use sea_orm::sea_query::ExprTrait;
    let ids: Vec<Uuid> = page.items.iter().map(|g| g.id).collect();
    let mut members: HashMap<Uuid, Vec<context_member::Model>> = HashMap::new();
    let mut counts: HashMap<Uuid, i64> = HashMap::new();
    let mut pins: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    if !ids.is_empty() {
        for id in &ids {
            let first =
                contexts::first_members(&state.db.read, *id, contexts::VIEW_MEMBERS).await?;
            members.insert(*id, first);
        }
        counts = context_member::Entity::find()
            .select_only()
            .column(context_member::Column::ContextId)
            .column_as(Expr::col(context_member::Column::MemberId).count(), "count")
            .filter(context_member::Column::ContextId.is_in(ids.clone()))
            .group_by(context_member::Column::ContextId)
            .into_tuple::<(Uuid, i64)>()
            .all(&state.db.read)
            .await?
            .into_iter()
            .collect();
        for row in context_message::Entity::find()
            .filter(context_message::Column::ContextId.is_in(ids))
            .filter(context_message::Column::PinnedAt.is_not_null())
            .order_by_asc(context_message::Column::PinnedAt)
            .all(&state.db.read)
            .await?
        {
            pins.entry(row.context_id).or_default().push(row.id);
        }
    }
    let now = now_ms();
    Ok(page.map(|g| {
        let m = members.remove(&g.id).unwrap_or_default();
        let count = usize::try_from(counts.get(&g.id).copied().unwrap_or(0)).unwrap_or(0);
        let p = pins.remove(&g.id).unwrap_or_default();
        group_view(&g, &m, count, p, now)
    }))
}

/// `POST /api/groups/:id/members` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddMembers {
    /// At least one member id.
    pub member_ids: Vec<Uuid>,
}

/// `{"added": [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Added {
    pub added: Vec<Uuid>,
}

/// Adds members, all or nothing: unknown ids are 404, anyone already in is 409 and nobody
/// is added. The key rotates; newcomers also get every earlier epoch (group history is
/// visible to all members).
pub async fn add_members(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    input: AddMembers,
) -> ServiceResult<Added> {
    let ids = dedup(&input.member_ids, None);
    if ids.is_empty() {
        return Err(ServiceError::validation(
            "memberIds must be a non-empty array",
        ));
    }
    // One `on_join` per newcomer, the adder as actor; one deny refuses the whole add.
    let mut pendings = Vec::new();
    if state.plugins.wants(Hook::Join) {
        for newcomer in &ids {
            let scope = Scope::context(Kind::Group, id, actor.member_id, Some(*newcomer));
            match hooks::before(state, Hook::Join, scope, serde_json::Map::new()).await {
                Ok(pending) => pendings.push(pending),
                Err(err) => {
                    hooks::after_all(state, pendings).await;
                    return Err(err);
                }
            }
        }
    }
    let result = admit_members(state, actor, id, ids).await;
    hooks::after_all(state, pendings).await;
    result
}

async fn admit_members(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    ids: Vec<Uuid>,
) -> ServiceResult<Added> {
    let access = contexts::require_member(&state.db.read, Kind::Group, id, actor).await?;
    access.require(Permission::ManageMembers)?;
    require_registered(state, &ids).await?;
    let now = now_ms();
    let (_gate, txn) = contexts::begin(state, id).await?;
    let group = lock_context(&txn, Kind::Group, id).await?;
    let access = access_to(&txn, group, actor.member_id).await?;
    access.require(Permission::ManageMembers)?;
    if access.role != Role::Owner {
        super::moderation::require_unlocked(&access.context, now)?;
    }
    let present = context_member::Entity::find()
        .filter(context_member::Column::ContextId.eq(id))
        .filter(context_member::Column::MemberId.is_in(ids.clone()))
        .count(&txn)
        .await?;
    if present > 0 {
        return Err(ServiceError::already_exists("Member already in group"));
    }
    let newcomers: Vec<(Uuid, Role)> = ids.iter().map(|m| (*m, Role::Member)).collect();
    let mut events = Vec::new();
    contexts::admit(
        state,
        &txn,
        &access.context,
        &newcomers,
        contexts::Admission {
            with_history: true,
            rotate: true,
            announce: true,
        },
        now,
        &mut events,
    )
    .await?;
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(Added { added: ids })
}

/// `{"removed": memberId}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RemovedMember {
    pub removed: Uuid,
}

/// Removes a member ranked below the actor; the key rotates and the member's copies go.
pub async fn remove_member(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    target: Uuid,
) -> ServiceResult<RemovedMember> {
    let scope = Scope::context(Kind::Group, id, actor.member_id, Some(target));
    let pending = hooks::before(state, Hook::Remove, scope, serde_json::Map::new()).await?;
    let result = remove_one(state, actor, id, target).await;
    hooks::after(state, pending).await;
    result
}

async fn remove_one(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    target: Uuid,
) -> ServiceResult<RemovedMember> {
    let access = contexts::require_member(&state.db.read, Kind::Group, id, actor).await?;
    access.require(Permission::ManageMembers)?;
    let now = now_ms();
    let (_gate, txn) = contexts::begin(state, id).await?;
    let group = lock_context(&txn, Kind::Group, id).await?;
    let access = access_to(&txn, group, actor.member_id).await?;
    access.require(Permission::ManageMembers)?;
    let row = contexts::target_below(&txn, &access, target).await?;
    super::audit::record(
        &txn,
        Kind::Group,
        id,
        super::audit::Action::Remove,
        actor.member_id,
        Some(target),
        None,
    )
    .await?;
    let mut events = Vec::new();
    contexts::depart(
        state,
        &txn,
        &access.context,
        &row,
        contexts::DepartureReason::Removed,
        now,
        &mut events,
    )
    .await?;
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(RemovedMember { removed: target })
}

/// Leaves a group. An owner hands over to the highest-ranked, longest-standing member;
/// the last member leaving deletes the group.
pub async fn leave(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<Left> {
    contexts::leave_context(state, actor, Kind::Group, id).await?;
    Ok(Left { left: true })
}

/// `POST /api/conversations/:id/promote` body.
#[derive(Debug, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "PromoteConversationInput")]
pub struct PromoteConversation {
    /// Members to add besides the two participants; at least one.
    pub new_member_ids: Vec<Uuid>,
    /// The group's name (default "Group Chat").
    pub name: Option<String>,
}

/// The group a conversation became.
#[derive(Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "PromotedConversation")]
pub struct Promoted {
    pub group_id: Uuid,
    pub name: String,
    pub members: Vec<Uuid>,
    pub promoted_from_conversation: Uuid,
}

/// 409 `ALREADY_EXISTS` naming the group (`details.groupId`) when the conversation was
/// promoted before and that group still exists: promotion happens once, so the history
/// is not copied into a second group with the same message ids.
async fn already_promoted(
    db: &impl sea_orm::ConnectionTrait,
    conversation_id: Uuid,
) -> ServiceResult<()> {
    let existing = context::Entity::find()
        .filter(context::Column::PromotedFrom.eq(conversation_id))
        .one(db)
        .await?;
    match existing {
        None => Ok(()),
        Some(group) => {
            let mut details = serde_json::Map::new();
            details.insert("groupId".into(), group.id.to_string().into());
            Err(ServiceError::AlreadyExists {
                message: format!(
                    "This conversation was already promoted to group {}",
                    group.id
                ),
                details: Some(details),
            })
        }
    }
}

/// Turns a direct conversation into a group: the promoter is owner, the other participant
/// and the new members are members, and the whole history is re-encrypted under the group's
/// first epoch (same message ids and times) so every member can read it. The conversation
/// itself stays as it was.
pub async fn promote(
    state: &AppState,
    actor: &Actor,
    conversation_id: Uuid,
    input: PromoteConversation,
) -> ServiceResult<Promoted> {
    let conv = conversation::Entity::find_by_id(conversation_id)
        .one(&state.db.read)
        .await?
        .ok_or_else(|| ServiceError::not_found("Conversation not found"))?;
    if conv.member_low != actor.member_id && conv.member_high != actor.member_id {
        return Err(ServiceError::forbidden(
            "Not a participant in this conversation",
        ));
    }
    let other = if conv.member_low == actor.member_id {
        conv.member_high
    } else {
        conv.member_low
    };
    let name = validate::group_name(input.name.as_deref().unwrap_or(PROMOTED_NAME))?;
    let added = dedup(&input.new_member_ids, None)
        .into_iter()
        .filter(|id| *id != actor.member_id && *id != other)
        .collect::<Vec<_>>();
    if added.is_empty() {
        return Err(ServiceError::validation(
            "newMemberIds must name at least one member besides the two participants",
        ));
    }
    require_registered(state, &added).await?;
    // Fast path: refuse before taking the lock; checked again under it below.
    already_promoted(&state.db.read, conversation_id).await?;

    let now = now_ms();
    let (_gate, txn) = contexts::begin(state, conversation_id).await?;
    // Concurrent promotions of one conversation queue on its row lock (SQLite: on the one
    // writer); the first makes the group, the others find it and get 409.
    let mut locked = conversation::Entity::find_by_id(conversation_id);
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        locked = locked.lock_exclusive();
    }
    locked
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::not_found("Conversation not found"))?;
    already_promoted(&txn, conversation_id).await?;
    let group = insert_group(
        &txn,
        name.clone(),
        actor.member_id,
        Some(conversation_id),
        now,
    )
    .await?;
    let mut newcomers = vec![(actor.member_id, Role::Owner), (other, Role::Member)];
    newcomers.extend(added.iter().map(|id| (*id, Role::Member)));
    let mut events = Vec::new();
    let epoch = contexts::admit(
        state,
        &txn,
        &group,
        &newcomers,
        contexts::Admission {
            with_history: false,
            rotate: true,
            announce: false,
        },
        now,
        &mut events,
    )
    .await?
    .ok_or_else(|| ServiceError::internal("a new group got no epoch"))?;
    // The epoch was made in this transaction: read its key through the transaction.
    let key = keys::epoch_key(state, &txn, group.id, epoch).await?;
    let last = copy_history(state, &txn, conversation_id, group.id, epoch, key).await?;
    if let Some((last_id, last_at)) = last {
        context::Entity::update_many()
            .col_expr(context::Column::LastMessageAt, Some(last_at).into())
            .col_expr(context::Column::LastIssuedId, Some(last_id).into())
            .col_expr(context::Column::ActivityAt, now.max(last_at).into())
            .filter(context::Column::Id.eq(group.id))
            .exec(&txn)
            .await?;
    }
    let view = view_in(&txn, group.id).await?;
    events.push(created_event(
        &view,
        newcomers.iter().map(|(id, _)| *id).collect(),
    ));
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(Promoted {
        group_id: group.id,
        name,
        members: newcomers.iter().map(|(id, _)| *id).collect(),
        promoted_from_conversation: conversation_id,
    })
}

/// Copies a conversation's history into the group being made from it, in `txn` (which
/// holds the conversation's lock): [`PROMOTE_BATCH`] messages at a time are read in id
/// order, decrypted from the server's copies, sealed under the group's first epoch `key`
/// and written with the same ids and times, so memory stays bounded however long the
/// conversation is, and the promotion stays one atomic write. Returns the newest
/// message's id and time.
async fn copy_history(
    state: &AppState,
    txn: &impl ConnectionTrait,
    conversation_id: Uuid,
    group_id: Uuid,
    epoch: i32,
    key: crypto::EpochKey,
) -> ServiceResult<Option<(Uuid, i64)>> {
    let key = std::sync::Arc::new(key);
    let mut last: Option<(Uuid, i64)> = None;
    loop {
        let mut query = dm_message::Entity::find()
            .filter(dm_message::Column::ConversationId.eq(conversation_id));
        if let Some((after, _)) = last {
            query = query.filter(dm_message::Column::Id.gt(after));
        }
        let batch = query
            .order_by_asc(dm_message::Column::Id)
            .limit(PROMOTE_BATCH)
            .all(txn)
            .await?;
        let Some(newest) = batch.last() else {
            return Ok(last);
        };
        last = Some((newest.id, newest.created_at));
        let full = batch.len() as u64 == PROMOTE_BATCH;
        let secret = *state.server_key.secret_bytes();
        let key = key.clone();
        let rows = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|m| {
                    let plain = crypto::ecies_decrypt(&secret, &m.ciphertext_server)?;
                    let ciphertext = crypto::seal(&key, m.id.to_string().as_bytes(), &plain)?;
                    Ok(context_message::ActiveModel {
                        id: Set(m.id),
                        context_id: Set(group_id),
                        sender_id: Set(m.sender_id),
                        created_at: Set(m.created_at),
                        edited_at: Set(None),
                        key_epoch: Set(epoch),
                        ciphertext: Set(ciphertext),
                        pinned_at: Set(None),
                        pinned_by: Set(None),
                    })
                })
                .collect::<Result<Vec<_>, crypto::CryptoError>>()
        })
        .await
        .map_err(ServiceError::internal)?
        .map_err(ServiceError::internal)?;
        context_message::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
        if !full {
            return Ok(last);
        }
    }
}
