//! Keeps the search index in step with the database, after commit, from the event outbox.
//!
//! The indexer reads outbox rows after the index's checkpoint (the sequence of the last
//! event it indexed, stored by the index with its data), in order and in batches, and
//! applies them by *state*: a `message_sent` or `message_edited` loads that message as it
//! is now and indexes its current text (or removes it when it is gone); a deletion removes
//! it; a `channel_deleted` removes the channel's messages. Then it commits the batch with
//! the batch's last sequence as the new checkpoint. Applying by state makes replays
//! harmless, so a crash between index commit and anything else loses nothing.
//!
//! It wakes on every commit on this node (the relay's wake-up) and polls the outbox for
//! other nodes' events, so each node's embedded index follows the shared stream. When the
//! outbox no longer holds the events after the checkpoint (pruned while the indexer was
//! down, or a new index), it rebuilds the index from the database instead. A backend that
//! does not answer is retried with back-off; the checkpoint stays where it was, so
//! nothing is skipped. The outbox is not pruned past the checkpoint for a day.

use std::collections::HashSet;
use std::time::Duration;

use entity::{context, context_message, event};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{IndexDoc, SearchError, SearchIndex};
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType};
use crate::service::keys;
use crate::state::AppState;

/// Events applied per index commit.
const BATCH: u64 = 1_000;
/// Messages loaded per query while rebuilding.
const REBUILD_BATCH: u64 = 1_000;
/// How often the indexer looks for events committed by other nodes.
const POLL: Duration = Duration::from_millis(250);
/// How often a node that does not index a shared backend looks at the lease.
const LEASE_POLL: Duration = Duration::from_secs(1);
/// Turns of the indexer between looks for a `reindex` request (about 2 s when idle).
const REQUEST_EVERY: u64 = 8;
/// The longest back-off while the backend does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why indexing stopped.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// What a catch-up did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Events applied.
    pub events: u64,
    /// Messages indexed by a rebuild (zero when none was needed).
    pub rebuilt: u64,
    /// The checkpoint afterwards.
    pub checkpoint: i64,
}

