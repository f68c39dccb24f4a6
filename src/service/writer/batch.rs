//! One batch of sends in one transaction (see [`super`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use entity::{block, context, context_member, context_message, conversation, dm_message};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::Item;
use crate::crypto::{self, EpochKey};
use crate::db::ROWS_PER_STATEMENT;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType, outbox};
use crate::service::contexts::messages::{MessageView, context_type, view};
use crate::service::contexts::{Access, Kind, non_member_error};
use crate::service::conversations::DirectMessageView;
use crate::service::roles::Role;
use crate::service::{ids, keys, moderation, posting};
use crate::state::AppState;
use crate::time::now_ms;

/// A direct message's three ECIES copies.
#[derive(Clone)]
pub struct DirectCopies {
    pub sender: Vec<u8>,
    pub recipient: Vec<u8>,
    pub server: Vec<u8>,
}

/// What a stored send returns.
pub enum Sent {
    /// A group or channel message as REST shows it.
    Context(MessageView),
    /// A direct message as stored (each reader gets its own copy).
    Direct(dm_message::Model),
}

/// Where the next message of a context or conversation goes: ids only grow, times never
/// go back.
struct Cursor {
    last_id: Option<Uuid>,
    last_at: i64,
    moved: bool,
}

impl Cursor {
    fn next(&mut self, now: i64) -> (Uuid, i64) {
        let id = ids::next_message_id(self.last_id);
        let at = now.max(self.last_at);
        self.last_id = Some(id);
        self.last_at = at;
        self.moved = true;
        (id, at)
    }
}

/// What the batch has read under its locks.
#[derive(Default)]
struct Locked {
    contexts: HashMap<Uuid, context::Model>,
    members: HashMap<(Uuid, Uuid), context_member::Model>,
    conversations: HashMap<Uuid, conversation::Model>,
    /// (blocker, blocked) pairs among the batch's recipients and senders.
    blocks: HashSet<(Uuid, Uuid)>,
}

/// What the batch will write.
#[derive(Default)]
struct Writes {
    context_cursors: HashMap<Uuid, Cursor>,
    direct_cursors: HashMap<Uuid, Cursor>,
    keys: HashMap<Uuid, EpochKey>,
    /// Last send in this batch per (context, member), for slow mode.
    sent_at: HashMap<(Uuid, Uuid), i64>,
    context_rows: Vec<context_message::ActiveModel>,
    direct_rows: Vec<dm_message::ActiveModel>,
    events: Vec<Event>,
    /// (context, sender, message, created_at) for the hook facts, after commit.
    notes: Vec<(Uuid, Uuid, Uuid, i64)>,
}

/// Writes `items` in one transaction. `Err` means the transaction failed as a whole and
/// nothing was written; otherwise one result per item, in order.
pub(super) async fn write(
    state: &AppState,
    items: Vec<Item>,
) -> ServiceResult<Vec<ServiceResult<Sent>>> {
    let txn = state.db.write.begin().await?;
    let locked = lock(&txn, &items).await?;
    // Taken under the locks, as a single send did: mutes and slow mode are judged, and
    // times issued, as of now, not as of before the wait.
    let now = now_ms();
    let mut writes = Writes::default();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let result = match item {
            Item::Context {
                member_id,
                kind,
                context_id,
                content,
            } => {
                context_send(
                    state,
                    &txn,
                    &locked,
                    &mut writes,
                    (member_id, kind, context_id),
                    &content,
                    now,
                )
                .await
            }
            Item::Direct {
                conversation_id,
                sender_id,
                recipient_id,
                copies,
            } => direct_send(
                &locked,
                &mut writes,
                (conversation_id, sender_id, recipient_id),
                copies,
                now,
            ),
        };
        results.push(result);
    }
    store(&txn, &mut writes).await?;
    if writes.events.is_empty() {
        txn.commit().await?;
    } else {
        outbox::record(&txn, std::mem::take(&mut writes.events)).await?;
        outbox::commit(state, txn).await?;
    }
    for (context_id, sender, id, at) in writes.notes {
        state.facts.note_message(context_id, sender, id, at);
    }
    Ok(results)
}

