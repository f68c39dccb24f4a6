//! The plugins' `on_event` hook, fed by the outbox relay: every committed
//! `communication:*` event runs it once across all nodes of a deployment.
//!
//! Every node's relay publishes every event (each node has its own connections), but
//! `on_event` must not run once per node. After publishing a batch, a relay hands it here
//! (only while some plugin defines `on_event`); this task claims the batch's sequence
//! numbers with one compare-and-swap `UPDATE` on the `server_meta` row [`CLAIM_KEY`],
//! which holds the last sequence number whose hooks have been run:
//!
//! ```sql
//! UPDATE server_meta SET value = '<last>' WHERE name = 'plugins.on_event_seq' AND value = '<first - 1>'
//! ```
//!
//! Only the node whose update changes the row runs the hooks for those events. A node
//! that loses the race reads the row and claims whatever part of its batch is still
//! unclaimed, so batches cut differently on different nodes are still covered once. The
//! row only moves forward.
//!
//! Edges: a node that starts (or whose plugins start defining `on_event`) may find the
//! row behind its own position; it claims from there and also runs the events in the gap
//! that are under [`GAP_FRESH_MS`] old (another live node was about to claim them), while
//! older ones (from a time when no node ran `on_event`) are skipped rather than replayed.
//! A node that dies between its claim and the hooks loses those events' hooks: at most
//! once, exactly once while nodes live. Which events `on_event` sees at all is
//! [`crate::service::hooks::runs_on_event`].

use std::sync::Arc;

use entity::{event, server_meta};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::mpsc;

use super::Event;
use crate::error::{ServiceError, ServiceResult};
use crate::state::{AppState, WeakState};
use crate::time::now_ms;

/// The `server_meta` row holding the last sequence number whose `on_event` hooks ran.
pub const CLAIM_KEY: &str = "plugins.on_event_seq";
/// Events in a gap before a node's batch are run only when younger than this.
pub const GAP_FRESH_MS: i64 = 10_000;
/// Batches waiting for their hooks; beyond this the relay skips hooks rather than wait.
const QUEUE: usize = 256;
/// Most events read back from the outbox to fill a gap.
const GAP_LIMIT: u64 = 500;

/// One batch the relay published: the sequence numbers after `after` up to `last`
/// (rows that do not parse leave holes in `events`).
pub struct Batch {
    pub after: i64,
    pub last: i64,
    pub events: Vec<Arc<Event>>,
}

/// Where the relay hands batches.
pub type Feed = mpsc::Sender<Batch>;

/// Starts the task that claims batches and runs `on_event` on them, one at a time.
pub fn spawn(weak: WeakState) -> Feed {
    let (feed, mut batches) = mpsc::channel::<Batch>(QUEUE);
    tokio::spawn(async move {
        while let Some(batch) = batches.recv().await {
            let Some(state) = weak.upgrade() else { break };
            let events = match claim(&state, &batch).await {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot claim events for on_event");
                    continue;
                }
            };
            for event in events {
                match crate::service::hooks::on_event(&state, &event).await {
                    Ok(()) => {}
                    // The group or channel is gone (deleted by this very event, say).
                    Err(ServiceError::NotFound(_)) => {}
                    Err(err) => {
                        tracing::warn!(seq = event.seq, error = %err, "on_event failed");
                    }
                }
            }
        }
    });
    feed
}

/// Claims what is unclaimed of `batch` and returns the events to run, oldest first
/// (none when other nodes claimed them all).
async fn claim(state: &AppState, batch: &Batch) -> ServiceResult<Vec<Arc<Event>>> {
    let db = &state.db.write;
    if batch.last <= batch.after {
        return Ok(Vec::new());
    }
    let mut from = batch.after;
    for _ in 0..8 {
        if compare_and_swap(db, from, batch.last).await? {
            let mut events = if from < batch.after {
                fresh_gap(state, from, batch.after).await?
            } else {
                Vec::new()
            };
            events.extend(batch.events.iter().filter(|e| e.seq > from).cloned());
            return Ok(events);
        }
        match claimed(db).await? {
            Some(seen) if seen >= batch.last => return Ok(Vec::new()),
            Some(seen) => from = seen,
            None => {
                // The first claim ever: make the row, claiming this batch.
                let row = server_meta::ActiveModel {
                    name: sea_orm::Set(CLAIM_KEY.to_owned()),
                    value: sea_orm::Set(batch.last.to_string()),
                };
                let inserted = server_meta::Entity::insert(row)
                    .on_conflict_do_nothing()
                    .exec_without_returning(db)
                    .await;
                if matches!(inserted, Ok(sea_orm::TryInsertResult::Inserted(n)) if n > 0) {
                    return Ok(batch.events.clone());
                }
            }
        }
    }
    Err(ServiceError::internal(
        "the on_event claim kept moving; events skipped",
    ))
}

/// `UPDATE … SET value = to WHERE name = CLAIM_KEY AND value = from`: whether it changed
/// the row.
async fn compare_and_swap(db: &impl ConnectionTrait, from: i64, to: i64) -> ServiceResult<bool> {
    let result = server_meta::Entity::update_many()
        .col_expr(server_meta::Column::Value, to.to_string().into())
        .filter(server_meta::Column::Name.eq(CLAIM_KEY))
        .filter(server_meta::Column::Value.eq(from.to_string()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The last claimed sequence number (`None` before the first claim).
async fn claimed(db: &impl ConnectionTrait) -> ServiceResult<Option<i64>> {
    let row = server_meta::Entity::find_by_id(CLAIM_KEY.to_owned())
        .one(db)
        .await?;
    Ok(row.and_then(|row| row.value.parse().ok()))
}

/// Events after `from` up to `until` younger than [`GAP_FRESH_MS`], read back from the
/// outbox.
async fn fresh_gap(state: &AppState, from: i64, until: i64) -> ServiceResult<Vec<Arc<Event>>> {
    let rows = event::Entity::find()
        .filter(event::Column::Seq.gt(from))
        .filter(event::Column::Seq.lte(until))
        .filter(event::Column::CreatedAt.gte(now_ms() - GAP_FRESH_MS))
        .order_by_asc(event::Column::Seq)
        .limit(GAP_LIMIT)
        .all(&state.db.read)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(super::outbox::parse)
        .map(Arc::new)
        .collect())
}
