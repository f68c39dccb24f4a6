//! Channels (reference "Channels", CONTRACT.md "Lists and pagination", "Roles and
//! moderation"): visibility, listing, settings, joining, invites, kicks. Messages,
//! reactions, pins, mutes, roles and keys are the shared context functions with
//! [`Kind::Channel`].
//!
//! Who sees what, for a non-member: `public` channels are listed and readable as metadata
//! and may be joined; `private` ones are listed but answer 403 and need an invite; `secret`
//! ones are not listed, answer 403 and need an invite; `invisible` ones do not exist for
//! non-members (404 on every route) and need an invite.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entity::{context, context_member, invite};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::Map;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::contexts::{self, Departure, Kind, MemberEntry, access_to, lock_context, messages};
use super::hooks::{self, Scope};
use super::pagination::{CursorKey, Page, PageParams};
use super::roles::{Permission, Role};
use super::{Actor, audit, unique_violation_or, validate};
use crate::crypto;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType, outbox};
use crate::plugins::Hook;
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

const C: Kind = Kind::Channel;
/// Largest `maxUses` of an invite.
pub const MAX_INVITE_USES: i64 = 100_000;
/// Shortest and longest `expiresInMs` of an invite (1 s .. 365 days).
pub const INVITE_EXPIRY_RANGE: std::ops::RangeInclusive<i64> = 1_000..=31_536_000_000;

/// A channel's visibility.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Listed; anyone may join.
    Public,
    /// Listed; invite only.
    Private,
    /// Not listed; invite only.
    Secret,
    /// Hidden from non-members entirely; invite only.
    Invisible,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Secret => "secret",
            Visibility::Invisible => "invisible",
        }
    }

    pub fn parse(value: Option<&str>) -> Visibility {
        match value {
            Some("public") => Visibility::Public,
            Some("private") => Visibility::Private,
            Some("secret") => Visibility::Secret,
            _ => Visibility::Invisible,
        }
    }
}

/// `POST /api/channels` body.
#[derive(Debug, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "CreateChannelInput")]
pub struct CreateChannel {
    /// 1..=80 of `a-z 0-9 - _`, starting with a letter or digit; unique.
    pub name: String,
    pub topic: Option<String>,
    pub visibility: Visibility,
    /// Whether members who join later read earlier messages (default true).
    pub history_visible_to_new_members: Option<bool>,
}

/// A channel's metadata.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Channel", complex)]
pub struct ChannelView {
    pub id: Uuid,
    pub name: String,
    pub topic: Option<String>,
    pub visibility: Visibility,
    pub creator_id: Uuid,
    /// The first 100 members by join time (then id); page through all of them with
    /// `GET /api/channels/:id/members` (GraphQL `memberPage`).
    #[graphql(
        complexity = "crate::graphql::cost::list(crate::service::contexts::VIEW_MEMBERS, child_complexity)"
    )]
    pub members: Vec<MemberEntry>,
    /// How many members the channel has (`members` holds at most 100 of them).
    pub member_count: usize,
    pub pinned_message_ids: Vec<Uuid>,
    pub history_visible_to_new_members: bool,
    pub created_at: String,
    pub last_message_at: Option<String>,
    /// The key epoch new messages use.
    pub key_epoch: i32,
}

/// A channel in a listing.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSummary {
    pub id: Uuid,
    pub name: String,
    pub topic: Option<String>,
    pub visibility: Visibility,
    pub member_count: u64,
    pub last_message_at: Option<String>,
}

/// `PUT /api/channels/:id` body: every field optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "UpdateChannelInput")]
pub struct UpdateChannel {
    pub name: Option<String>,
    pub topic: Option<String>,
    pub visibility: Option<Visibility>,
    pub history_visible_to_new_members: Option<bool>,
}

/// The settings after an update.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct ChannelSettings {
    pub id: Uuid,
    pub name: String,
    pub topic: Option<String>,
    pub visibility: Visibility,
    pub history_visible_to_new_members: bool,
}

/// `members`: the first [`contexts::VIEW_MEMBERS`] (more are cut off); `member_count`: all.
fn channel_view(
    c: &context::Model,
    members: &[context_member::Model],
    member_count: usize,
    pinned: Vec<Uuid>,
) -> ChannelView {
    let now = now_ms();
    ChannelView {
        id: c.id,
        name: c.name.clone(),
        topic: c.topic.clone(),
        visibility: Visibility::parse(c.visibility.as_deref()),
        creator_id: c.creator_id,
        members: members
            .iter()
            .take(contexts::VIEW_MEMBERS)
            .map(|m| MemberEntry::from_row(m, now))
            .collect(),
        member_count,
        pinned_message_ids: pinned,
        history_visible_to_new_members: c.history_visible,
        created_at: rfc3339(c.created_at),
        last_message_at: c.last_message_at.map(rfc3339),
        key_epoch: c.current_epoch,
    }
}

