//! Key epochs of groups and channels (CONTRACT.md "Encryption").
//!
//! Each epoch has a random 32-byte AES-256-GCM key, stored wrapped with ECIES for the
//! server key. Rotation makes a new epoch (one ECIES, whatever the member count) and keeps
//! the old ones. Which epochs a member may read is recorded on its membership
//! (`key_epoch_from`: every epoch from there to the current one); its wrapped copy of an
//! epoch is made on its first read of `…/keys` and kept, so later reads return the same
//! bytes. A departed member's copies are deleted with its membership.
//!
//! Unwrapped keys are cached per node, keyed by (context, epoch); an epoch's key never
//! changes once committed, so the cache needs no invalidation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::HashMap;

use entity::{context, epoch_key, member, member_key};
use sea_orm::sea_query::LockType;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};
use serde::Serialize;
use uuid::Uuid;

use super::contexts::{Access, Kind};
use super::pagination::{CursorKey, Page, PageParams};
use crate::crypto::{self, EpochKey};
use crate::error::{ServiceError, ServiceResult};
use crate::state::AppState;
use crate::time::{now_ms, rfc3339};

/// Unwrapped epoch keys by (context, epoch).
pub struct EpochKeyCache {
    /// Wiped when evicted or dropped.
    cache: quick_cache::sync::Cache<(Uuid, i32), crypto::Secret32>,
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
        return Ok(key.0);
    }
    let row = epoch_key::Entity::find_by_id((context_id, epoch))
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::internal(format!("missing epoch {epoch} of {context_id}")))?;
    let key = unwrap_server_copy(state, &row.wrapped_for_server)?;
    state
        .epoch_keys
        .cache
        .insert((context_id, epoch), crypto::Secret32(key));
    Ok(key)
}

fn unwrap_server_copy(state: &AppState, wrapped: &[u8]) -> ServiceResult<EpochKey> {
    let bytes = crypto::ecies_decrypt(state.server_key.secret_bytes(), wrapped)
        .map_err(ServiceError::internal)?;
    bytes
        .try_into()
        .map_err(|_| ServiceError::internal("an epoch key is not 32 bytes"))
}