/// Starts the indexer for this node. It also carries out rebuilds that
/// `brightchat reindex` asks for while the server runs.
pub fn spawn(state: AppState) {
    crate::supervise::supervise(&state, "search indexer", |weak| async move {
        let mut backoff = Duration::from_millis(250);
        // Requests made before this start were served by the command itself.
        let mut served = match weak.upgrade() {
            Some(state) => latest_request(&state).await.ok().flatten().map(|r| r.id),
            None => return,
        };
        let mut turns: u64 = 0;
        // Ends once the server is gone (see `WeakState`).
        while let Some(state) = weak.upgrade() {
            // A shared backend is indexed by one node (see `search::lease`); the others
            // follow its checkpoint, which pruning waits for.
            if state.search.index.shared() {
                match state.search.lease.hold(&state.db.write).await {
                    Ok(true) => {}
                    Ok(false) => {
                        if let Ok(Some(checkpoint)) = state.search.index.checkpoint().await {
                            state.search.set_indexed(checkpoint);
                        }
                        drop(state);
                        tokio::time::sleep(LEASE_POLL).await;
                        continue;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot take the search indexer lease");
                        drop(state);
                        tokio::time::sleep(LEASE_POLL).await;
                        continue;
                    }
                }
            }
            turns += 1;
            match catch_up(&state, state.search.index.as_ref()).await {
                Ok(done) => {
                    state.search.set_indexed(done.checkpoint);
                    backoff = Duration::from_millis(250);
                    // Look for a `reindex` request every few seconds.
                    if turns.is_multiple_of(REQUEST_EVERY)
                        && let Ok(Some(request)) = latest_request(&state).await
                        && served != Some(request.id)
                    {
                        served = Some(request.id);
                        serve_request(&state, &request).await;
                    }
                    tokio::select! {
                        () = state.search.wake.notified() => {},
                        () = tokio::time::sleep(POLL) => {},
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, backend = state.search.index.name(), retry_in = ?backoff, "search indexing failed; will retry");
                    drop(state);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
}

/// Applies every outbox event after the index's checkpoint (rebuilding first when they
/// are no longer all there) and returns what it did.
pub async fn catch_up(state: &AppState, index: &dyn SearchIndex) -> Result<CatchUp, IndexError> {
    let mut done = CatchUp::default();
    let mut checkpoint = match index.checkpoint().await? {
        Some(checkpoint) if !gap_after(state, checkpoint).await? => checkpoint,
        _ => {
            let (messages, checkpoint) = rebuild(state, index, None, &|_, _| {}).await?;
            done.rebuilt = messages;
            checkpoint
        }
    };
    // Only what is settled: positions past it may still fill (see `events::positions`).
    let bound = crate::events::outbox::settled(state).await?;
    loop {
        let rows = event::Entity::find()
            .filter(event::Column::Seq.gt(checkpoint))
            .filter(event::Column::Seq.lte(bound))
            .order_by_asc(event::Column::Seq)
            .limit(BATCH)
            .all(&state.db.read)
            .await
            .map_err(ServiceError::from)?;
        let Some(last) = rows.last().map(|row| row.seq) else {
            break;
        };
        // Holes are rolled-back transactions' positions, unless pruning passed the
        // checkpoint: then events were lost to this index, so it is rebuilt rather than
        // left silently behind.
        if gap_after(state, checkpoint).await? {
            let (messages, rebuilt_at) = rebuild(state, index, None, &|_, _| {}).await?;
            done.rebuilt += messages;
            checkpoint = rebuilt_at;
            continue;
        }
        let full = rows.len() as u64 == BATCH;
        let events: Vec<Event> = rows
            .into_iter()
            .filter_map(|row| serde_json::from_str(&row.payload).ok())
            .collect();
        apply(state, index, &events).await?;
        index.commit(last).await?;
        done.events += events.len() as u64;
        checkpoint = last;
        if !full {
            break;
        }
    }
    done.checkpoint = checkpoint;
    Ok(done)
}

/// Whether events after `checkpoint` are missing from the outbox (pruned), so replaying it
/// cannot bring the index up to date.
async fn gap_after(state: &AppState, checkpoint: i64) -> ServiceResult<bool> {
    Ok(crate::events::positions::pruned_through(&state.db.read).await? > checkpoint)
}

/// Applies a batch of events to the index by state (see the module doc).
async fn apply(
    state: &AppState,
    index: &dyn SearchIndex,
    events: &[Event],
) -> Result<(), IndexError> {
    let mut touched: Vec<Uuid> = Vec::new();
    let mut seen = HashSet::new();
    let mut deleted: Vec<Uuid> = Vec::new();
    let mut departures: HashSet<Uuid> = HashSet::new();
    for event in events
        .iter()
        .filter(|e| e.context_type == ContextType::Channel)
    {
        match event.event_type {
            EventType::MessageSent | EventType::MessageEdited => {
                if let Some(id) = message_id(event)
                    && seen.insert(id)
                {
                    touched.push(id);
                }
            }
            EventType::MessageDeleted => deleted.extend(message_id(event)),
            EventType::MemberLeft | EventType::MemberKicked => {
                // The last member leaving deletes the channel (its messages go by cascade).
                departures.insert(event.context_id);
            }
            EventType::ChannelDeleted => {
                // Flush what came before, so an earlier send cannot come back after this.
                flush(state, index, &mut touched, &mut deleted).await?;
                seen.clear();
                index.delete_channel(event.context_id).await?;
            }
            _ => {}
        }
    }
    flush(state, index, &mut touched, &mut deleted).await?;
    if !departures.is_empty() {
        let ids: Vec<Uuid> = departures.into_iter().collect();
        let remaining: HashSet<Uuid> = context::Entity::find()
            .select_only()
            .column(context::Column::Id)
            .filter(context::Column::Id.is_in(ids.clone()))
            .into_tuple::<Uuid>()
            .all(&state.db.read)
            .await
            .map_err(ServiceError::from)?
            .into_iter()
            .collect();
        for gone in ids.into_iter().filter(|id| !remaining.contains(id)) {
            index.delete_channel(gone).await?;
        }
    }
    Ok(())
}

fn message_id(event: &Event) -> Option<Uuid> {
    event.message_id.or_else(|| {
        ["id", "messageId"]
            .iter()
            .find_map(|key| event.data.get(*key)?.as_str()?.parse().ok())
    })
}

async fn flush(
    state: &AppState,
    index: &dyn SearchIndex,
    touched: &mut Vec<Uuid>,
    deleted: &mut Vec<Uuid>,
) -> Result<(), IndexError> {
    if !touched.is_empty() {
        let rows = context_message::Entity::find()
            .filter(context_message::Column::Id.is_in(touched.clone()))
            .all(&state.db.read)
            .await
            .map_err(ServiceError::from)?;
        let present: HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
        deleted.extend(touched.iter().filter(|id| !present.contains(id)));
        let docs = documents(state, rows).await?;
        if !docs.is_empty() {
            index.upsert(docs).await?;
        }
        touched.clear();
    }
    if !deleted.is_empty() {
        index.delete_messages(std::mem::take(deleted)).await?;
    }
    Ok(())
}

/// Index documents for channel messages: each decrypted with the server's copy of its
/// epoch key. A message that does not decrypt is logged and left out.
pub async fn documents(
    state: &AppState,
    rows: Vec<context_message::Model>,
) -> ServiceResult<Vec<IndexDoc>> {
    let mut docs = Vec::with_capacity(rows.len());
    for row in rows {
        let key = keys::epoch_key(state, &state.db.read, row.context_id, row.key_epoch).await?;
        match crate::crypto::open(&key, row.id.to_string().as_bytes(), &row.ciphertext) {
            Ok(plain) => docs.push(IndexDoc {
                message_id: row.id,
                channel_id: row.context_id,
                sender_id: row.sender_id,
                created_at_ms: row.created_at,
                text: String::from_utf8_lossy(&plain).into_owned(),
            }),
            Err(err) => {
                tracing::error!(message_id = %row.id, error = %err, "a channel message does not decrypt; not indexed");
            }
        }
    }
    Ok(docs)
}

/// Rebuilds the index from the database: every channel, or one. `progress(done, total)`
/// is called after each batch. Returns the messages indexed and the checkpoint committed.
///
/// A full rebuild clears the index first and commits the outbox position read before it
/// started, so events committed during the rebuild are applied again afterwards (harmless:
/// they are applied by state). A one-channel rebuild replaces that channel's messages and
/// keeps the checkpoint. Safe while the server runs.
pub async fn rebuild(
    state: &AppState,
    index: &dyn SearchIndex,
    channel: Option<Uuid>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(u64, i64), IndexError> {
    let checkpoint = match channel {
        None => {
            let position = crate::events::outbox::settled(state).await?;
            index.clear().await?;
            position
        }
        Some(id) => {
            index.delete_channel(id).await?;
            index.checkpoint().await?.unwrap_or(0)
        }
    };
    let channels: Vec<Uuid> = match channel {
        Some(id) => vec![id],
        None => context::Entity::find()
            .select_only()
            .column(context::Column::Id)
            .filter(context::Column::Kind.eq("channel"))
            .into_tuple()
            .all(&state.db.read)
            .await
            .map_err(ServiceError::from)?,
    };
    let total = context_message::Entity::find()
        .filter(context_message::Column::ContextId.is_in(channels.clone()))
        .count(&state.db.read)
        .await
        .map_err(ServiceError::from)?;
    let mut done = 0u64;
    progress(done, total);
    for channel_id in channels {
        let mut after: Option<Uuid> = None;
        loop {
            let mut query = context_message::Entity::find()
                .filter(context_message::Column::ContextId.eq(channel_id))
                .order_by_asc(context_message::Column::Id)
                .limit(REBUILD_BATCH);
            if let Some(after) = after {
                query = query.filter(context_message::Column::Id.gt(after));
            }
            let rows = query
                .all(&state.db.read)
                .await
                .map_err(ServiceError::from)?;
            let Some(last) = rows.last().map(|r| r.id) else {
                break;
            };
            let count = rows.len() as u64;
            let docs = documents(state, rows).await?;
            if !docs.is_empty() {
                index.upsert(docs).await?;
            }
            done += count;
            progress(done, total.max(done));
            after = Some(last);
            if count < REBUILD_BATCH {
                break;
            }
        }
    }
    index.commit(checkpoint).await?;
    Ok((done, checkpoint))
}

/// Where a `brightchat reindex` asks running servers to rebuild (the embedded index can be
/// written by one process only), and where they report progress.
const REQUEST_KEY: &str = "search_rebuild_request";
const PROGRESS_KEY: &str = "search_rebuild_progress";

/// A rebuild asked of the running servers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebuildRequest {
    pub id: Uuid,
    /// One channel, or every channel.
    pub channel: Option<Uuid>,
}

/// How far a requested rebuild got.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebuildProgress {
    pub id: Uuid,
    pub done: u64,
    pub total: u64,
    pub finished: bool,
    pub error: Option<String>,
}

async fn put_meta(db: &crate::db::Db, name: &str, value: String) -> ServiceResult<()> {
    use entity::server_meta;
    use sea_orm::sea_query::OnConflict;
    server_meta::Entity::insert(server_meta::ActiveModel {
        name: sea_orm::Set(name.to_owned()),
        value: sea_orm::Set(value),
    })
    .on_conflict(
        OnConflict::column(server_meta::Column::Name)
            .update_column(server_meta::Column::Value)
            .to_owned(),
    )
    .exec_without_returning(&db.write)
    .await?;
    Ok(())
}

async fn get_meta<T: serde::de::DeserializeOwned>(
    db: &crate::db::Db,
    name: &str,
) -> ServiceResult<Option<T>> {
    let row = entity::server_meta::Entity::find_by_id(name.to_owned())
        .one(&db.read)
        .await?;
    Ok(row.and_then(|row| serde_json::from_str(&row.value).ok()))
}

/// Asks the running servers to rebuild their index (all channels, or one).
pub async fn request_rebuild(db: &crate::db::Db, channel: Option<Uuid>) -> ServiceResult<Uuid> {
    let request = RebuildRequest {
        id: Uuid::now_v7(),
        channel,
    };
    let value = serde_json::to_string(&request).map_err(ServiceError::internal)?;
    put_meta(db, REQUEST_KEY, value).await?;
    Ok(request.id)
}

/// The progress of a requested rebuild, once a server has taken it up.
pub async fn rebuild_progress(
    db: &crate::db::Db,
    id: Uuid,
) -> ServiceResult<Option<RebuildProgress>> {
    Ok(get_meta::<RebuildProgress>(db, PROGRESS_KEY)
        .await?
        .filter(|progress| progress.id == id))
}

/// The newest rebuild request, if any.
async fn latest_request(state: &AppState) -> ServiceResult<Option<RebuildRequest>> {
    get_meta(&state.db, REQUEST_KEY).await
}

/// Carries out `request` on this node's index, reporting progress in the database twice
/// a second while it runs.
async fn serve_request(state: &AppState, request: &RebuildRequest) {
    tracing::info!(request = %request.id, channel = ?request.channel, "rebuilding the search index as asked");
    let latest = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let progress = |finished: bool, error: Option<String>| {
        let (done, total) = latest.lock().map(|l| *l).unwrap_or_default();
        RebuildProgress {
            id: request.id,
            done,
            total,
            finished,
            error,
        }
    };
    let ticker = {
        let db = state.db.clone();
        let latest = latest.clone();
        let id = request.id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (done, total) = latest.lock().map(|l| *l).unwrap_or_default();
                let progress = RebuildProgress {
                    id,
                    done,
                    total,
                    ..Default::default()
                };
                report(&db, &progress).await;
            }
        })
    };
    let result = rebuild(
        state,
        state.search.index.as_ref(),
        request.channel,
        &|done, total| {
            if let Ok(mut latest) = latest.lock() {
                *latest = (done, total);
            }
        },
    )
    .await;
    ticker.abort();
    let error = result.as_ref().err().map(ToString::to_string);
    if let Some(error) = &error {
        tracing::warn!(%error, "the requested rebuild failed");
    }
    report(&state.db, &progress(true, error)).await;
}

async fn report(db: &crate::db::Db, progress: &RebuildProgress) {
    if let Ok(value) = serde_json::to_string(progress)
        && let Err(err) = put_meta(db, PROGRESS_KEY, value).await
    {
        tracing::warn!(error = %err, "cannot record rebuild progress");
    }
}
