//! The outbox: events written with the change they describe, a relay that publishes
//! committed rows in order, snapshots for (resuming) subscribers, and pruning.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use entity::{context_member, event, event_seq};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IsolationLevel, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Event, EventBus, EventType};
use crate::error::{ServiceError, ServiceResult};
use crate::plugins::Hook;
use crate::state::AppState;
use crate::time::now_ms;

/// How often the relay looks for rows committed by other nodes when nothing woke it.
const POLL: Duration = Duration::from_millis(250);
/// Rows the relay reads at a time.
const BATCH: u64 = 500;

/// The bus, this node's router and the relay's wake-up call.
pub struct EventHub {
    pub bus: Arc<dyn EventBus>,
    /// Routes the bus to this node's connections (started by [`spawn_relay`]).
    pub router: Arc<super::router::Router>,
    wake: Notify,
    /// The other nodes, when Redis is configured: wake-ups and ephemeral events go to them.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl EventHub {
    /// A hub on `bus` whose connections may each queue `queue` entries before they lag;
    /// with `cluster`, wake-ups and ephemeral events reach the other nodes too.
    pub fn new(
        bus: Arc<dyn EventBus>,
        queue: usize,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Self {
        Self {
            bus,
            router: super::router::Router::new(queue),
            wake: Notify::new(),
            cluster,
        }
    }

    /// Publishes an ephemeral event (typing, presence) straight on the bus: no outbox row,
    /// no `seq`, no replay. With Redis the other nodes get it too.
    pub fn publish_ephemeral(&self, event: Event) {
        self.publish_versioned(event, None);
    }

    /// [`EventHub::publish_ephemeral`] for a presence change decided in Redis with
    /// `version`: skipped when a newer change of the member was already delivered here.
    pub fn publish_versioned(&self, event: Event, version: Option<u64>) {
        let event = Arc::new(event.transient());
        if let Some(cluster) = &self.cluster {
            if let Some(version) = version
                && !cluster.fresh_presence(event.context_id, version)
            {
                return;
            }
            cluster.send_ephemeral(&event, version);
        }
        self.bus.publish(event);
    }

    /// Tells the relay that events were committed, and the other nodes' relays too.
    pub fn wake(&self) {
        self.wake.notify_one();
        if let Some(cluster) = &self.cluster {
            cluster.wake_peers();
        }
    }

    /// Tells only this node's relay (another node committed events).
    pub fn wake_local(&self) {
        self.wake.notify_one();
    }
}

/// Writes `events` to the outbox inside `txn`. Call it last before commit: taking the
/// sequence numbers locks the counter until the transaction ends, which makes sequence
/// order commit order.
pub async fn record(txn: &impl ConnectionTrait, events: Vec<Event>) -> ServiceResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let first = take_seqs(txn, events.len() as i64).await?;
    insert(txn, first, events).await
}

/// Reserves `count` sequence numbers and returns the first. This locks the counter row
/// until the transaction ends.
async fn take_seqs(txn: &impl ConnectionTrait, count: i64) -> ServiceResult<i64> {
    // One statement: the new top comes back with `RETURNING`.
    let top = event_seq::Entity::update_many()
        .col_expr(
            event_seq::Column::Value,
            Expr::col(event_seq::Column::Value).add(count),
        )
        .filter(event_seq::Column::Id.eq(1))
        .exec_with_returning(txn)
        .await?
        .first()
        .ok_or_else(|| ServiceError::internal("the event counter is missing"))?
        .value;
    Ok(top - count + 1)
}