/// Starts a new epoch inside `txn`: a fresh key wrapped for the server only, and the
/// context's current epoch moved to it. Members' copies are made when each first reads its
/// keys ([`list_for_member`]), so this costs one ECIES whatever the member count. Returns
/// the epoch number and its key.
pub async fn new_epoch(
    state: &AppState,
    txn: &impl ConnectionTrait,
    context: &context::Model,
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
    context::Entity::update_many()
        .col_expr(context::Column::CurrentEpoch, epoch.into())
        .filter(context::Column::Id.eq(context.id))
        .exec(txn)
        .await?;
    Ok((epoch, key))
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

/// The epoch keys a member may read, wrapped for it, oldest epoch first: every epoch from
/// its membership's `key_epoch_from` to the context's current one, a page at a time (the
/// cursor is the epoch). Copies it does not hold yet are made now and kept, so every later
/// read returns the same bytes. `access` is the reader's membership, already checked.
pub async fn list_for_member(
    state: &AppState,
    access: &Access,
    params: &PageParams,
) -> ServiceResult<Page<KeyView>> {
    let context_id = access.context.id;
    let member_id = access.membership.member_id;
    let scope = format!("keys:{context_id}:{member_id}");
    let request = state.cursors.request(&scope, params, false)?;
    let entitled = access.membership.key_epoch_from.max(1);
    let from = match request.after {
        // Cursors are signed, so `time` is an epoch this route handed out.
        Some(after) => i32::try_from(after.time.saturating_add(1))
            .unwrap_or(i32::MAX)
            .max(entitled),
        None => entitled,
    };
    let current = access.context.current_epoch;
    let epochs = if from > current {
        Vec::new()
    } else {
        epoch_key::Entity::find()
            .filter(epoch_key::Column::ContextId.eq(context_id))
            .filter(epoch_key::Column::Epoch.gte(from))
            .filter(epoch_key::Column::Epoch.lte(current))
            .order_by_asc(epoch_key::Column::Epoch)
            .limit(request.limit + 1)
            .all(&state.db.read)
            .await?
    };
    let page = state
        .cursors
        .page(&scope, &request, epochs, |row| CursorKey {
            time: i64::from(row.epoch),
            id: Uuid::nil(),
        });
    let (Some(first), Some(last)) = (page.items.first(), page.items.last()) else {
        return Ok(Page {
            items: Vec::new(),
            cursor: page.cursor,
            has_more: page.has_more,
        });
    };
    let mut held = copies(
        &state.db.read,
        context_id,
        member_id,
        first.epoch,
        last.epoch,
    )
    .await?;
    let missing: Vec<epoch_key::Model> = page
        .items
        .iter()
        .filter(|row| !held.contains_key(&row.epoch))
        .cloned()
        .collect();
    if !missing.is_empty() {
        held.extend(make_copies(state, &access.context, member_id, missing).await?);
    }
    let items = page
        .items
        .iter()
        .filter_map(|row| {
            held.remove(&row.epoch).map(|copy| KeyView {
                epoch: row.epoch,
                encrypted_key: STANDARD.encode(&copy.wrapped),
                created_at: rfc3339(row.created_at),
            })
        })
        .collect();
    Ok(Page {
        items,
        cursor: page.cursor,
        has_more: page.has_more,
    })
}

/// The copies a member holds of epochs `first..=last`, by epoch.
async fn copies(
    db: &impl ConnectionTrait,
    context_id: Uuid,
    member_id: Uuid,
    first: i32,
    last: i32,
) -> ServiceResult<HashMap<i32, member_key::Model>> {
    Ok(member_key::Entity::find()
        .filter(member_key::Column::ContextId.eq(context_id))
        .filter(member_key::Column::MemberId.eq(member_id))
        .filter(member_key::Column::Epoch.gte(first))
        .filter(member_key::Column::Epoch.lte(last))
        .all(db)
        .await?
        .into_iter()
        .map(|row| (row.epoch, row))
        .collect())
}

/// Makes and stores the member's copies of `missing` epochs, and returns the copies kept.
///
/// The wrapping happens first, off the async executor. The insert then runs in a write
/// transaction that holds the context row (on PostgreSQL, `FOR KEY SHARE`: membership
/// changes hold `FOR UPDATE`, so none runs meanwhile; SQLite has one writer) and checks
/// that the member is still entitled, so a member who departs meanwhile gets nothing and
/// keeps no copy. Two first reads at once both insert with `ON CONFLICT DO NOTHING` and
/// both return the row that was kept, read back inside the transaction.
async fn make_copies(
    state: &AppState,
    context: &context::Model,
    member_id: Uuid,
    missing: Vec<epoch_key::Model>,
) -> ServiceResult<HashMap<i32, member_key::Model>> {
    let public_key = member::Entity::find_by_id(member_id)
        .one(&state.db.read)
        .await?
        .ok_or_else(|| ServiceError::unauthorized("Authentication required"))?
        .public_key;
    let worker = state.clone();
    let context_id = context.id;
    let wrapped = state
        .crypto
        .run(move || {
            missing
                .into_iter()
                .map(|row| {
                    let key = match worker.epoch_keys.cache.get(&(context_id, row.epoch)) {
                        Some(key) => key.0,
                        None => {
                            let key = unwrap_server_copy(&worker, &row.wrapped_for_server)?;
                            worker
                                .epoch_keys
                                .cache
                                .insert((context_id, row.epoch), crypto::Secret32(key));
                            key
                        }
                    };
                    let copy =
                        crypto::ecies_encrypt(&public_key, &key).map_err(ServiceError::internal)?;
                    Ok((row.epoch, copy))
                })
                .collect::<ServiceResult<Vec<_>>>()
        })
        .await??;

    let txn = state.db.write.begin().await?;
    let mut locked = context::Entity::find_by_id(context_id);
    if txn.get_database_backend() == DbBackend::Postgres {
        locked = locked.lock(LockType::KeyShare);
    }
    // Gone meanwhile (its last member left): the 404 of its kind.
    let context = locked.one(&txn).await?.ok_or_else(|| {
        if context.kind == Kind::Channel.as_str() {
            Kind::Channel.not_found()
        } else {
            Kind::Group.not_found()
        }
    })?;
    let membership = super::contexts::membership(&txn, context_id, member_id)
        .await?
        .ok_or_else(|| super::contexts::non_member_error(&context))?;
    let entitled = membership.key_epoch_from.max(1)..=context.current_epoch;
    let wrapped: Vec<(i32, Vec<u8>)> = wrapped
        .into_iter()
        .filter(|(epoch, _)| entitled.contains(epoch))
        .collect();
    let (Some(first), Some(last)) = (
        wrapped.iter().map(|(epoch, _)| *epoch).min(),
        wrapped.iter().map(|(epoch, _)| *epoch).max(),
    ) else {
        return Ok(HashMap::new());
    };
    let now = now_ms();
    let rows = wrapped
        .into_iter()
        .map(|(epoch, copy)| member_key::ActiveModel {
            context_id: Set(context_id),
            member_id: Set(member_id),
            epoch: Set(epoch),
            created_at: Set(now),
            wrapped: Set(copy),
        });
    member_key::Entity::insert_many(rows)
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
    let kept = copies(&txn, context_id, member_id, first, last).await?;
    txn.commit().await?;
    Ok(kept)
}
