//! Group commit for message sends.
//!
//! A send to a group, channel or conversation does its checks that need no lock (content,
//! plugins, DM encryption) on the request's own task, then queues the write here. A writer
//! task takes every send waiting in its queue (up to [`MAX_BATCH`]) and writes them in one
//! transaction: each context and conversation is locked once, memberships are read in one
//! query per context, the messages go in with one multi-row insert, each context's row is
//! updated once and the events take their sequence numbers together. One commit then
//! answers the whole batch, so the fixed cost of a write (locks, the event counter, the
//! commit) is paid once per batch instead of once per message.
//!
//! Rules that refuse one send (not a member, muted, slow mode, blocked) refuse that send
//! alone; the rest of its batch commits. If the batch's transaction itself fails, each of
//! its sends is retried in a transaction of its own, so one bad item never takes the others
//! down. Every request is answered only after the transaction holding its message commits.
//!
//! The queue is bounded: a request that cannot queue within `lock_wait` answers 503 with
//! `Retry-After`, like a request that waits too long for a context's gate.

mod batch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures_util::FutureExt;
use tokio::sync::{Mutex, RwLock, mpsc, oneshot};
use uuid::Uuid;

pub use batch::{DirectCopies, Sent};

use crate::error::{ServiceError, ServiceResult};
use crate::service::contexts::Kind;
use crate::state::{AppState, WeakState};

/// The most sends one transaction takes.
pub const MAX_BATCH: usize = 256;
/// Sends that may wait in one queue.
const QUEUE: usize = 4096;

/// One send to write.
pub(crate) enum Item {
    /// A message to a group or channel, in plain text (encrypted in the batch under the
    /// context's current epoch, which is only known under the lock).
    Context {
        member_id: Uuid,
        kind: Kind,
        context_id: Uuid,
        content: String,
    },
    /// A direct message, already encrypted for its three readers.
    Direct {
        conversation_id: Uuid,
        sender_id: Uuid,
        recipient_id: Uuid,
        copies: DirectCopies,
    },
}

impl Item {
    /// The context or conversation the item writes to (it picks the queue).
    fn target(&self) -> Uuid {
        match self {
            Item::Context { context_id, .. } => *context_id,
            Item::Direct {
                conversation_id, ..
            } => *conversation_id,
        }
    }
}

struct Job {
    item: Item,
    reply: oneshot::Sender<ServiceResult<Sent>>,
}

/// Counters of the writer (for tests and metrics).
#[derive(Default)]
pub struct WriterStats {
    /// Transactions committed with at least one message.
    pub batches: AtomicU64,
    /// Sends answered (stored or refused).
    pub items: AtomicU64,
    /// The most sends one transaction has taken.
    pub largest_batch: AtomicUsize,
    /// Sends queued and not yet answered.
    pub pending: AtomicUsize,
    /// Batches whose transaction failed and whose items were retried one by one.
    pub split_batches: AtomicU64,
}

/// The write queues and their tasks.
pub struct Writer {
    queues: Vec<mpsc::Sender<Job>>,
    /// The receivers, until the tasks start (on the first send).
    idle: Mutex<Option<Vec<mpsc::Receiver<Job>>>>,
    started: std::sync::OnceLock<()>,
    /// Held for writing, it stops the writers before their next batch (tests use it to
    /// queue a known batch).
    hold: Arc<RwLock<()>>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// `shards` queues, each with its own task: one for SQLite (it has one writer anyway),
    /// a few for PostgreSQL, where batches for different contexts can commit in parallel.
    /// A context always maps to the same queue, so its sends keep their order.
    pub fn new(shards: usize) -> Self {
        let (queues, receivers) = (0..shards.max(1)).map(|_| mpsc::channel(QUEUE)).unzip();
        Self {
            queues,
            idle: Mutex::new(Some(receivers)),
            started: std::sync::OnceLock::new(),
            hold: Arc::new(RwLock::new(())),
            stats: Arc::default(),
        }
    }

    /// Stops the writers before their next batch until the guard is dropped.
    #[doc(hidden)]
    pub async fn hold(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.hold.clone().write_owned().await
    }

    /// Queues `item` and waits until its transaction commits (or it is refused).
    pub(crate) async fn submit(&self, state: &AppState, item: Item) -> ServiceResult<Sent> {
        self.start(state).await;
        let shard = shard_of(item.target(), self.queues.len());
        let (reply, answer) = oneshot::channel();
        // Counted as pending from here; until it is queued, giving up (timeout, writer gone,
        // or the caller's request dropped) uncounts it. Once queued, the writer does.
        let unqueued = Unqueued::count(&self.stats.pending);
        let queued = tokio::time::timeout(
            state.config.lock_wait,
            self.queues[shard].send(Job { item, reply }),
        )
        .await;
        match queued {
            Ok(Ok(())) => unqueued.queued(),
            Ok(Err(_)) => return Err(ServiceError::internal("the message writer has stopped")),
            Err(_) => {
                tracing::warn!("a send waited too long for the message writer; answering 503");
                return Err(ServiceError::busy());
            }
        }
        answer
            .await
            .map_err(|_| ServiceError::internal("the message writer dropped a send"))?
    }

    async fn start(&self, state: &AppState) {
        if self.started.get().is_some() {
            return;
        }
        let mut idle = self.idle.lock().await;
        if let Some(receivers) = idle.take() {
            for receiver in receivers {
                tokio::spawn(run(
                    state.downgrade(),
                    receiver,
                    self.hold.clone(),
                    self.stats.clone(),
                ));
            }
            let _ = self.started.set(());
        }
    }
}

