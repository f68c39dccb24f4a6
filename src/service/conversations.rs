//! Direct messages (reference "Direct Messages", CONTRACT.md "Encryption").
//!
//! Each message is ECIES-encrypted three times: for the recipient, the sender and the
//! server key. A reader is always shown the copy made for it; list previews come from
//! the server's copy and are never stored in plaintext.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use entity::{conversation, dm_message};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::hooks::{self, Scope};
use super::pagination::{CursorKey, Direction, Page, PageParams};
use super::writer::{self, DirectCopies};
use super::{Actor, members, validate};
use crate::crypto;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType, outbox};
use crate::plugins::Hook;
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// Characters of the newest message shown in a conversation list.
pub const PREVIEW_CHARS: usize = 100;
/// The one answer for an unknown recipient and for a recipient who blocked the sender.
pub(crate) const NOT_REACHABLE: &str = "Recipient not found";

/// `POST /api/conversations` body.
#[derive(Debug, Deserialize, utoipa::ToSchema, async_graphql::InputObject)]
#[serde(rename_all = "camelCase")]
pub struct SendDirectMessage {
    pub recipient_id: Uuid,
    /// 1..=10,000 characters, not blank.
    pub content: String,
}

/// A direct message, with the copy encrypted for the member reading it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "DirectMessage", complex)]
pub struct DirectMessageView {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub recipient_id: Uuid,
    /// Base64 ECIES ciphertext for the reader's own public key.
    #[graphql(complexity = "crate::graphql::cost::CONTENT")]
    pub encrypted_content: String,
    #[schema(example = "2026-03-13T10:00:00.000Z")]
    pub created_at: String,
}

impl DirectMessageView {
    pub(crate) fn for_reader(model: &dm_message::Model, reader: Uuid) -> Self {
        let copy = if reader == model.sender_id {
            &model.ciphertext_sender
        } else {
            &model.ciphertext_recipient
        };
        Self {
            id: model.id,
            conversation_id: model.conversation_id,
            sender_id: model.sender_id,
            recipient_id: model.recipient_id,
            encrypted_content: STANDARD.encode(copy),
            created_at: rfc3339(model.created_at),
        }
    }
}

/// A conversation in the caller's list.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "Conversation")]
pub struct ConversationView {
    pub id: Uuid,
    pub participants: Vec<Uuid>,
    /// Time of the newest message (of the conversation's start when none is left).
    pub last_message_at: String,
    /// The first 100 characters of the newest message; `null` when there is none.
    pub last_message_preview: Option<String>,
}

/// `{messageId}`: the data of delete and pin events.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    pub message_id: Uuid,
}

/// `{"deleted": true}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub deleted: bool,
}

/// Sends a direct message, starting the conversation if there is none yet.
pub async fn send(
    state: &AppState,
    actor: &Actor,
    input: SendDirectMessage,
) -> ServiceResult<DirectMessageView> {
    validate::message_content(&input.content)?;
    if input.recipient_id == actor.member_id {
        return Err(ServiceError::validation(
            "You cannot send a direct message to yourself",
        ));
    }
    let db = &state.db;
    let sender = Party {
        id: actor.member_id,
        public_key: state
            .lookups
            .public_key(&db.read, actor.member_id)
            .await?
            .ok_or_else(|| ServiceError::unauthorized("Authentication required"))?,
    };
    let recipient = Party {
        id: input.recipient_id,
        public_key: state
            .lookups
            .public_key(&db.read, input.recipient_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(NOT_REACHABLE))?,
    };
    super::posting::in_conversation(
        members::has_blocked(&db.read, recipient.id, sender.id).await?,
    )?;
    // Asked before the conversation is made, so a refused first message leaves nothing.
    let pending = if state.plugins.wants(Hook::Message) {
        let existing = match state.lookups.conversation(sender.id, recipient.id) {
            Some(id) => Some(id),
            None => find_conversation(&db.read, sender.id, recipient.id).await?,
        };
        let scope = Scope::conversation(existing, sender.id, recipient.id);
        hooks::before_message(state, scope, "send", &input.content, None).await?
    } else {
        hooks::Pending::none_for(Hook::Message)
    };
    let content = match pending.verdict.string("content") {
        None => Ok(input.content),
        Some(changed) => validate::message_content(changed)
            .map(|()| changed.to_owned())
            .map_err(|err| {
                ServiceError::validation(format!(
                    "A moderation plugin changed the content: {}",
                    err.public_message()
                ))
            }),
    };
    let result = match content {
        Ok(content) => store(state, actor, sender, recipient, content).await,
        Err(err) => Err(err),
    };
    hooks::after(state, pending).await;
    result
}

