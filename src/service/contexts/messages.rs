//! Group and channel messages: send, history, edit (with encrypted history), delete,
//! reactions and pins. AES-256-GCM under the context's current key epoch, AAD = the
//! message id (CONTRACT.md "Encryption").

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use entity::{context, context_message, message_edit, reaction};
use sea_orm::sea_query::{Expr, Order, Query, WindowStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Access, Kind, access_to, begin, lock_context, membership, require_member};
use crate::crypto;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType, outbox};
use crate::plugins::Hook;
use crate::service::conversations::MessageRef;
use crate::service::hooks::{self, Scope};
use crate::service::pagination::{CursorKey, Direction, Page, PageParams};
use crate::service::roles::{Permission, Role};
use crate::service::{Actor, keys, unique_violation_or, validate, writer};
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// Body of send and edit.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ContentRequest {
    /// 1..=10,000 characters, not blank.
    pub content: String,
}

/// Body of adding a reaction.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReactionRequest {
    /// 1..=64 bytes, no whitespace.
    pub emoji: String,
}

/// A reaction on a message.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Reaction")]
pub struct ReactionView {
    pub reaction_id: Uuid,
    pub message_id: Uuid,
    pub member_id: Uuid,
    pub emoji: String,
    pub created_at: String,
}

impl From<&reaction::Model> for ReactionView {
    fn from(r: &reaction::Model) -> Self {
        Self {
            reaction_id: r.id,
            message_id: r.message_id,
            member_id: r.member_id,
            emoji: r.emoji.clone(),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// An earlier version of an edited message, still encrypted under its own epoch.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "EditHistoryEntry")]
pub struct EditView {
    /// Base64 `nonce || ciphertext || tag`, AAD = the message id.
    #[graphql(complexity = "crate::graphql::cost::CONTENT")]
    pub content: String,
    pub key_epoch: i32,
    /// When this version was written.
    pub edited_at: String,
}

/// A group or channel message.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Message", complex)]
pub struct MessageView {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<Uuid>,
    pub sender_id: Uuid,
    /// Base64 `nonce (12) || ciphertext || tag (16)`, AES-256-GCM, AAD = the message id.
    #[graphql(complexity = "crate::graphql::cost::CONTENT")]
    pub encrypted_content: String,
    /// The key epoch that opens `encryptedContent` (see the `/keys` route).
    pub key_epoch: i32,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub pinned: bool,
    #[graphql(
        complexity = "crate::graphql::cost::list(crate::graphql::cost::UNPAGED_LIST, child_complexity)"
    )]
    pub reactions: Vec<ReactionView>,
    /// Earlier versions, oldest first: the newest 10 at most.
    #[graphql(
        complexity = "crate::graphql::cost::list(crate::service::contexts::messages::MAX_EDIT_HISTORY, child_complexity)"
    )]
    pub edit_history: Vec<EditView>,
}

/// The event context of a kind.
pub(crate) fn context_type(kind: Kind) -> ContextType {
    match kind {
        Kind::Group => ContextType::Group,
        Kind::Channel => ContextType::Channel,
    }
}

pub(crate) fn view(
    kind: Kind,
    message: &context_message::Model,
    reactions: Vec<ReactionView>,
    edits: Vec<EditView>,
) -> MessageView {
    MessageView {
        id: message.id,
        group_id: (kind == Kind::Group).then_some(message.context_id),
        channel_id: (kind == Kind::Channel).then_some(message.context_id),
        sender_id: message.sender_id,
        encrypted_content: STANDARD.encode(&message.ciphertext),
        key_epoch: message.key_epoch,
        created_at: rfc3339(message.created_at),
        edited_at: message.edited_at.map(rfc3339),
        pinned: message.pinned_at.is_some(),
        reactions,
        edit_history: edits,
    }
}

/// Whether the member may see this message (channels may hide history from newcomers).
fn visible_to(access: &Access, message: &context_message::Model) -> bool {
    access
        .membership
        .history_after
        .is_none_or(|after| message.id > after)
}