/// Locks every context and conversation of the batch (in id order, so two nodes' batches
/// never wait on each other in a cycle) and reads the memberships and blocks it checks.
async fn lock(txn: &DatabaseTransaction, items: &[Item]) -> ServiceResult<Locked> {
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    let mut senders: HashMap<Uuid, BTreeSet<Uuid>> = HashMap::new();
    let mut conversations = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    for item in items {
        match item {
            Item::Context {
                member_id,
                context_id,
                ..
            } => {
                senders.entry(*context_id).or_default().insert(*member_id);
            }
            Item::Direct {
                conversation_id,
                sender_id,
                recipient_id,
                ..
            } => {
                conversations.insert(*conversation_id);
                pairs.insert((*recipient_id, *sender_id));
            }
        }
    }
    let mut locked = Locked::default();
    let context_ids: BTreeSet<Uuid> = senders.keys().copied().collect();
    for chunk in chunks(&context_ids) {
        let mut query = context::Entity::find()
            .filter(context::Column::Id.is_in(chunk))
            .order_by_asc(context::Column::Id);
        if postgres {
            query = query.lock_exclusive();
        }
        for row in query.all(txn).await? {
            locked.contexts.insert(row.id, row);
        }
    }
    for (context_id, members) in &senders {
        for chunk in chunks(members) {
            let rows = context_member::Entity::find()
                .filter(context_member::Column::ContextId.eq(*context_id))
                .filter(context_member::Column::MemberId.is_in(chunk))
                .all(txn)
                .await?;
            for row in rows {
                locked.members.insert((row.context_id, row.member_id), row);
            }
        }
    }
    for chunk in chunks(&conversations) {
        let mut query = conversation::Entity::find()
            .filter(conversation::Column::Id.is_in(chunk))
            .order_by_asc(conversation::Column::Id);
        if postgres {
            query = query.lock_exclusive();
        }
        for row in query.all(txn).await? {
            locked.conversations.insert(row.id, row);
        }
    }
    let pairs: Vec<(Uuid, Uuid)> = pairs.into_iter().collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT / 2) {
        let mut any = Condition::any();
        for (blocker, blocked) in chunk {
            any = any.add(
                Condition::all()
                    .add(block::Column::BlockerId.eq(*blocker))
                    .add(block::Column::BlockedId.eq(*blocked)),
            );
        }
        let rows: Vec<(Uuid, Uuid)> = block::Entity::find()
            .select_only()
            .column(block::Column::BlockerId)
            .column(block::Column::BlockedId)
            .filter(any)
            .into_tuple()
            .all(txn)
            .await?;
        locked.blocks.extend(rows);
    }
    Ok(locked)
}

/// Ids in statements of at most [`ROWS_PER_STATEMENT`] values.
fn chunks(ids: &BTreeSet<Uuid>) -> Vec<Vec<Uuid>> {
    let all: Vec<Uuid> = ids.iter().copied().collect();
    all.chunks(ROWS_PER_STATEMENT)
        .map(<[Uuid]>::to_vec)
        .collect()
}

/// Checks and prepares one group or channel message. Its checks are those of a single
/// send: member, permission, mute, slow mode (counting sends earlier in this batch).
async fn context_send(
    state: &AppState,
    txn: &DatabaseTransaction,
    locked: &Locked,
    writes: &mut Writes,
    (member_id, kind, context_id): (Uuid, Kind, Uuid),
    content: &str,
    now: i64,
) -> ServiceResult<Sent> {
    let context = locked
        .contexts
        .get(&context_id)
        .filter(|c| c.kind == kind.as_str())
        .ok_or_else(|| kind.not_found())?;
    let row = locked
        .members
        .get(&(context_id, member_id))
        .ok_or_else(|| non_member_error(context))?;
    let access = Access {
        context: context.clone(),
        membership: row.clone(),
        role: Role::parse(&row.role),
    };
    access.require_may_post(now)?;
    slow_mode(
        txn,
        &access,
        writes.sent_at.get(&(context_id, member_id)),
        now,
    )
    .await?;
    let epoch = context.current_epoch;
    let key = match writes.keys.get(&context_id) {
        Some(key) => *key,
        None => {
            let key = keys::epoch_key(state, txn, context_id, epoch).await?;
            writes.keys.insert(context_id, key);
            key
        }
    };
    let cursor = writes
        .context_cursors
        .entry(context_id)
        .or_insert_with(|| Cursor {
            last_id: context.last_issued_id,
            last_at: context.last_message_at.unwrap_or(0),
            moved: false,
        });
    let (id, created_at) = cursor.next(now);
    let ciphertext = crypto::seal(&key, id.to_string().as_bytes(), content.as_bytes())
        .map_err(ServiceError::internal)?;
    let model = context_message::Model {
        id,
        context_id,
        sender_id: member_id,
        created_at,
        edited_at: None,
        key_epoch: epoch,
        ciphertext,
        pinned_at: None,
        pinned_by: None,
    };
    let message = view(kind, &model, Vec::new(), Vec::new());
    writes.events.push(
        Event::for_context(
            EventType::MessageSent,
            context_type(kind),
            context_id,
            &message,
        )
        .about_message(id),
    );
    writes.context_rows.push(model.into());
    writes.sent_at.insert((context_id, member_id), created_at);
    writes.notes.push((context_id, member_id, id, created_at));
    Ok(Sent::Context(message))
}