/// A participant of a direct message: its id and public key.
struct Party {
    id: Uuid,
    public_key: std::sync::Arc<[u8]>,
}

/// Encrypts and stores a direct message (its hook already asked).
async fn store(
    state: &AppState,
    actor: &Actor,
    sender: Party,
    recipient: Party,
    content: String,
) -> ServiceResult<DirectMessageView> {
    let copies = encrypt_copies(state, &sender, &recipient, content).await?;
    let conversation_id = ensure_conversation(state, sender.id, recipient.id).await?;
    let item = writer::Item::Direct {
        conversation_id,
        sender_id: sender.id,
        recipient_id: recipient.id,
        copies,
    };
    match state.writer.submit(state, item).await? {
        writer::Sent::Direct(model) => Ok(DirectMessageView::for_reader(&model, actor.member_id)),
        writer::Sent::Context(_) => Err(ServiceError::internal("a DM send stored a group message")),
    }
}

/// ECIES for the three readers, off the async executor.
async fn encrypt_copies(
    state: &AppState,
    sender: &Party,
    recipient: &Party,
    content: String,
) -> ServiceResult<DirectCopies> {
    let keys = (
        sender.public_key.clone(),
        recipient.public_key.clone(),
        state.server_key.public_key().to_vec(),
    );
    state
        .crypto
        .run(move || -> Result<DirectCopies, crypto::CryptoError> {
            let plaintext = content.as_bytes();
            Ok(DirectCopies {
                sender: crypto::ecies_encrypt(&keys.0, plaintext)?,
                recipient: crypto::ecies_encrypt(&keys.1, plaintext)?,
                server: crypto::ecies_encrypt(&keys.2, plaintext)?,
            })
        })
        .await?
        .map_err(ServiceError::internal)
}

/// The conversation between two members, created on first use. Safe under races: the
/// pair is unique in the database and the loser of a race reads the winner's row.
async fn ensure_conversation(state: &AppState, a: Uuid, b: Uuid) -> ServiceResult<Uuid> {
    if let Some(known) = state.lookups.conversation(a, b) {
        return Ok(known);
    }
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    let find = || {
        conversation::Entity::find()
            .filter(conversation::Column::MemberLow.eq(low))
            .filter(conversation::Column::MemberHigh.eq(high))
    };
    if let Some(existing) = find_conversation(&state.db.read, a, b).await? {
        state.lookups.remember_conversation(a, b, existing);
        return Ok(existing);
    }
    let now = now_ms();
    conversation::Entity::insert(conversation::ActiveModel {
        id: Set(Uuid::now_v7()),
        member_low: Set(low),
        member_high: Set(high),
        created_at: Set(now),
        last_message_at: Set(now),
        last_message_id: Set(None),
        last_issued_id: Set(None),
    })
    .on_conflict_do_nothing_on([
        conversation::Column::MemberLow,
        conversation::Column::MemberHigh,
    ])
    .exec_without_returning(&state.db.write)
    .await?;
    let id = find()
        .one(&state.db.write)
        .await?
        .map(|row| row.id)
        .ok_or_else(|| ServiceError::internal("conversation vanished after insert"))?;
    state.lookups.remember_conversation(a, b, id);
    Ok(id)
}