/// A message of the context that the member may see, or 404.
async fn visible_message(
    db: &impl ConnectionTrait,
    access: &Access,
    message_id: Uuid,
) -> ServiceResult<context_message::Model> {
    context_message::Entity::find_by_id(message_id)
        .filter(context_message::Column::ContextId.eq(access.context.id))
        .one(db)
        .await?
        .filter(|m| visible_to(access, m))
        .ok_or_else(|| ServiceError::not_found("Message not found"))
}

/// Locks the context inside `txn` and returns the actor's access to it: every check of a
/// write is made under the lock, against state no concurrent change can alter.
async fn locked_access(
    txn: &DatabaseTransaction,
    kind: Kind,
    context_id: Uuid,
    actor: &Actor,
) -> ServiceResult<Access> {
    let context = lock_context(txn, kind, context_id).await?;
    access_to(txn, context, actor.member_id).await
}

/// Sends a message, encrypted under the context's current epoch.
pub async fn send(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    input: ContentRequest,
) -> ServiceResult<MessageView> {
    validate::message_content(&input.content)?;
    let scope = Scope::context(kind, context_id, actor.member_id, None);
    let pending = hooks::before_message(state, scope, "send", &input.content, None).await?;
    let result = match modified_content(&pending, input) {
        Ok(input) => store_new(state, actor, kind, context_id, input).await,
        Err(err) => Err(err),
    };
    hooks::after(state, pending).await;
    result
}

/// The content to store: the request's, or what a plugin changed it to, which must still
/// be valid content.
fn modified_content(
    pending: &hooks::Pending,
    input: ContentRequest,
) -> ServiceResult<ContentRequest> {
    match pending.verdict.string("content") {
        None => Ok(input),
        Some(content) => {
            validate::message_content(content).map_err(|err| {
                ServiceError::validation(format!(
                    "A moderation plugin changed the content: {}",
                    err.public_message()
                ))
            })?;
            Ok(ContentRequest {
                content: content.to_owned(),
            })
        }
    }
}

/// Queues the message for the group-commit writer ([`crate::service::writer`]), which
/// checks membership, permission, mute and slow mode under the context's lock, encrypts
/// under the current epoch and answers once the batch holding it commits.
async fn store_new(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    input: ContentRequest,
) -> ServiceResult<MessageView> {
    let item = writer::Item::Context {
        member_id: actor.member_id,
        kind,
        context_id,
        content: input.content,
    };
    match state.writer.submit(state, item).await? {
        writer::Sent::Context(message) => Ok(message),
        writer::Sent::Direct(_) => Err(ServiceError::internal("a group send stored a DM")),
    }
}

/// Message history, oldest first (or from the newest page with `backward`). Members of a
/// channel that hides history see nothing sent before they joined.
pub async fn history(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    params: &PageParams,
) -> ServiceResult<Page<MessageView>> {
    let access = super::read_access(state, kind, context_id, actor).await?;
    let scope = format!("{}:{context_id}:messages", kind.as_str());
    let request = state.cursors.request(&scope, params, true)?;
    let mut query =
        context_message::Entity::find().filter(context_message::Column::ContextId.eq(context_id));
    if let Some(after) = access.membership.history_after {
        query = query.filter(context_message::Column::Id.gt(after));
    }
    query = match (request.direction, request.after) {
        (Direction::Forward, Some(after)) => query.filter(context_message::Column::Id.gt(after.id)),
        (Direction::Backward, Some(before)) => {
            query.filter(context_message::Column::Id.lt(before.id))
        }
        (_, None) => query,
    };
    query = match request.direction {
        Direction::Forward => query.order_by_asc(context_message::Column::Id),
        Direction::Backward => query.order_by_desc(context_message::Column::Id),
    };
    let rows = query.limit(request.limit + 1).all(&state.db.read).await?;
    let page = state.cursors.page(&scope, &request, rows, |row| CursorKey {
        time: 0,
        id: row.id,
    });
    let ids: Vec<Uuid> = page.items.iter().map(|m| m.id).collect();
    let mut reactions = reactions_of(&state.db.read, &ids).await?;
    // Only edited messages have an edit history: most pages need no query for it.
    let edited: Vec<Uuid> = page
        .items
        .iter()
        .filter(|m| m.edited_at.is_some())
        .map(|m| m.id)
        .collect();
    let mut edits = edits_of(&state.db.read, &edited).await?;
    Ok(page.map(|m| {
        let r = reactions.remove(&m.id).unwrap_or_default();
        let e = edits.remove(&m.id).unwrap_or_default();
        view(kind, &m, r, e)
    }))
}