/// Slow mode: the member's last message (in this batch, else in the database) must be at
/// least the context's interval ago. Moderators and above are exempt.
async fn slow_mode(
    txn: &DatabaseTransaction,
    access: &Access,
    earlier_in_batch: Option<&i64>,
    now: i64,
) -> ServiceResult<()> {
    let context = &access.context;
    let on = matches!(
        (context.slow_mode_secs, context.slow_mode_until),
        (Some(secs), Some(until)) if secs > 0 && until > now
    );
    if !on || access.role >= Role::Moderator {
        return Ok(());
    }
    match (earlier_in_batch, context.slow_mode_secs) {
        (Some(at), Some(secs)) => moderation::slow_mode_wait(secs, Some(*at), now),
        _ => moderation::require_slow_mode_ok(txn, access, now).await,
    }
}

/// Checks and prepares one direct message: the conversation exists and the recipient has
/// not blocked the sender (checked again here, under the lock, so a block that landed
/// while the copies were encrypted stops the message).
fn direct_send(
    locked: &Locked,
    writes: &mut Writes,
    (conversation_id, sender_id, recipient_id): (Uuid, Uuid, Uuid),
    copies: DirectCopies,
    now: i64,
) -> ServiceResult<Sent> {
    let conversation = locked
        .conversations
        .get(&conversation_id)
        .ok_or_else(|| ServiceError::not_found("Conversation not found"))?;
    posting::in_conversation(locked.blocks.contains(&(recipient_id, sender_id)))?;
    let cursor = writes
        .direct_cursors
        .entry(conversation_id)
        .or_insert_with(|| Cursor {
            last_id: conversation.last_issued_id,
            last_at: conversation.last_message_at,
            moved: false,
        });
    let (id, created_at) = cursor.next(now);
    let model = dm_message::Model {
        id,
        conversation_id,
        sender_id,
        recipient_id,
        created_at,
        ciphertext_sender: copies.sender,
        ciphertext_recipient: copies.recipient,
        ciphertext_server: copies.server,
    };
    // Each participant's frame carries the copy encrypted for it.
    writes.events.push(
        Event::for_members(
            EventType::MessageSent,
            ContextType::Conversation,
            conversation_id,
            vec![sender_id, recipient_id],
            (),
        )
        .with_data_for(sender_id, DirectMessageView::for_reader(&model, sender_id))
        .with_data_for(
            recipient_id,
            DirectMessageView::for_reader(&model, recipient_id),
        ),
    );
    writes.direct_rows.push(model.clone().into());
    Ok(Sent::Direct(model))
}

/// The batch's inserts and the one update per context and conversation.
async fn store(txn: &DatabaseTransaction, writes: &mut Writes) -> ServiceResult<()> {
    let rows = std::mem::take(&mut writes.context_rows);
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        context_message::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    let rows = std::mem::take(&mut writes.direct_rows);
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        dm_message::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    for (context_id, cursor) in &writes.context_cursors {
        if !cursor.moved {
            continue;
        }
        context::Entity::update_many()
            .col_expr(context::Column::LastMessageAt, Some(cursor.last_at).into())
            .col_expr(context::Column::ActivityAt, cursor.last_at.into())
            .col_expr(context::Column::LastIssuedId, cursor.last_id.into())
            .filter(context::Column::Id.eq(*context_id))
            .exec(txn)
            .await?;
    }
    for (conversation_id, cursor) in &writes.direct_cursors {
        if !cursor.moved {
            continue;
        }
        conversation::Entity::update_many()
            .col_expr(conversation::Column::LastMessageAt, cursor.last_at.into())
            .col_expr(conversation::Column::LastMessageId, cursor.last_id.into())
            .col_expr(conversation::Column::LastIssuedId, cursor.last_id.into())
            .filter(conversation::Column::Id.eq(*conversation_id))
            .exec(txn)
            .await?;
    }
    Ok(())
}