/// The id of the conversation between two members, if there is one.
async fn find_conversation(
    db: &impl ConnectionTrait,
    a: Uuid,
    b: Uuid,
) -> ServiceResult<Option<Uuid>> {
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    Ok(conversation::Entity::find()
        .filter(conversation::Column::MemberLow.eq(low))
        .filter(conversation::Column::MemberHigh.eq(high))
        .one(db)
        .await?
        .map(|row| row.id))
}

/// Reads a conversation inside a transaction, holding its row lock on PostgreSQL (SQLite
/// has a single writer, so the transaction alone serialises).
async fn lock_conversation(
    txn: &impl ConnectionTrait,
    id: Uuid,
) -> ServiceResult<conversation::Model> {
    let mut query = conversation::Entity::find_by_id(id);
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_exclusive();
    }
    query
        .one(txn)
        .await?
        .ok_or_else(|| ServiceError::not_found("Conversation not found"))
}

/// A conversation the actor takes part in: 404 when it does not exist, 403 when the
/// actor is not a participant.
async fn participant_conversation(
    db: &impl ConnectionTrait,
    actor: &Actor,
    id: Uuid,
) -> ServiceResult<conversation::Model> {
    let conversation = conversation::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::not_found("Conversation not found"))?;
    if conversation.member_low != actor.member_id && conversation.member_high != actor.member_id {
        return Err(ServiceError::forbidden(
            "Not a participant in this conversation",
        ));
    }
    Ok(conversation)
}

/// The two participants of a conversation the actor takes part in (404 / 403 otherwise).
pub async fn participants(state: &AppState, actor: &Actor, id: Uuid) -> ServiceResult<Vec<Uuid>> {
    let conversation = participant_conversation(&state.db.read, actor, id).await?;
    Ok(vec![conversation.member_low, conversation.member_high])
}

/// The actor's conversations, most recent activity first.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    params: &PageParams,
) -> ServiceResult<Page<ConversationView>> {
    let scope = format!("conversations:{}", actor.member_id);
    let request = state.cursors.request(&scope, params, false)?;
    let me = actor.member_id;
    let mut query = conversation::Entity::find().filter(
        Condition::any()
            .add(conversation::Column::MemberLow.eq(me))
            .add(conversation::Column::MemberHigh.eq(me)),
    );
    if let Some(after) = request.after {
        query = query.filter(
            Condition::any()
                .add(conversation::Column::LastMessageAt.lt(after.time))
                .add(
                    Condition::all()
                        .add(conversation::Column::LastMessageAt.eq(after.time))
                        .add(conversation::Column::Id.lt(after.id)),
                ),
        );
    }
    let rows = query
        .order_by_desc(conversation::Column::LastMessageAt)
        .order_by_desc(conversation::Column::Id)
        .limit(request.limit + 1)
        .all(&state.db.read)
        .await?;
    let page = state.cursors.page(&scope, &request, rows, |row| CursorKey {
        time: row.last_message_at,
        id: row.id,
    });

    // One query for every preview on the page.
    let newest_ids: Vec<Uuid> = page
        .items
        .iter()
        .filter_map(|c| c.last_message_id)
        .collect();
    let newest = if newest_ids.is_empty() {
        Vec::new()
    } else {
        dm_message::Entity::find()
            .filter(dm_message::Column::Id.is_in(newest_ids))
            .all(&state.db.read)
            .await?
    };
    let secret = *state.server_key.secret_bytes();
    let previews = state
        .crypto
        .run(move || {
            newest
                .into_iter()
                .filter_map(|message| {
                    let plaintext =
                        crypto::ecies_decrypt(&secret, &message.ciphertext_server).ok()?;
                    let text = String::from_utf8_lossy(&plaintext);
                    Some((
                        message.id,
                        text.chars().take(PREVIEW_CHARS).collect::<String>(),
                    ))
                })
                .collect::<std::collections::HashMap<Uuid, String>>()
        })
        .await?;

    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|c| ConversationView {
                id: c.id,
                participants: vec![c.member_low, c.member_high],
                last_message_at: rfc3339(c.last_message_at),
                last_message_preview: c.last_message_id.and_then(|id| previews.get(&id).cloned()),
            })
            .collect(),
        cursor: page.cursor,
        has_more: page.has_more,
    })
}