/// Writes `events` with sequence numbers from `first` on.
async fn insert(txn: &impl ConnectionTrait, first: i64, events: Vec<Event>) -> ServiceResult<()> {
    let mut rows = Vec::with_capacity(events.len());
    for (offset, mut event) in events.into_iter().enumerate() {
        event.seq = first + offset as i64;
        let payload = serde_json::to_string(&event).map_err(ServiceError::internal)?;
        rows.push(event::ActiveModel {
            seq: Set(event.seq),
            created_at: Set(event.timestamp),
            payload: Set(payload),
        });
    }
    event::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Commits `txn` and wakes the relay.
pub async fn commit(state: &AppState, txn: sea_orm::DatabaseTransaction) -> ServiceResult<()> {
    txn.commit().await?;
    state.events.wake();
    state.search.wake.notify_one();
    Ok(())
}

/// Keeps the hook facts of every node current (see `service::facts`): messages sent
/// anywhere count for their senders; membership, role, deletion and settings changes drop
/// what is kept of the context.
fn note_facts(state: &AppState, event: &Event) {
    use super::ContextType;
    if !matches!(
        event.context_type,
        ContextType::Group | ContextType::Channel
    ) {
        return;
    }
    match event.event_type {
        EventType::MessageSent => {
            let field = |name: &str| event.data.get(name).and_then(serde_json::Value::as_str);
            let sender = field("senderId").and_then(|s| Uuid::parse_str(s).ok());
            let id = field("id").and_then(|s| Uuid::parse_str(s).ok());
            let at = field("createdAt")
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp_millis());
            if let (Some(sender), Some(id), Some(at)) = (sender, id, at) {
                state.facts.note_message(event.context_id, sender, id, at);
            }
        }
        EventType::MemberJoined
        | EventType::MemberLeft
        | EventType::MemberKicked
        | EventType::RoleChanged
        | EventType::MessageDeleted
        | EventType::ChannelUpdated
        | EventType::ChannelDeleted => {
            state.facts.forget(event.context_id);
            // Another node's change: what this node's reads cached of it is stale.
            state.gates.forget(event.context_id);
        }
        EventType::MemberMuted | EventType::MemberUnmuted => {
            state.gates.forget(event.context_id);
        }
        _ => {}
    }
}

pub(super) fn parse(row: event::Model) -> Option<Event> {
    match serde_json::from_str::<Event>(&row.payload) {
        Ok(mut event) => {
            event.seq = row.seq;
            Some(event)
        }
        Err(err) => {
            tracing::error!(seq = row.seq, error = %err, "an outbox row does not parse");
            None
        }
    }
}

/// The highest committed sequence number.
async fn committed_seq(db: &impl ConnectionTrait) -> ServiceResult<i64> {
    Ok(event_seq::Entity::find_by_id(1)
        .one(db)
        .await?
        .map_or(0, |row| row.value))
}

/// Starts the relay: publishes every row committed from now on, in order. While some
/// plugin defines `on_event`, each published batch also goes to [`super::on_event`],
/// which runs the hooks once across all nodes.
pub async fn spawn_relay(state: AppState) -> ServiceResult<()> {
    let mut last = committed_seq(&state.db.read).await?;
    super::router::spawn(state.events.router.clone(), state.events.bus.subscribe());
    let weak = state.downgrade();
    let hooks = super::on_event::spawn(state.downgrade());
    drop(state);
    tokio::spawn(async move {
        // Ends once the server is gone (see `WeakState`).
        while let Some(state) = weak.upgrade() {
            tokio::select! {
                () = state.events.wake.notified() => {},
                () = tokio::time::sleep(POLL) => {},
            }
            loop {
                let rows = event::Entity::find()
                    .filter(event::Column::Seq.gt(last))
                    .order_by_asc(event::Column::Seq)
                    .limit(BATCH)
                    .all(&state.db.read)
                    .await;
                let rows = match rows {
                    Ok(rows) => rows,
                    Err(err) => {
                        tracing::warn!(error = %err, "the event relay cannot read the outbox");
                        break;
                    }
                };
                let full = rows.len() as u64 == BATCH;
                let after = last;
                let hooked = state.plugins.wants(Hook::Event);
                let mut published = Vec::new();
                for row in rows {
                    last = row.seq;
                    if let Some(event) = parse(row) {
                        let event = Arc::new(event);
                        note_facts(&state, &event);
                        if hooked {
                            published.push(event.clone());
                        }
                        state.events.bus.publish(event);
                    }
                }
                if hooked && last > after {
                    let batch = super::on_event::Batch {
                        after,
                        last,
                        events: published,
                    };
                    // Delivery never waits for plugins: while the hooks are a whole queue
                    // behind, this batch's `on_event` calls are skipped.
                    match hooks.try_send(batch) {
                        Ok(()) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Full(batch)) => {
                            tracing::warn!(
                                first = batch.after + 1,
                                last = batch.last,
                                "on_event plugins are behind; skipping these events' hooks"
                            );
                        }
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                            tracing::warn!("the on_event task has stopped");
                        }
                    }
                }
                if !full {
                    break;
                }
            }
        }
    });
    Ok(())
}