fn name_taken() -> ServiceError {
    ServiceError::already_exists("Channel name already taken")
}

/// Creates a channel; the creator is its owner and holds epoch 1.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    input: CreateChannel,
) -> ServiceResult<ChannelView> {
    validate::channel_name(&input.name)?;
    if let Some(topic) = &input.topic {
        validate::topic(topic)?;
    }
    let now = now_ms();
    let model = context::Model {
        id: Uuid::now_v7(),
        kind: C.as_str().to_owned(),
        name: input.name.clone(),
        unique_name: Some(input.name.clone()),
        creator_id: actor.member_id,
        created_at: now,
        last_message_at: None,
        activity_at: now,
        last_issued_id: None,
        current_epoch: 0,
        promoted_from: None,
        topic: input.topic.clone(),
        visibility: Some(input.visibility.as_str().to_owned()),
        history_visible: input.history_visible_to_new_members.unwrap_or(true),
        locked_until: None,
        lock_reason: None,
        slow_mode_secs: None,
        slow_mode_until: None,
    };
    let txn = state.db.write.begin().await?;
    context::Entity::insert(context::ActiveModel {
        id: Set(model.id),
        kind: Set(model.kind.clone()),
        name: Set(model.name.clone()),
        unique_name: Set(model.unique_name.clone()),
        creator_id: Set(model.creator_id),
        created_at: Set(now),
        last_message_at: Set(None),
        activity_at: Set(now),
        last_issued_id: Set(None),
        current_epoch: Set(0),
        promoted_from: Set(None),
        topic: Set(model.topic.clone()),
        visibility: Set(model.visibility.clone()),
        history_visible: Set(model.history_visible),
        ..Default::default()
    })
    .exec_without_returning(&txn)
    .await
    .map_err(|err| unique_violation_or(err, name_taken()))?;
    let mut events = Vec::new();
    contexts::admit(
        state,
        &txn,
        &model,
        &[(actor.member_id, Role::Owner)],
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
    view_of(state, model.id).await
}

async fn view_of(state: &AppState, id: Uuid) -> ServiceResult<ChannelView> {
    let channel = contexts::find_context(&state.db.read, C, id).await?;
    let members = contexts::first_members(&state.db.read, id, contexts::VIEW_MEMBERS).await?;
    let count = contexts::member_count(&state.db.read, id).await?;
    let pinned = messages::pinned_ids(&state.db.read, id).await?;
    Ok(channel_view(&channel, &members, count, pinned))
}

/// Who may read a channel's metadata and members: its members, and anyone for a public
/// channel; other non-members 403 (private, secret) or 404 (invisible). Returns the
/// actor's membership.
async fn require_reader(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<Option<context_member::Model>> {
    let channel = contexts::find_context(&state.db.read, C, id).await?;
    let public = Visibility::parse(channel.visibility.as_deref()) == Visibility::Public;
    let mine = contexts::membership(&state.db.read, id, actor.member_id).await?;
    if mine.is_none() && !public {
        return Err(contexts::non_member_error(&channel));
    }
    Ok(mine)
}

/// Channel metadata. Non-members: public 200, private and secret 403, invisible 404.
/// Pinned messages the caller may not see (hidden history) are left out.
pub async fn get(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<ChannelView> {
    let mine = require_reader(state, actor, id).await?;
    let mut view = view_of(state, id).await?;
    match mine {
        Some(member) => {
            if let Some(after) = member.history_after {
                view.pinned_message_ids.retain(|m| *m > after);
            }
        }
        // A visitor of a public channel that hides history would see none of it on joining.
        None if !view.history_visible_to_new_members => view.pinned_message_ids.clear(),
        None => {}
    }
    Ok(view)
}

/// A page of a channel's members, oldest membership first (join time, then member id),
/// with the access of [`get`]: non-members read public channels only (private and secret
/// 403, invisible 404).
pub async fn members(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    params: &PageParams,
) -> ServiceResult<Page<MemberEntry>> {
    require_reader(state, actor, id).await?;
    contexts::member_page(state, C, id, params).await
}

/// Channels the actor can discover: public and private ones, plus secret and invisible
/// ones it belongs to; most recent activity first.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    params: &PageParams,
) -> ServiceResult<Page<ChannelSummary>> {
    let scope = format!("channels:{}", actor.member_id);
    let request = state.cursors.request(&scope, params, false)?;
    let mine = Query::select()
        .column(context_member::Column::ContextId)
        .from(context_member::Entity)
        .and_where(context_member::Column::MemberId.eq(actor.member_id))
        .to_owned();
    let mut query = context::Entity::find()
        .filter(context::Column::Kind.eq(C.as_str()))
        .filter(
            Condition::any()
                .add(
                    context::Column::Visibility
                        .is_in([Visibility::Public.as_str(), Visibility::Private.as_str()]),
                )
                .add(context::Column::Id.in_subquery(mine)),
        );
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
    let page = state.cursors.page(&scope, &request, rows, |c| CursorKey {
        time: c.activity_at,
        id: c.id,
    });
    // Member counts of the whole page in one grouped query.
    let ids: Vec<Uuid> = page.items.iter().map(|c| c.id).collect();
    let counts: HashMap<Uuid, i64> = if ids.is_empty() {
        HashMap::new()
    } else {
        context_member::Entity::find()
            .select_only()
            .column(context_member::Column::ContextId)
            .column_as(Expr::col(context_member::Column::MemberId).count(), "count")
            .filter(context_member::Column::ContextId.is_in(ids))
            .group_by(context_member::Column::ContextId)
            .into_tuple::<(Uuid, i64)>()
            .all(&state.db.read)
            .await?
            .into_iter()
            .collect()
    };
    Ok(page.map(|c| ChannelSummary {
        member_count: u64::try_from(counts.get(&c.id).copied().unwrap_or(0)).unwrap_or(0),
        id: c.id,
        name: c.name,
        topic: c.topic,
        visibility: Visibility::parse(c.visibility.as_deref()),
        last_message_at: c.last_message_at.map(rfc3339),
    }))
}

/// Updates the given settings (owner only: `MANAGE_CHANNEL`). A taken name is 409.
pub async fn update(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    input: UpdateChannel,
) -> ServiceResult<ChannelSettings> {
    state.facts.forget(id);
    if let Some(name) = &input.name {
        validate::channel_name(name)?;
    }
    if let Some(topic) = &input.topic {
        validate::topic(topic)?;
    }
    let changes_something = input.name.is_some()
        || input.topic.is_some()
        || input.visibility.is_some()
        || input.history_visible_to_new_members.is_some();
    let (_gate, txn) = contexts::begin(state, id).await?;
    let channel = lock_context(&txn, C, id).await?;
    let access = access_to(&txn, channel, actor.member_id).await?;
    access.require(Permission::ManageChannel)?;
    let mut update = context::Entity::update_many().filter(context::Column::Id.eq(id));
    let mut channel = access.context;
    if let Some(name) = input.name {
        update = update
            .col_expr(context::Column::Name, name.clone().into())
            .col_expr(context::Column::UniqueName, Some(name.clone()).into());
        channel.name = name;
    }
    if let Some(topic) = input.topic {
        update = update.col_expr(context::Column::Topic, Some(topic.clone()).into());
        channel.topic = Some(topic);
    }
    if let Some(visibility) = input.visibility {
        update = update.col_expr(
            context::Column::Visibility,
            Some(visibility.as_str().to_owned()).into(),
        );
        channel.visibility = Some(visibility.as_str().to_owned());
    }
    if let Some(history) = input.history_visible_to_new_members {
        update = update.col_expr(context::Column::HistoryVisible, history.into());
        channel.history_visible = history;
    }
    update
        .col_expr(context::Column::Kind, C.as_str().into())
        .exec(&txn)
        .await
        .map_err(|err| unique_violation_or(err, name_taken()))?;
    if changes_something {
        audit::record(
            &txn,
            C,
            id,
            audit::Action::SettingsChange,
            actor.member_id,
            None,
            None,
        )
        .await?;
    }
    let settings = ChannelSettings {
        id,
        name: channel.name,
        topic: channel.topic,
        visibility: Visibility::parse(channel.visibility.as_deref()),
        history_visible_to_new_members: channel.history_visible,
    };
    let event = Event::for_context(
        EventType::ChannelUpdated,
        ContextType::Channel,
        id,
        &settings,
    );
    outbox::record(&txn, vec![event]).await?;
    outbox::commit(state, txn).await?;
    Ok(settings)
}

/// `{"deleted": true}`.
pub use messages::Deleted;

/// Deletes a channel with its messages, keys, invites and pins (owner only).
pub async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<Deleted> {
    let (_gate, txn) = contexts::begin(state, id).await?;
    let channel = lock_context(&txn, C, id).await?;
    access_to(&txn, channel, actor.member_id)
        .await?
        .require(Permission::ManageChannel)?;
    // Everyone in it receives the deletion, and nothing of the channel after it.
    let members: Vec<Uuid> = contexts::members_of(&txn, id)
        .await?
        .into_iter()
        .map(|m| m.member_id)
        .collect();
    context::Entity::delete_by_id(id).exec(&txn).await?;
    let event = Event::for_context(
        EventType::ChannelDeleted,
        ContextType::Channel,
        id,
        ChannelRef { channel_id: id },
    )
    .leaving(members);
    outbox::record(&txn, vec![event]).await?;
    outbox::commit(state, txn).await?;
    Ok(Deleted { deleted: true })
}

/// `{channelId}`: the data of `channel_deleted`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChannelRef {
    channel_id: Uuid,
}

/// `{"joined": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Joined {
    pub joined: bool,
}

