//! Key epochs of groups and channels (CONTRACT.md "Encryption").
//!
//! Each epoch has a random 32-byte AES-256-GCM key, stored wrapped with ECIES for the
//! server key and for every member entitled to it. Rotation makes a new epoch and keeps the
//! old ones. Unwrapped keys are cached per node, keyed by (context, epoch); an epoch's key
//! never changes once committed, so the cache needs no invalidation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use entity::{context, epoch_key, member_key};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;
use uuid::Uuid;

use super::pagination::{CursorKey, Page, PageParams};
use crate::crypto::{self, EpochKey};
use crate::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::time::rfc3339;

/// Unwrapped epoch keys by (context, epoch).
pub struct EpochKeyCache {
    cache: quick_cache::sync::Cache<(Uuid, i32), EpochKey>,
}

impl EpochKeyCache {
    pub fn new() -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(50_000),
        }
    }
}

impl Default for EpochKeyCache {
    fn default() -> Self {
        Self::new()
    }
}

/// One epoch key, wrapped for the member reading it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "EpochKey")]
pub struct KeyView {
    pub epoch: i32,
    /// Base64 ECIES ciphertext of the 32-byte key for the reader's public key.
    pub encrypted_key: String,
    pub created_at: String,
}

/// A member who gets wrapped copies: id and compressed public key.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub member_id: Uuid,
    pub public_key: Vec<u8>,
}

/// The plaintext key of an epoch (cached, else unwrapped from the server copy), read
/// through `db`: inside a transaction pass the transaction, so no second connection is
/// needed while it holds one. Only ask for epochs that are committed or belong to a
/// context created in the same transaction: the key is cached.
pub async fn epoch_key(
    state: &AppState,
    db: &impl ConnectionTrait,
    context_id: Uuid,
    epoch: i32,
) -> ServiceResult<EpochKey> {
    if let Some(key) = state.epoch_keys.cache.get(&(context_id, epoch)) {
        return Ok(key);
    }
    let row = epoch_key::Entity::find_by_id((context_id, epoch))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::internal(format!("missing epoch {epoch} of {context_id}")))?;
    let key = unwrap_server_copy(state, &row.wrapped_for_server)?;
    state.epoch_keys.cache.insert((context_id, epoch), key);
    Ok(key)
}

fn unwrap_server_copy(state: &AppState, wrapped: &[u8]) -> ServiceResult<EpochKey> {
    let bytes = crypto::ecies_decrypt(state.server_key.secret_bytes(), wrapped)
        .map_err(ServiceError::internal)?;
    bytes
        .try_into()
        .map_err(|_| ServiceError::internal("an epoch key is not 32 bytes"))
}