/// Deletes events older than the retention window.
///
/// Events this node's search indexer has not applied yet are kept for up to a day more,
/// so a backend outage is caught up from the outbox rather than by a rebuild.
pub async fn prune(state: &AppState) -> ServiceResult<()> {
    let now = now_ms();
    let cutoff = now - state.config.event_retention.as_millis() as i64;
    let mut query = event::Entity::delete_many().filter(event::Column::CreatedAt.lt(cutoff));
    if now - cutoff < SEARCH_HOLD_MS {
        let indexed = state.search.indexed().unwrap_or(0);
        query = query.filter(
            sea_orm::Condition::any()
                .add(event::Column::Seq.lte(indexed))
                .add(event::Column::CreatedAt.lt(now - SEARCH_HOLD_MS)),
        );
    }
    query.exec(&state.db.write).await?;
    Ok(())
}

/// The longest the outbox keeps events for a search indexer that lags.
const SEARCH_HOLD_MS: i64 = 24 * 3600 * 1000;

/// Where a new subscription starts.
pub struct Snapshot {
    /// The member's view as of the first replayed event (or now, without replay).
    pub subscriber: super::filter::Subscriber,
    /// The newest committed event at the snapshot; live events up to it are duplicates.
    pub seq: i64,
    /// Events after the resume point, oldest first.
    pub replay: Vec<Event>,
    /// The resume point is older than the retention window: the client must refetch.
    pub resync_required: bool,
}

/// Reads, in one consistent snapshot, the member's groups and channels, the newest
/// committed event, and (with `resume`) every event after the resume point. Register with
/// the router *before* calling this, then activate with [`Snapshot::seq`] (see
/// [`super::router`]).
pub async fn snapshot(
    state: &AppState,
    member: Uuid,
    resume: Option<i64>,
) -> ServiceResult<Snapshot> {
    let txn = match state.db.backend() {
        DbBackend::Postgres => {
            state
                .db
                .read
                .begin_with_config(
                    Some(IsolationLevel::RepeatableRead),
                    Some(AccessMode::ReadOnly),
                )
                .await?
        }
        _ => state.db.read.begin().await?,
    };
    let contexts: HashMap<Uuid, Option<Uuid>> = context_member::Entity::find()
        .select_only()
        .column(context_member::Column::ContextId)
        .column(context_member::Column::HistoryAfter)
        .filter(context_member::Column::MemberId.eq(member))
        .into_tuple::<(Uuid, Option<Uuid>)>()
        .all(&txn)
        .await?
        .into_iter()
        .collect();
    let seq = committed_seq(&txn).await?;
    let mut replay = Vec::new();
    let mut resync_required = false;
    if resume.is_some_and(|from| from > seq) {
        // A point past the newest event comes from another history (a restored database,
        // another deployment): what the client holds cannot be trusted, so it refetches.
        resync_required = true;
    } else if let Some(from) = resume.filter(|from| *from < seq) {
        let oldest = event::Entity::find()
            .order_by_asc(event::Column::Seq)
            .one(&txn)
            .await?
            .map(|row| row.seq);
        if oldest.is_none_or(|oldest| oldest > from.saturating_add(1)) {
            resync_required = true;
        } else {
            replay = event::Entity::find()
                .filter(event::Column::Seq.gt(from))
                .filter(event::Column::Seq.lte(seq))
                .order_by_asc(event::Column::Seq)
                .all(&txn)
                .await?
                .into_iter()
                .filter_map(parse)
                .collect();
        }
    }
    txn.commit().await?;
    let mut subscriber = super::filter::Subscriber::new(member, contexts);
    subscriber.rewind(&replay);
    Ok(Snapshot {
        subscriber,
        seq,
        replay,
        resync_required,
    })
}
