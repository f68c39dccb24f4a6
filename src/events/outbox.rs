//! The outbox: events written with the change they describe, a relay that publishes
//! committed rows in order, snapshots for (resuming) subscribers, and pruning.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use entity::{context_member, event, server_meta};
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
use crate::state::WeakState;
use crate::time::now_ms;

/// How often the relay looks for rows committed by other nodes when nothing woke it.
const POLL: Duration = Duration::from_millis(250);
/// The longest a new subscription waits for the relay to publish what was committed
/// before it (then it starts from the relay's position; nothing is lost either way).
const CATCH_UP: Duration = Duration::from_secs(2);
/// Rows the relay reads at a time.
const BATCH: u64 = 500;

/// The bus, this node's router and the relay's wake-up call.
pub struct EventHub {
    pub bus: Arc<dyn EventBus>,
    /// Routes the bus to this node's connections (started by [`spawn_relay`]).
    pub router: Arc<super::router::Router>,
    wake: Notify,
    /// Tells waiters that the relay moved on (see [`EventHub::caught_up`]).
    moved: Notify,
    /// Every event up to this position has been published on this node (or is settled
    /// never to exist); `-1` until the relay starts.
    settled: AtomicI64,
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
            moved: Notify::new(),
            settled: AtomicI64::new(-1),
            cluster,
        }
    }

    /// The position this node's relay has published up to, once it runs.
    pub fn published(&self) -> Option<i64> {
        let seq = self.settled.load(Ordering::Acquire);
        (seq >= 0).then_some(seq)
    }

    /// Publishes an ephemeral event (typing, presence) straight on the bus: no outbox row,
    /// no `seq`, no replay. With Redis the other nodes get it too.
    pub fn publish_ephemeral(&self, event: Event) {
        self.publish_versioned(event, None);
    }

    /// Waits (at most `limit`) until this node's relay has published up to `seq`, and
    /// returns its position then.
    pub async fn caught_up(&self, seq: i64, limit: Duration) -> Option<i64> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let moved = self.moved.notified();
            let now = self.published()?;
            if now >= seq {
                return Some(now);
            }
            self.wake.notify_one();
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return self.published();
            }
        }
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

/// Writes `events` to the outbox inside `txn`. Call it last before commit (see
/// [`super::positions`] for how positions are taken on each backend).
pub async fn record(txn: &impl ConnectionTrait, events: Vec<Event>) -> ServiceResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let seqs = super::positions::take(txn, events.len()).await?;
    insert(txn, seqs, events).await
}