/// Reactions of several messages in one query, oldest first.
async fn reactions_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> ServiceResult<HashMap<Uuid, Vec<ReactionView>>> {
    let mut out: HashMap<Uuid, Vec<ReactionView>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows = reaction::Entity::find()
        .filter(reaction::Column::MessageId.is_in(ids.to_vec()))
        .order_by_asc(reaction::Column::CreatedAt)
        .order_by_asc(reaction::Column::Id)
        .all(db)
        .await?;
    for row in &rows {
        out.entry(row.message_id).or_default().push(row.into());
    }
    Ok(out)
}

/// Most versions shown in a message's `editHistory` (REST and GraphQL): the newest ones,
/// so that a page of messages cannot carry an unbounded number of edits.
pub const MAX_EDIT_HISTORY: usize = 10;

/// Edit histories of several messages in one query, oldest version first, each cut to its
/// newest [`MAX_EDIT_HISTORY`] versions.
async fn edits_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> ServiceResult<HashMap<Uuid, Vec<EditView>>> {
    let mut out: HashMap<Uuid, Vec<EditView>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    use sea_orm::sea_query::ExprTrait as _;
    // Only the newest versions leave the database: rank each message's edits, newest first.
    let ranked = Query::select()
        .column(message_edit::Column::Id)
        .expr_window_as(
            Expr::cust("ROW_NUMBER()"),
            WindowStatement::partition_by(message_edit::Column::MessageId)
                .order_by(message_edit::Column::Id, Order::Desc)
                .to_owned(),
            "edit_rank",
        )
        .from(message_edit::Entity)
        .and_where(message_edit::Column::MessageId.is_in(ids.to_vec()))
        .to_owned();
    let newest = Query::select()
        .column("id")
        .from_subquery(ranked, "ranked_edits")
        .and_where(Expr::col("edit_rank").lte(MAX_EDIT_HISTORY as i64))
        .to_owned();
    let rows = message_edit::Entity::find()
        .filter(message_edit::Column::Id.in_subquery(newest))
        .order_by_asc(message_edit::Column::Id)
        .all(db)
        .await?;
    for row in rows {
        out.entry(row.message_id).or_default().push(EditView {
            content: STANDARD.encode(&row.ciphertext),
            key_epoch: row.key_epoch,
            edited_at: rfc3339(row.written_at),
        });
    }
    Ok(out)
}

/// Edits one of the actor's own messages. The previous version is kept, encrypted as it
/// was, in the edit history; the new text is encrypted under the current epoch.
pub async fn edit(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
    input: ContentRequest,
) -> ServiceResult<MessageView> {
    validate::message_content(&input.content)?;
    let scope = Scope::context(kind, context_id, actor.member_id, None);
    let pending =
        hooks::before_message(state, scope, "edit", &input.content, Some(message_id)).await?;
    let result = match modified_content(&pending, input) {
        Ok(input) => store_edit(state, actor, kind, context_id, message_id, input).await,
        Err(err) => Err(err),
    };
    hooks::after(state, pending).await;
    result
}