/// Wraps `key` for each recipient, off the async executor.
async fn wrap_for(
    key: EpochKey,
    recipients: Vec<Recipient>,
) -> ServiceResult<Vec<(Uuid, Vec<u8>)>> {
    tokio::task::spawn_blocking(move || {
        recipients
            .into_iter()
            .map(|r| crypto::ecies_encrypt(&r.public_key, &key).map(|w| (r.member_id, w)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(ServiceError::internal)?
    .map_err(ServiceError::internal)
}

/// Starts a new epoch inside `txn`: a fresh key wrapped for the server and `recipients`,
/// and the context's current epoch moved to it. Returns the epoch number and its key.
pub async fn new_epoch(
    state: &AppState,
    txn: &impl ConnectionTrait,
    context: &context::Model,
    recipients: Vec<Recipient>,
    now: i64,
) -> ServiceResult<(i32, EpochKey)> {
    let epoch = context.current_epoch + 1;
    let key = crypto::random_bytes::<32>();
    let server_copy = crypto::ecies_encrypt(state.server_key.public_key(), &key)
        .map_err(ServiceError::internal)?;
    epoch_key::Entity::insert(epoch_key::ActiveModel {
        context_id: Set(context.id),
        epoch: Set(epoch),
        created_at: Set(now),
        wrapped_for_server: Set(server_copy),
    })
    .exec_without_returning(txn)
    .await?;
    insert_member_copies(
        txn,
        context.id,
        epoch,
        now,
        wrap_for(key, recipients).await?,
    )
    .await?;
    context::Entity::update_many()
        .col_expr(context::Column::CurrentEpoch, epoch.into())
        .filter(context::Column::Id.eq(context.id))
        .exec(txn)
        .await?;
    Ok((epoch, key))
}

/// Gives `recipient` wrapped copies of each of `epochs` (keys taken from committed epochs).
pub async fn grant_epochs(
    state: &AppState,
    txn: &impl ConnectionTrait,
    context_id: Uuid,
    recipient: &Recipient,
    epochs: impl IntoIterator<Item = (i32, EpochKey)>,
    now: i64,
) -> ServiceResult<()> {
    for (epoch, key) in epochs {
        let wrapped = wrap_for(key, vec![recipient.clone()]).await?;
        insert_member_copies(txn, context_id, epoch, now, wrapped).await?;
    }
    let _ = state;
    Ok(())
}

/// Every committed epoch of a context with its key, oldest first.
pub async fn all_epochs(
    state: &AppState,
    db: &impl ConnectionTrait,
    context_id: Uuid,
    up_to: i32,
) -> ServiceResult<Vec<(i32, EpochKey)>> {
    let mut out = Vec::with_capacity(up_to.max(0) as usize);
    for epoch in 1..=up_to {
        out.push((epoch, epoch_key(state, db, context_id, epoch).await?));
    }
    Ok(out)
}

async fn insert_member_copies(
    txn: &impl ConnectionTrait,
    context_id: Uuid,
    epoch: i32,
    now: i64,
    wrapped: Vec<(Uuid, Vec<u8>)>,
) -> ServiceResult<()> {
    if wrapped.is_empty() {
        return Ok(());
    }
    let mut wrapped = wrapped.into_iter().peekable();
    while wrapped.peek().is_some() {
        let rows =
            wrapped
                .by_ref()
                .take(crate::db::ROWS_PER_STATEMENT)
                .map(|(member_id, wrapped)| member_key::ActiveModel {
                    context_id: Set(context_id),
                    member_id: Set(member_id),
                    epoch: Set(epoch),
                    created_at: Set(now),
                    wrapped: Set(wrapped),
                });
        member_key::Entity::insert_many(rows)
            .on_conflict_do_nothing()
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Deletes every copy wrapped for a departed member.
pub async fn revoke_all(
    txn: &impl ConnectionTrait,
    context_id: Uuid,
    member_id: Uuid,
) -> ServiceResult<()> {
    member_key::Entity::delete_many()
        .filter(member_key::Column::ContextId.eq(context_id))
        .filter(member_key::Column::MemberId.eq(member_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// The epoch keys a member holds, wrapped for it, oldest epoch first.
pub async fn list_for_member(
    state: &AppState,
    context_id: Uuid,
    member_id: Uuid,
    params: &PageParams,
) -> ServiceResult<Page<KeyView>> {
    let scope = format!("keys:{context_id}:{member_id}");
    let request = state.cursors.request(&scope, params, false)?;
    let mut query = member_key::Entity::find()
        .filter(member_key::Column::ContextId.eq(context_id))
        .filter(member_key::Column::MemberId.eq(member_id));
    if let Some(after) = request.after {
        query = query.filter(member_key::Column::Epoch.gt(after.time));
    }
    let rows = query
        .order_by_asc(member_key::Column::Epoch)
        .limit(request.limit + 1)
        .all(&state.db.read)
        .await?;
    let page = state.cursors.page(&scope, &request, rows, |row| CursorKey {
        time: i64::from(row.epoch),
        id: Uuid::nil(),
    });
    Ok(page.map(|row| KeyView {
        epoch: row.epoch,
        encrypted_key: STANDARD.encode(&row.wrapped),
        created_at: rfc3339(row.created_at),
    }))
}