/// Writes `events` at positions `seqs` (one each, ascending).
async fn insert(
    txn: &impl ConnectionTrait,
    seqs: Vec<i64>,
    events: Vec<Event>,
) -> ServiceResult<()> {
    let mut rows = Vec::with_capacity(events.len());
    for (seq, mut event) in seqs.into_iter().zip(events) {
        event.seq = seq;
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

/// Where readers may read up to: this node's relay position, or, without a relay (the
/// maintenance commands), a settled position computed from the database.
pub async fn settled(state: &AppState) -> ServiceResult<i64> {
    match state.events.published() {
        Some(seq) => Ok(seq),
        None => super::positions::settled(&state.db.read).await,
    }
}

/// Starts the relay: publishes every row committed from now on, in order. While some
/// plugin defines `on_event`, each published batch also goes to [`super::on_event`],
/// which runs the hooks once across all nodes.
pub async fn spawn_relay(state: AppState) -> ServiceResult<()> {
    let cursor = super::positions::Cursor::at(super::positions::settled(&state.db.read).await?);
    state.events.settled.store(cursor.last(), Ordering::Release);
    let router = state.events.router.clone();
    let mut first_bus = Some(state.events.bus.subscribe());
    crate::supervise::supervise(&state, "event router", move |weak| {
        // A restarted router missed what was published meanwhile: every connection
        // resumes, as after a lag.
        let bus = first_bus.take().or_else(|| {
            weak.upgrade().map(|state| {
                state.events.router.cut_all();
                state.events.bus.subscribe()
            })
        });
        let router = router.clone();
        async move {
            if let Some(bus) = bus {
                super::router::run(router, bus).await;
            }
        }
    });
    let hooks = super::on_event::spawn(state.downgrade());
    let mut first_cursor = Some(cursor);
    crate::supervise::supervise(&state, "event relay", move |weak| {
        // A restarted relay goes on after what it published.
        let cursor = first_cursor.take().unwrap_or_else(|| {
            super::positions::Cursor::at(
                weak.upgrade()
                    .map_or(0, |state| state.events.settled.load(Ordering::Acquire)),
            )
        });
        relay(weak, cursor, hooks.clone())
    });
    Ok(())
}

/// The relay's loop; it ends once the server is gone (see `WeakState`).
async fn relay(
    weak: WeakState,
    mut cursor: super::positions::Cursor,
    hooks: super::on_event::Feed,
) {
    // Ends once the server is gone (see `WeakState`).
    while let Some(state) = weak.upgrade() {
        // While a hole is waited on, look again soon.
        let pause = if cursor.waiting() {
            super::positions::GAP_RETRY
        } else {
            POLL
        };
        tokio::select! {
            () = state.events.wake.notified() => {},
            () = tokio::time::sleep(pause) => {},
        }
        loop {
            let read = super::positions::read_after(&state.db.read, cursor.last(), BATCH).await;
            let (rows, horizon) = match read {
                Ok(read) => read,
                Err(err) => {
                    tracing::warn!(error = %err, "the event relay cannot read the outbox");
                    break;
                }
            };
            let full = rows.len() as u64 == BATCH;
            let after = cursor.last();
            let rows = cursor.admit(rows, horizon.as_ref());
            let last = cursor.last();
            let hooked = state.plugins.wants(Hook::Event);
            let mut published = Vec::new();
            state.metrics.events_relayed.inc_by(rows.len() as u64);
            for row in rows {
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
            // A hole just seen: list the event writers that may fill it (after the
            // read that showed it, see `positions`).
            if cursor.needs_writers() {
                match super::positions::writers(&state.db.read).await {
                    Ok(writers) => cursor.set_writers(writers),
                    Err(err) => {
                        tracing::warn!(error = %err, "the event relay cannot list event writers");
                    }
                }
            }
            state.events.settled.store(last, Ordering::Release);
            if last > after {
                state.events.moved.notify_waiters();
            }
            if !full || cursor.waiting() {
                break;
            }
        }
    }
}

/// Deletes events older than the retention window.
///
/// Events this node's search indexer has not applied yet are kept for up to a day more,
/// so a backend outage is caught up from the outbox rather than by a rebuild.
///
/// Deletion is by position, never by time alone: times need not follow positions (a
/// position is taken before its transaction commits, and nodes' clocks differ), so what
/// goes is the prefix of positions below the oldest event that must stay. No hole opens
/// in the middle of the outbox, and `pruned_through` marks exactly what is gone.
pub async fn prune(state: &AppState) -> ServiceResult<()> {
    let now = now_ms();
    let cutoff = now - state.config.event_retention.as_millis() as i64;
    let mut keep = sea_orm::Condition::any().add(event::Column::CreatedAt.gte(cutoff));
    if now - cutoff < SEARCH_HOLD_MS {
        let indexed = state.search.indexed().unwrap_or(0);
        keep = keep.add(
            sea_orm::Condition::all()
                .add(event::Column::Seq.gt(indexed))
                .add(event::Column::CreatedAt.gte(now - SEARCH_HOLD_MS)),
        );
    }
    let db = &state.db.write;
    let first_kept: Option<i64> = event::Entity::find()
        .select_only()
        .column_as(event::Column::Seq.min(), "first")
        .filter(keep)
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten();
    let mut top = event::Entity::find()
        .select_only()
        .column_as(event::Column::Seq.max(), "top");
    if let Some(first) = first_kept {
        top = top.filter(event::Column::Seq.lt(first));
    }
    let top: Option<i64> = top.into_tuple::<Option<i64>>().one(db).await?.flatten();
    let Some(top) = top else {
        return Ok(());
    };
    // The mark first: a reader that sees a missing row already knows it may be pruned.
    let mark = super::positions::pruned_through(db).await?;
    if top > mark {
        server_meta::Entity::insert(server_meta::ActiveModel {
            name: Set(super::positions::PRUNED_KEY.to_owned()),
            value: Set(top.to_string()),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(server_meta::Column::Name)
                .update_column(server_meta::Column::Value)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    event::Entity::delete_many()
        .filter(event::Column::Seq.lte(top))
        .exec(db)
        .await?;
    Ok(())
}

/// The longest the outbox keeps events for a search indexer that lags.
const SEARCH_HOLD_MS: i64 = 24 * 3600 * 1000;

/// The most events one resume may replay: a client further behind gets `resync_required`
/// (as for a point older than the retention window) and refetches instead, so a resume
/// from far back never makes the server read a long history for one connection.
pub const REPLAY_LIMIT: usize = 10_000;
/// Events a replay (and the membership rewind before it) reads per query.
pub const REPLAY_PAGE: u64 = 500;

/// Where a new subscription starts.
pub struct Snapshot {
    /// The member's view as of [`Snapshot::seq`], where live delivery takes over.
    pub subscriber: super::filter::Subscriber,
    /// Where live delivery takes over (this node's relay position, or the resume point
    /// when that is newer); live events up to it are duplicates.
    pub seq: i64,
    /// The events after the resume point up to `seq`, still to be read, page by page.
    pub replay: Option<Replay>,
    /// The resume point is older than the retention window, further back than
    /// [`REPLAY_LIMIT`] events, or past the newest event: the client must refetch.
    pub resync_required: bool,
}

/// A replay read lazily: the events after `after` up to `upto`, [`REPLAY_PAGE`] at a time,
/// filtered by the member's view as of `after`.
pub struct Replay {
    view: super::filter::Subscriber,
    after: i64,
    upto: i64,
}

impl Replay {
    /// Everything up to here has been read (and handed out).
    pub fn position(&self) -> i64 {
        self.after
    }

    /// Whether every event has been read.
    pub fn finished(&self) -> bool {
        self.after >= self.upto
    }

    /// The next page's events the member may see, oldest first (possibly none while
    /// [`Replay::finished`] is false). `None` when pruning deleted events not read yet:
    /// the client must resume from [`Replay::position`] (and then learns it must resync).
    ///
    /// Cancel-safe: the replay moves on only once the page is read.
    pub async fn next_page(
        &mut self,
        db: &impl ConnectionTrait,
    ) -> ServiceResult<Option<Vec<Event>>> {
        if self.finished() {
            return Ok(Some(Vec::new()));
        }
        let rows = event::Entity::find()
            .filter(event::Column::Seq.gt(self.after))
            .filter(event::Column::Seq.lte(self.upto))
            .order_by_asc(event::Column::Seq)
            .limit(REPLAY_PAGE)
            .all(db)
            .await?;
        // The mark is written before rows are deleted: read after the rows, it tells
        // whether some of them may be gone.
        if super::positions::pruned_through(db).await? > self.after {
            return Ok(None);
        }
        let full = rows.len() as u64 == REPLAY_PAGE;
        let after = match rows.last() {
            Some(row) if full => row.seq,
            _ => self.upto,
        };
        let mut page = Vec::with_capacity(rows.len());
        for event in rows.into_iter().filter_map(parse) {
            if self.view.admit(&event) {
                page.push(event);
            }
        }
        self.after = after;
        Ok(Some(page))
    }
}

/// The events after `after` (up to `upto`) that change `member`'s membership, oldest
/// first, read [`REPLAY_PAGE`] rows at a time and keeping only those, so memory stays
/// bounded however many events the range holds.
async fn membership_changes(
    txn: &impl ConnectionTrait,
    member: Uuid,
    mut after: i64,
    upto: Option<i64>,
) -> ServiceResult<Vec<Event>> {
    let mut changes = Vec::new();
    loop {
        let mut query = event::Entity::find()
            .filter(event::Column::Seq.gt(after))
            .filter(event::Column::Payload.contains(member.to_string()));
        if let Some(upto) = upto {
            query = query.filter(event::Column::Seq.lte(upto));
        }
        let rows = query
            .order_by_asc(event::Column::Seq)
            .limit(REPLAY_PAGE)
            .all(txn)
            .await?;
        let full = rows.len() as u64 == REPLAY_PAGE;
        if let Some(row) = rows.last() {
            after = row.seq;
        }
        changes.extend(
            rows.into_iter()
                .filter_map(parse)
                .filter(|e| e.joined.contains(&member) || e.left.contains(&member)),
        );
        if !full {
            return Ok(changes);
        }
    }
}

/// Whether more than `limit` events lie after `after` up to `upto`.
async fn too_many(
    txn: &impl ConnectionTrait,
    after: i64,
    upto: i64,
    limit: usize,
) -> ServiceResult<bool> {
    // Positions are dense but for holes: a range no longer than the limit holds no more.
    if upto - after <= limit as i64 {
        return Ok(false);
    }
    let beyond = event::Entity::find()
        .select_only()
        .column(event::Column::Seq)
        .filter(event::Column::Seq.gt(after))
        .filter(event::Column::Seq.lte(upto))
        .order_by_asc(event::Column::Seq)
        .offset(limit as u64)
        .limit(1)
        .into_tuple::<i64>()
        .one(txn)
        .await?;
    Ok(beyond.is_some())
}

/// Reads, in one consistent snapshot, the member's groups and channels as of this node's
/// relay position and (with `resume`) where a replay of the events after the resume point
/// up to it starts. Register with the router *before* calling this, then activate with
/// [`Snapshot::seq`] (see [`super::router`]).
pub async fn snapshot(
    state: &AppState,
    member: Uuid,
    resume: Option<i64>,
) -> ServiceResult<Snapshot> {
    // Everything committed before this connection is covered by the snapshot or the
    // replay, not sent live: wait (briefly) for the relay to publish up to it.
    let committed: i64 = event::Entity::find()
        .select_only()
        .column_as(event::Column::Seq.max(), "top")
        .into_tuple::<Option<i64>>()
        .one(&state.db.read)
        .await?
        .flatten()
        .unwrap_or(0);
    if let Some(at) = state.events.published()
        && at < committed
    {
        state.events.caught_up(committed, CATCH_UP).await;
    }
    // Read before the snapshot begins: every event up to it is committed and in it.
    let published = settled(state).await?;
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
    // The newest event in this snapshot, published here or not: a resume point past it
    // comes from another history.
    let top: i64 = event::Entity::find()
        .select_only()
        .column_as(event::Column::Seq.max(), "top")
        .into_tuple::<Option<i64>>()
        .one(&txn)
        .await?
        .flatten()
        .unwrap_or(0);
    let top = Ord::max(top, published);
    // Where live delivery takes over: this node's relay position, or the resume point
    // when the client already has events this node has not published yet (it read them
    // on another node, which had).
    let seq = match resume {
        Some(from) if from > published && from <= top => from,
        _ => published,
    };
    // The membership read above includes the changes of events committed after `seq`;
    // they are undone below, so the view is as of `seq` (those events come live).
    let later = membership_changes(&txn, member, seq, None).await?;
    let mut replay = None;
    let mut resync_required = false;
    let mut subscriber = super::filter::Subscriber::new(member, contexts);
    subscriber.rewind(&later);
    if resume.is_some_and(|from| from > top) {
        // A point past the newest event comes from another history (a restored database,
        // another deployment): what the client holds cannot be trusted, so it refetches.
        resync_required = true;
    } else if let Some(from) = resume.filter(|from| *from < seq) {
        if from < super::positions::pruned_through(&txn).await?
            || too_many(&txn, from, seq, state.config.replay_limit).await?
        {
            resync_required = true;
        } else {
            // The replay starts from the view as of the resume point.
            let mut view = subscriber.clone();
            view.rewind(&membership_changes(&txn, member, from, Some(seq)).await?);
            replay = Some(Replay {
                view,
                after: from,
                upto: seq,
            });
        }
    }
    txn.commit().await?;
    Ok(Snapshot {
        subscriber,
        seq,
        replay,
        resync_required,
    })
}