/// Admits the actor inside a locked transaction: 409 when already a member. Earlier
/// epochs and messages when the channel shows history to newcomers; otherwise the key
/// rotates so the newcomer's key opens nothing sent before it joined.
async fn admit_self(
    state: &AppState,
    txn: &impl sea_orm::ConnectionTrait,
    channel: &context::Model,
    actor: &Actor,
    now: i64,
    events: &mut Vec<Event>,
) -> ServiceResult<()> {
    if contexts::membership(txn, channel.id, actor.member_id)
        .await?
        .is_some()
    {
        return Err(ServiceError::already_exists("Already a member"));
    }
    let with_history = channel.history_visible;
    contexts::admit(
        state,
        txn,
        channel,
        &[(actor.member_id, Role::Member)],
        contexts::Admission {
            with_history,
            rotate: !with_history,
            announce: true,
        },
        now,
        events,
    )
    .await?;
    Ok(())
}

/// What a non-member hears on trying to join a channel that is not public: 404 for an
/// invisible one (it does not exist for them), otherwise 403.
pub fn join_refusal(visibility: Visibility) -> ServiceError {
    if visibility == Visibility::Invisible {
        C.not_found()
    } else {
        ServiceError::forbidden("Join denied: the channel is not public")
    }
}

/// Joins a public channel. Others need an invite (403; invisible ones are 404).
pub async fn join(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<Joined> {
    let scope = Scope::context(C, id, actor.member_id, Some(actor.member_id));
    let pending = hooks::before(state, Hook::Join, scope, Map::new()).await?;
    let result = join_public(state, actor, id).await;
    hooks::after(state, pending).await;
    result
}

async fn join_public(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<Joined> {
    let now = now_ms();
    let (_gate, txn) = contexts::begin(state, id).await?;
    let channel = lock_context(&txn, C, id).await?;
    let visibility = Visibility::parse(channel.visibility.as_deref());
    let member = contexts::membership(&txn, id, actor.member_id)
        .await?
        .is_some();
    if visibility != Visibility::Public && !member {
        return Err(join_refusal(visibility));
    }
    super::moderation::require_unlocked(&channel, now)?;
    let mut events = Vec::new();
    admit_self(state, &txn, &channel, actor, now, &mut events).await?;
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(Joined { joined: true })
}

/// `{"left": true}`.
pub use super::contexts::Left;

/// Leaves a channel; the key rotates (the last member leaving deletes the channel).
pub async fn leave(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<Left> {
    contexts::leave_context(state, actor, C, id).await?;
    Ok(Left { left: true })
}

/// `{"kicked": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Kicked {
    pub kicked: bool,
}

/// Kicks a member ranked below the actor (`KICK_MEMBERS`); the key rotates.
pub async fn kick(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    target: Uuid,
) -> ServiceResult<Kicked> {
    // The API takes no reason for a kick, so `params` is empty.
    let scope = Scope::context(C, id, actor.member_id, Some(target));
    let pending = hooks::before(state, Hook::Kick, scope, Map::new()).await?;
    let result = kick_member(state, actor, id, target).await;
    hooks::after(state, pending).await;
    result
}

async fn kick_member(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    target: Uuid,
) -> ServiceResult<Kicked> {
    let access = contexts::require_member(&state.db.read, C, id, actor).await?;
    access.require(Permission::KickMembers)?;
    let now = now_ms();
    let (_gate, txn) = contexts::begin(state, id).await?;
    let channel = lock_context(&txn, C, id).await?;
    let access = access_to(&txn, channel, actor.member_id).await?;
    access.require(Permission::KickMembers)?;
    let row = contexts::target_below(&txn, &access, target).await?;
    audit::record(
        &txn,
        C,
        id,
        audit::Action::Kick,
        actor.member_id,
        Some(target),
        None,
    )
    .await?;
    let mut events = Vec::new();
    let outcome = contexts::depart(
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
    debug_assert!(matches!(outcome, Departure::Rotated { .. }));
    Ok(Kicked { kicked: true })
}

/// `POST /api/channels/:id/invites` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "CreateInviteInput")]
pub struct CreateInvite {
    /// 1..=100,000; omitted: unlimited.
    pub max_uses: Option<i64>,
    /// 1,000..=31,536,000,000 ms; omitted: never expires.
    pub expires_in_ms: Option<i64>,
}

/// An invite as its creator sees it (the token is shown only here).
#[derive(Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Invite")]
pub struct InviteView {
    /// The invite's id: the lowercase hex SHA-256 of its token (what a moderation
    /// plugin's `revoke_invite` takes).
    pub id: String,
    pub token: String,
    pub channel_id: Uuid,
    pub max_uses: Option<i64>,
    pub uses_remaining: Option<i64>,
    pub expires_at: Option<String>,
    pub created_by: Uuid,
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates an invite (`CREATE_INVITES`): 192 random bits, stored only as a hash.
pub async fn create_invite(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    input: CreateInvite,
) -> ServiceResult<InviteView> {
    check_invite_limits(&input)?;
    let mut params = Map::new();
    params.insert("max_uses".into(), input.max_uses.into());
    params.insert("expires_in_ms".into(), input.expires_in_ms.into());
    let scope = Scope::context(C, id, actor.member_id, None);
    let pending = hooks::before(state, Hook::InviteCreate, scope, params).await?;
    // Plugins may change either limit (`()` for none); the result must still be valid.
    let verdict = &pending.verdict;
    let input = CreateInvite {
        max_uses: verdict.optional_int("max_uses").unwrap_or(input.max_uses),
        expires_in_ms: verdict
            .optional_int("expires_in_ms")
            .unwrap_or(input.expires_in_ms),
    };
    let result = match check_invite_limits(&input) {
        Ok(()) => store_invite(state, actor, id, input).await,
        Err(err) if !verdict.modified.is_empty() => Err(ServiceError::validation(format!(
            "A moderation plugin changed the invite's limits: {}",
            err.public_message()
        ))),
        Err(err) => Err(err),
    };
    hooks::after(state, pending).await;
    result
}

fn check_invite_limits(input: &CreateInvite) -> ServiceResult<()> {
    if let Some(max) = input.max_uses
        && !(1..=MAX_INVITE_USES).contains(&max)
    {
        return Err(ServiceError::validation(
            "maxUses must be between 1 and 100000",
        ));
    }
    if let Some(ms) = input.expires_in_ms
        && !INVITE_EXPIRY_RANGE.contains(&ms)
    {
        return Err(ServiceError::validation(
            "expiresInMs must be between 1000 and 31536000000",
        ));
    }
    Ok(())
}

async fn store_invite(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    input: CreateInvite,
) -> ServiceResult<InviteView> {
    // Checked and written under the channel's lock, so a concurrent deletion (or the
    // creator's removal) either happens first (404/403) or waits for this insert.
    let (_gate, txn) = contexts::begin(state, id).await?;
    let channel = lock_context(&txn, C, id).await?;
    let access = contexts::access_to(&txn, channel, actor.member_id).await?;
    access.require(Permission::CreateInvites)?;
    let now = now_ms();
    let token = URL_SAFE_NO_PAD.encode(crypto::random_bytes::<24>());
    let expires_at = input.expires_in_ms.map(|ms| now + ms);
    let token_hash = hash_token(&token);
    let invite_id = hex::encode(&token_hash);
    invite::Entity::insert(invite::ActiveModel {
        token_hash: Set(token_hash),
        channel_id: Set(id),
        created_by: Set(actor.member_id),
        created_at: Set(now),
        max_uses: Set(input.max_uses.map(|m| m as i32)),
        uses: Set(0),
        expires_at: Set(expires_at),
    })
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        &txn,
        C,
        id,
        audit::Action::InviteCreate,
        actor.member_id,
        None,
        None,
    )
    .await?;
    txn.commit().await?;
    Ok(InviteView {
        id: invite_id,
        token,
        channel_id: id,
        max_uses: input.max_uses,
        uses_remaining: input.max_uses,
        expires_at: expires_at.map(rfc3339),
        created_by: actor.member_id,
    })
}

/// `{"redeemed": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Redeemed {
    pub redeemed: bool,
}

/// Redeems an invite at its own channel's path: 404 for an unknown token or another
/// channel's, 409 for a member, 410 when expired or used up. The use is counted with one
/// conditional `UPDATE`, so concurrent redemptions never exceed `maxUses`, on any number of
/// nodes.
pub async fn redeem(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    token: &str,
) -> ServiceResult<Redeemed> {
    if token.is_empty() || token.len() > 128 {
        return Err(invite_not_found());
    }
    let hash = hash_token(token);
    let pendings = redeem_hooks(state, actor, id, &hash).await?;
    let result = redeem_invite(state, actor, id, hash).await;
    hooks::after_all(state, pendings).await;
    result
}

fn invite_not_found() -> ServiceError {
    ServiceError::not_found("Invite token not found")
}

/// `on_invite_redeem`, then `on_join` (a redemption admits a member), both with the
/// invite's id (the hex SHA-256 of its token) and its creator. The invite is read only
/// when a plugin defines either hook; an unknown one is 404 as in [`redeem_invite`].
async fn redeem_hooks(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    hash: &[u8],
) -> ServiceResult<Vec<hooks::Pending>> {
    if !state.plugins.wants(Hook::InviteRedeem) && !state.plugins.wants(Hook::Join) {
        return Ok(Vec::new());
    }
    let invite = invite::Entity::find_by_id(hash.to_vec())
        .filter(invite::Column::ChannelId.eq(id))
        .one(&state.db.read)
        .await?
        .ok_or_else(invite_not_found)?;
    let mut params = Map::new();
    params.insert("invite_id".into(), hex::encode(hash).into());
    params.insert(
        "invite_creator_id".into(),
        invite.created_by.to_string().into(),
    );
    let scope = Scope::context(C, id, actor.member_id, Some(actor.member_id));
    let redeeming = hooks::before(state, Hook::InviteRedeem, scope.clone(), params.clone()).await?;
    match hooks::before(state, Hook::Join, scope, params).await {
        Ok(joining) => Ok(vec![redeeming, joining]),
        Err(err) => {
            hooks::after(state, redeeming).await;
            Err(err)
        }
    }
}

async fn redeem_invite(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    hash: Vec<u8>,
) -> ServiceResult<Redeemed> {
    let not_found = invite_not_found;
    let now = now_ms();
    let (_gate, txn) = contexts::begin(state, id).await?;
    // A missing channel answers exactly like a wrong token: the path reveals nothing.
    let channel = lock_context(&txn, C, id).await.map_err(|_| not_found())?;
    invite::Entity::find_by_id(hash.clone())
        .filter(invite::Column::ChannelId.eq(id))
        .one(&txn)
        .await?
        .ok_or_else(not_found)?;
    if contexts::membership(&txn, id, actor.member_id)
        .await?
        .is_some()
    {
        return Err(ServiceError::already_exists("Already a member"));
    }
    super::moderation::require_unlocked(&channel, now)?;
    let counted = invite::Entity::update_many()
        .col_expr(invite::Column::Uses, Expr::col(invite::Column::Uses).add(1))
        .filter(invite::Column::TokenHash.eq(hash))
        .filter(
            Condition::any()
                .add(invite::Column::MaxUses.is_null())
                .add(Expr::col(invite::Column::Uses).lt(Expr::col(invite::Column::MaxUses))),
        )
        .filter(
            Condition::any()
                .add(invite::Column::ExpiresAt.is_null())
                .add(invite::Column::ExpiresAt.gt(now)),
        )
        .exec(&txn)
        .await?;
    if counted.rows_affected != 1 {
        return Err(ServiceError::Gone("Invite expired or fully used".into()));
    }
    audit::record(
        &txn,
        C,
        id,
        audit::Action::InviteRedeem,
        actor.member_id,
        Some(actor.member_id),
        None,
    )
    .await?;
    let mut events = Vec::new();
    admit_self(state, &txn, &channel, actor, now, &mut events).await?;
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(Redeemed { redeemed: true })
}