/// A conversation's messages, oldest first (or from the newest page with `backward`).
pub async fn messages(
    state: &AppState,
    actor: &Actor,
    conversation_id: Uuid,
    params: &PageParams,
) -> ServiceResult<Page<DirectMessageView>> {
    participant_conversation(&state.db.read, actor, conversation_id).await?;
    let scope = format!("dm:{conversation_id}");
    let request = state.cursors.request(&scope, params, true)?;
    let mut query =
        dm_message::Entity::find().filter(dm_message::Column::ConversationId.eq(conversation_id));
    query = match (request.direction, request.after) {
        (Direction::Forward, Some(after)) => query.filter(dm_message::Column::Id.gt(after.id)),
        (Direction::Backward, Some(before)) => query.filter(dm_message::Column::Id.lt(before.id)),
        (_, None) => query,
    };
    query = match request.direction {
        Direction::Forward => query.order_by_asc(dm_message::Column::Id),
        Direction::Backward => query.order_by_desc(dm_message::Column::Id),
    };
    let rows = query.limit(request.limit + 1).all(&state.db.read).await?;
    let page = state.cursors.page(&scope, &request, rows, |row| CursorKey {
        time: 0,
        id: row.id,
    });
    Ok(Page {
        items: page
            .items
            .iter()
            .map(|m| DirectMessageView::for_reader(m, actor.member_id))
            .collect(),
        cursor: page.cursor,
        has_more: page.has_more,
    })
}

/// Deletes one of the actor's own messages; its ciphertexts are removed with it.
pub async fn delete_message(
    state: &AppState,
    actor: &Actor,
    conversation_id: Uuid,
    message_id: Uuid,
) -> ServiceResult<Deleted> {
    participant_conversation(&state.db.read, actor, conversation_id).await?;
    let (_gate, txn) = super::contexts::begin(state, conversation_id).await?;
    let conversation = lock_conversation(&txn, conversation_id).await?;
    let message = dm_message::Entity::find_by_id(message_id)
        .filter(dm_message::Column::ConversationId.eq(conversation_id))
        .one(&txn)
        .await?
        .ok_or_else(|| ServiceError::not_found("Message not found"))?;
    if message.sender_id != actor.member_id {
        return Err(ServiceError::forbidden(
            "Only the author can delete this message",
        ));
    }
    dm_message::Entity::delete_by_id(message_id)
        .exec(&txn)
        .await?;
    if conversation.last_message_id == Some(message_id) {
        let newest = dm_message::Entity::find()
            .filter(dm_message::Column::ConversationId.eq(conversation_id))
            .order_by_desc(dm_message::Column::Id)
            .one(&txn)
            .await?;
        let (newest_id, newest_at) = match &newest {
            Some(m) => (Some(m.id), m.created_at),
            None => (None, conversation.created_at),
        };
        conversation::Entity::update_many()
            .col_expr(conversation::Column::LastMessageAt, newest_at.into())
            .col_expr(conversation::Column::LastMessageId, newest_id.into())
            .filter(conversation::Column::Id.eq(conversation_id))
            .exec(&txn)
            .await?;
    }
    let event = Event::for_members(
        EventType::MessageDeleted,
        ContextType::Conversation,
        conversation_id,
        vec![conversation.member_low, conversation.member_high],
        MessageRef { message_id },
    );
    outbox::record(&txn, vec![event]).await?;
    outbox::commit(state, txn).await?;
    Ok(Deleted { deleted: true })
}