async fn store_edit(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
    input: ContentRequest,
) -> ServiceResult<MessageView> {
    let now = now_ms();
    let (_gate, txn) = begin(state, context_id).await?;
    let access = locked_access(&txn, kind, context_id, actor).await?;
    // Read under the lock: a concurrent edit must not lose a version.
    let message = visible_message(&txn, &access, message_id).await?;
    if message.sender_id != actor.member_id {
        return Err(ServiceError::forbidden(
            "Only the author can edit this message",
        ));
    }
    access.require_may_post(now)?;

    let epoch = access.context.current_epoch;
    let key = keys::epoch_key(state, &txn, context_id, epoch).await?;
    let ciphertext = crypto::seal(
        &key,
        message_id.to_string().as_bytes(),
        input.content.as_bytes(),
    )
    .map_err(ServiceError::internal)?;
    message_edit::Entity::insert(message_edit::ActiveModel {
        id: Set(Uuid::now_v7()),
        message_id: Set(message_id),
        written_at: Set(message.edited_at.unwrap_or(message.created_at)),
        key_epoch: Set(message.key_epoch),
        ciphertext: Set(message.ciphertext.clone()),
    })
    .exec_without_returning(&txn)
    .await?;
    let edited_at = now_ms();
    context_message::Entity::update_many()
        .col_expr(
            context_message::Column::Ciphertext,
            ciphertext.clone().into(),
        )
        .col_expr(context_message::Column::KeyEpoch, epoch.into())
        .col_expr(context_message::Column::EditedAt, Some(edited_at).into())
        .filter(context_message::Column::Id.eq(message_id))
        .exec(&txn)
        .await?;
    let updated = context_message::Model {
        ciphertext,
        key_epoch: epoch,
        edited_at: Some(edited_at),
        ..message
    };
    let reactions = reactions_of(&txn, &[message_id])
        .await?
        .remove(&message_id)
        .unwrap_or_default();
    let edits = edits_of(&txn, &[message_id])
        .await?
        .remove(&message_id)
        .unwrap_or_default();
    let edited = view(kind, &updated, reactions, edits);
    let event = Event::for_context(
        EventType::MessageEdited,
        context_type(kind),
        context_id,
        &edited,
    )
    .about_message(message_id);
    outbox::record(&txn, vec![event]).await?;
    outbox::commit(state, txn).await?;
    Ok(edited)
}

/// `{"deleted": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub deleted: bool,
}

/// Deletes a message: the author with `DELETE_OWN_MESSAGES`, or a member with
/// `DELETE_ANY_MESSAGE` who outranks the author. Its ciphertext, edits and reactions go too.
pub async fn delete(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
) -> ServiceResult<Deleted> {
    let (_gate, txn) = begin(state, context_id).await?;
    let access = locked_access(&txn, kind, context_id, actor).await?;
    let message = visible_message(&txn, &access, message_id).await?;
    if message.sender_id == actor.member_id {
        access.require(Permission::DeleteOwnMessages)?;
    } else {
        access.require(Permission::DeleteAnyMessage)?;
        let author_role = membership(&txn, context_id, message.sender_id)
            .await?
            .map_or(Role::Member, |m| Role::parse(&m.role));
        if !access.role.outranks(author_role) {
            return Err(ServiceError::forbidden(
                "You can only delete messages of members ranked below you",
            ));
        }
    }
    let mut events = Vec::new();
    let removed = remove_messages(&txn, kind, &access.context, &[message_id], &mut events).await?;
    if removed == 0 {
        return Err(ServiceError::not_found("Message not found"));
    }
    if message.sender_id != actor.member_id {
        crate::service::audit::record(
            &txn,
            kind,
            context_id,
            crate::service::audit::Action::MessageDelete,
            actor.member_id,
            Some(message.sender_id),
            None,
        )
        .await?;
    }
    outbox::record(&txn, events).await?;
    outbox::commit(state, txn).await?;
    Ok(Deleted { deleted: true })
}

/// Deletes messages of a context inside its locked transaction (their edits and reactions
/// go by cascade), moves the context's last-message time back to the newest message left,
/// and adds one `message_deleted` event for each to `events`. Returns how many went.
/// A member's delete and plugins' `delete_message` and `purge_member_messages` share it.
pub(crate) async fn remove_messages(
    txn: &impl ConnectionTrait,
    kind: Kind,
    context: &context::Model,
    ids: &[Uuid],
    events: &mut Vec<Event>,
) -> ServiceResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let context_id = context.id;
    let removed = context_message::Entity::delete_many()
        .filter(context_message::Column::Id.is_in(ids.to_vec()))
        .filter(context_message::Column::ContextId.eq(context_id))
        .exec(txn)
        .await?;
    if removed.rows_affected == 0 {
        return Ok(0);
    }
    let newest = context_message::Entity::find()
        .filter(context_message::Column::ContextId.eq(context_id))
        .order_by_desc(context_message::Column::Id)
        .one(txn)
        .await?;
    let last = newest.map(|m| m.created_at);
    context::Entity::update_many()
        .col_expr(context::Column::LastMessageAt, last.into())
        .col_expr(
            context::Column::ActivityAt,
            last.unwrap_or(context.created_at).into(),
        )
        .filter(context::Column::Id.eq(context_id))
        .exec(txn)
        .await?;
    for &message_id in ids {
        events.push(
            Event::for_context(
                EventType::MessageDeleted,
                context_type(kind),
                context_id,
                MessageRef { message_id },
            )
            .about_message(message_id),
        );
    }
    Ok(removed.rows_affected)
}