/// A send counted in [`WriterStats::pending`] that has not reached its queue yet.
struct Unqueued<'a>(Option<&'a AtomicUsize>);

impl<'a> Unqueued<'a> {
    fn count(pending: &'a AtomicUsize) -> Self {
        pending.fetch_add(1, Ordering::Relaxed);
        Self(Some(pending))
    }

    /// The writer answers (and uncounts) it from now on.
    fn queued(mut self) {
        self.0 = None;
    }
}

impl Drop for Unqueued<'_> {
    fn drop(&mut self) {
        if let Some(pending) = self.0 {
            pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn shard_of(target: Uuid, shards: usize) -> usize {
    let value = target.as_u128();
    ((value ^ (value >> 64)) as u64 % shards as u64) as usize
}

/// One writer task: takes what waits, writes it as one batch, answers, repeats. Ends when
/// the server is gone (its queue closes).
async fn run(
    weak: WeakState,
    mut queue: mpsc::Receiver<Job>,
    hold: Arc<RwLock<()>>,
    stats: Arc<WriterStats>,
) {
    while let Some(first) = queue.recv().await {
        let held = hold.read().await;
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        drop(held);
        let Some(state) = weak.upgrade() else {
            break;
        };
        let count = jobs.len();
        stats.largest_batch.fetch_max(count, Ordering::Relaxed);
        let (items, replies): (Vec<Item>, Vec<_>) =
            jobs.into_iter().map(|job| (job.item, job.reply)).unzip();
        // A panic while writing must not stop the writer: every later send would fail.
        // The batch's callers get an internal error (their replies are dropped).
        let results = match std::panic::AssertUnwindSafe(write(&state, &stats, items))
            .catch_unwind()
            .await
        {
            Ok(results) => results,
            Err(_) => {
                tracing::error!(count, "writing a batch of sends panicked");
                Vec::new()
            }
        };
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.items.fetch_add(count as u64, Ordering::Relaxed);
        stats.pending.fetch_sub(count, Ordering::Relaxed);
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that went away (client disconnected) needs no answer.
            let _ = reply.send(result);
        }
    }
}

/// Writes `items` as one batch; if the batch's transaction fails, each item alone.
async fn write(
    state: &AppState,
    stats: &WriterStats,
    items: Vec<Item>,
) -> Vec<ServiceResult<Sent>> {
    if items.len() == 1 {
        return batch::write(state, items)
            .await
            .unwrap_or_else(|err| vec![Err(err)]);
    }
    let count = items.len();
    let retry: Vec<Item> = items.iter().map(Item::duplicate).collect();
    match batch::write(state, items).await {
        Ok(results) => results,
        Err(err) => {
            stats.split_batches.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %err, count, "a batch of sends failed; writing each target alone");
            retry_by_target(state, retry).await
        }
    }
}

/// After a failed batch: each context's or conversation's sends as a batch of their own,
/// so one context whose lock cannot be had costs one wait, not one per send. A target
/// that is busy (a lock or the database not to be had in time) answers 503 for all its
/// sends; one that fails otherwise has its sends retried one by one, so a bad send fails
/// alone.
async fn retry_by_target(state: &AppState, items: Vec<Item>) -> Vec<ServiceResult<Sent>> {
    let count = items.len();
    let mut targets: Vec<(Uuid, Vec<(usize, Item)>)> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let target = item.target();
        match targets.iter_mut().find(|(t, _)| *t == target) {
            Some((_, group)) => group.push((index, item)),
            None => targets.push((target, vec![(index, item)])),
        }
    }
    let mut results: Vec<Option<ServiceResult<Sent>>> = (0..count).map(|_| None).collect();
    for (_, group) in targets {
        let (indexes, items): (Vec<usize>, Vec<Item>) = group.into_iter().unzip();
        let copies: Vec<Item> = items.iter().map(Item::duplicate).collect();
        match batch::write(state, items).await {
            Ok(written) => {
                for (index, result) in indexes.into_iter().zip(written) {
                    results[index] = Some(result);
                }
            }
            Err(ServiceError::Unavailable(_)) => {
                for index in indexes {
                    results[index] = Some(Err(ServiceError::busy()));
                }
            }
            Err(err) if indexes.len() == 1 => results[indexes[0]] = Some(Err(err)),
            Err(_) => {
                for (index, item) in indexes.into_iter().zip(copies) {
                    let result = batch::write(state, vec![item]).await.and_then(|mut one| {
                        one.pop().ok_or_else(|| ServiceError::internal("no result"))
                    });
                    results[index] = Some(result.and_then(|r| r));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ServiceError::internal("a send was not retried"))))
        .collect()
}

impl Item {
    /// A copy for the one-by-one retry.
    fn duplicate(&self) -> Item {
        match self {
            Item::Context {
                member_id,
                kind,
                context_id,
                content,
            } => Item::Context {
                member_id: *member_id,
                kind: *kind,
                context_id: *context_id,
                content: content.clone(),
            },
            Item::Direct {
                conversation_id,
                sender_id,
                recipient_id,
                copies,
            } => Item::Direct {
                conversation_id: *conversation_id,
                sender_id: *sender_id,
                recipient_id: *recipient_id,
                copies: copies.clone(),
            },
        }
    }
}