/// Adds the actor's reaction; the same member, emoji and message twice is 409.
pub async fn react(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
    input: ReactionRequest,
) -> ServiceResult<ReactionView> {
    validate::emoji(&input.emoji)?;
    let mut params = serde_json::Map::new();
    params.insert("emoji".into(), input.emoji.clone().into());
    params.insert("message_id".into(), message_id.to_string().into());
    let scope = Scope::context(kind, context_id, actor.member_id, None);
    let pending = hooks::before(state, Hook::Reaction, scope, params).await?;
    let result = store_reaction(state, actor, kind, context_id, message_id, input).await;
    hooks::after(state, pending).await;
    result
}

async fn store_reaction(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
    input: ReactionRequest,
) -> ServiceResult<ReactionView> {
    let (_gate, txn) = begin(state, context_id).await?;
    let access = locked_access(&txn, kind, context_id, actor).await?;
    access.require_may_post(now_ms())?;
    visible_message(&txn, &access, message_id).await?;
    let row = reaction::Model {
        id: Uuid::now_v7(),
        message_id,
        member_id: actor.member_id,
        emoji: input.emoji,
        created_at: now_ms(),
    };
    reaction::Entity::insert(reaction::ActiveModel {
        id: Set(row.id),
        message_id: Set(row.message_id),
        member_id: Set(row.member_id),
        emoji: Set(row.emoji.clone()),
        created_at: Set(row.created_at),
    })
    .exec_without_returning(&txn)
    .await
    .map_err(|err| match err.sql_err() {
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
            ServiceError::not_found("Message not found")
        }
        _ => unique_violation_or(
            err,
            ServiceError::already_exists("You already reacted with this emoji"),
        ),
    })?;
    let added = ReactionView::from(&row);
    let event = Event::for_context(
        EventType::ReactionAdded,
        context_type(kind),
        context_id,
        &added,
    )
    .about_message(message_id);
    outbox::record(&txn, vec![event]).await?;
    outbox::commit(state, txn).await?;
    Ok(added)
}

/// `{"removed": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Removed {
    pub removed: bool,
}

/// Removes one of the actor's reactions.
pub async fn unreact(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
    reaction_id: Uuid,
) -> ServiceResult<Removed> {
    let (_gate, txn) = begin(state, context_id).await?;
    let access = locked_access(&txn, kind, context_id, actor).await?;
    visible_message(&txn, &access, message_id).await?;
    let row = reaction::Entity::find_by_id(reaction_id)
        .filter(reaction::Column::MessageId.eq(message_id))
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::not_found("Reaction not found"))?;
    if row.member_id != actor.member_id {
        return Err(ServiceError::forbidden(
            "Only the member who reacted can remove this reaction",
        ));
    }
    let removed = reaction::Entity::delete_by_id(reaction_id)
        .exec(&txn)
        .await?;
    if removed.rows_affected == 0 {
        return Err(ServiceError::not_found("Reaction not found"));
    }
    let event = Event::for_context(
        EventType::ReactionRemoved,
        context_type(kind),
        context_id,
        ReactionView::from(&row),
    )
    .about_message(message_id);
    outbox::record(&txn, vec![event]).await?;
    outbox::commit(state, txn).await?;
    Ok(Removed { removed: true })
}

/// `{"pinned": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Pinned {
    pub pinned: bool,
}

/// `{"unpinned": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unpinned {
    pub unpinned: bool,
}

/// Pins (`pin = true`) or unpins a message; needs `PIN_MESSAGES`. Repeating is harmless.
async fn set_pin(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
    pin: bool,
) -> ServiceResult<()> {
    let (_gate, txn) = begin(state, context_id).await?;
    let access = locked_access(&txn, kind, context_id, actor).await?;
    access.require(Permission::PinMessages)?;
    let message = visible_message(&txn, &access, message_id).await?;
    if message.pinned_at.is_some() == pin {
        return Ok(());
    }
    let (at, by) = if pin {
        (Some(now_ms()), Some(actor.member_id))
    } else {
        (None, None)
    };
    context_message::Entity::update_many()
        .col_expr(context_message::Column::PinnedAt, at.into())
        .col_expr(context_message::Column::PinnedBy, by.into())
        .filter(context_message::Column::Id.eq(message_id))
        .exec(&txn)
        .await?;
    let event_type = if pin {
        EventType::MessagePinned
    } else {
        EventType::MessageUnpinned
    };
    let event = Event::for_context(
        event_type,
        context_type(kind),
        context_id,
        MessageRef { message_id },
    )
    .about_message(message_id);
    outbox::record(&txn, vec![event]).await?;
    outbox::commit(state, txn).await
}

/// Pins a message.
pub async fn pin(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
) -> ServiceResult<Pinned> {
    set_pin(state, actor, kind, context_id, message_id, true).await?;
    Ok(Pinned { pinned: true })
}

/// Unpins a message.
pub async fn unpin(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
    message_id: Uuid,
) -> ServiceResult<Unpinned> {
    set_pin(state, actor, kind, context_id, message_id, false).await?;
    Ok(Unpinned { unpinned: true })
}

/// The pinned messages of a context the actor belongs to, in pin order (three queries
/// however many there are).
pub async fn pinned(
    state: &AppState,
    actor: &Actor,
    kind: Kind,
    context_id: Uuid,
) -> ServiceResult<Vec<MessageView>> {
    let access = require_member(&state.db.read, kind, context_id, actor).await?;
    let rows: Vec<context_message::Model> = context_message::Entity::find()
        .filter(context_message::Column::ContextId.eq(context_id))
        .filter(context_message::Column::PinnedAt.is_not_null())
        .order_by_asc(context_message::Column::PinnedAt)
        .all(&state.db.read)
        .await?
        .into_iter()
        .filter(|m| visible_to(&access, m))
        .collect();
    let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
    let mut reactions = reactions_of(&state.db.read, &ids).await?;
    let mut edits = edits_of(&state.db.read, &ids).await?;
    Ok(rows
        .iter()
        .map(|m| {
            let r = reactions.remove(&m.id).unwrap_or_default();
            let e = edits.remove(&m.id).unwrap_or_default();
            view(kind, m, r, e)
        })
        .collect())
}

/// Ids of the pinned messages of a context, in pin order.
pub async fn pinned_ids(db: &impl ConnectionTrait, context_id: Uuid) -> ServiceResult<Vec<Uuid>> {
    Ok(context_message::Entity::find()
        .filter(context_message::Column::ContextId.eq(context_id))
        .filter(context_message::Column::PinnedAt.is_not_null())
        .order_by_asc(context_message::Column::PinnedAt)
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect())
}

/// Messages of one context by id, as history shows them (reactions, edit history), left
/// out where gone or hidden from the reader (ids at or below `history_after`).
pub async fn views_by_id(
    state: &AppState,
    kind: Kind,
    context_id: Uuid,
    ids: &[Uuid],
    history_after: Option<Uuid>,
) -> ServiceResult<HashMap<Uuid, MessageView>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query = context_message::Entity::find()
        .filter(context_message::Column::ContextId.eq(context_id))
        .filter(context_message::Column::Id.is_in(ids.to_vec()));
    if let Some(after) = history_after {
        query = query.filter(context_message::Column::Id.gt(after));
    }
    let rows = query.all(&state.db.read).await?;
    let found: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
    let mut reactions = reactions_of(&state.db.read, &found).await?;
    let mut edits = edits_of(&state.db.read, &found).await?;
    Ok(rows
        .iter()
        .map(|m| {
            let r = reactions.remove(&m.id).unwrap_or_default();
            let e = edits.remove(&m.id).unwrap_or_default();
            (m.id, view(kind, m, r, e))
        })
        .collect())
}
