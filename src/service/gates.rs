//! Per-context admission gates: a write to a group or channel first waits here, in memory,
//! for the writes to that context ahead of it, and only then takes a database connection
//! and the context's row lock. A burst on one context therefore holds at most one pooled
//! connection on this node instead of the whole pool, and reads and writes elsewhere keep
//! flowing. The wait is bounded ([`crate::Config::lock_wait`]); past it the request answers
//! 503 `SERVICE_UNAVAILABLE` with `Retry-After`. Across nodes the row lock (PostgreSQL
//! `FOR UPDATE`, bounded by `lock_timeout`) still orders writes.
//!
//! Each gate also keeps what reads need to know of the context's members (see
//! [`ReadAccess`]): every change of membership, role or settings on this node passes
//! through the gate, which empties that cache when it opens and again when it closes, after
//! the change committed. A read fills the cache only if no gate opened or closed while it
//! read the database and none is open, so the cache never keeps what a committed change
//! replaced. Other nodes' changes reach this node through the event relay, which empties the
//! cache of the contexts they touch ([`Gates::forget`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use entity::context_member;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};

/// What a read checks of a member's place in a context: its membership row (role, history
/// boundary) and the context's kind. Deliberately not the context's row, whose message
/// counters change with every send.
#[derive(Clone, Debug)]
pub struct ReadAccess {
    pub kind: String,
    pub membership: context_member::Model,
}

/// One context's gate and cached memberships.
struct Slot {
    lock: Arc<AsyncMutex<()>>,
    /// Even while no write is in flight; each opening and closing adds one.
    version: AtomicU64,
    members: Mutex<HashMap<Uuid, (ReadAccess, Instant)>>,
    /// Memberships cached over all contexts (shared with [`Gates`]).
    cached: Arc<AtomicUsize>,
}

impl Slot {
    fn bump(&self) {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        self.cached.fetch_sub(members.len(), Ordering::Relaxed);
        members.clear();
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let members = self.members.get_mut().unwrap_or_else(|p| p.into_inner());
        self.cached.fetch_sub(members.len(), Ordering::Relaxed);
    }
}

/// Held while a write to one context is in flight; dropping it (after the commit) lets the
/// next one in.
pub struct Gate {
    _guard: OwnedMutexGuard<()>,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.slot.bump();
    }
}

/// A read's view of a context's cache, taken before it reads the database.
pub struct Snapshot {
    slot: Arc<Slot>,
    version: u64,
}

/// Contexts whose memberships are kept, at most.
const CACHED_CONTEXTS: usize = 10_000;
/// Memberships kept over all contexts, at most (a few hundred bytes each).
const CACHED_MEMBERS: usize = 200_000;
/// How long a cached membership is trusted at most: a bound on staleness should another
/// node's change never reach this node's relay.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// One async mutex per context with a write in flight or waiting, or with cached members.
pub struct Gates {
    slots: Mutex<HashMap<Uuid, Weak<Slot>>>,
    /// Keeps the slots of contexts with cached members alive (bounded).
    kept: quick_cache::sync::Cache<Uuid, Arc<Slot>>,
    /// Memberships cached over all slots.
    cached: Arc<AtomicUsize>,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
            kept: quick_cache::sync::Cache::new(CACHED_CONTEXTS),
            cached: Arc::default(),
        }
    }
}

impl Gates {
    /// Waits up to `wait` for the context's gate.
    pub async fn enter(&self, context_id: Uuid, wait: Duration) -> ServiceResult<Gate> {
        let slot = self.slot(context_id);
        match tokio::time::timeout(wait, slot.lock.clone().lock_owned()).await {
            Ok(guard) => {
                slot.bump();
                Ok(Gate {
                    _guard: guard,
                    slot,
                })
            }
            Err(_) => {
                tracing::warn!(%context_id, "a write waited too long for its context; answering 503");
                Err(ServiceError::busy())
            }
        }
    }

    fn slot(&self, context_id: Uuid) -> Arc<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = slots.get(&context_id).and_then(Weak::upgrade) {
            return slot;
        }
        // Forget the gates nobody holds any more before the map grows past its last size.
        if slots.len() >= 1024 && slots.len().is_power_of_two() {
            slots.retain(|_, slot| slot.strong_count() > 0);
        }
        let slot = Arc::new(Slot {
            lock: Arc::new(AsyncMutex::new(())),
            version: AtomicU64::new(0),
            members: Mutex::default(),
            cached: self.cached.clone(),
        });
        slots.insert(context_id, Arc::downgrade(&slot));
        slot
    }

    /// The member's cached access to the context, or a snapshot to fill the cache with
    /// after reading the database.
    pub fn cached(&self, context_id: Uuid, member_id: Uuid) -> Result<ReadAccess, Snapshot> {
        let slot = self.slot(context_id);
        let version = slot.version.load(Ordering::SeqCst);
        if version.is_multiple_of(2) {
            let members = slot.members.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((hit, at)) = members.get(&member_id)
                && at.elapsed() < CACHE_FOR
            {
                return Ok(hit.clone());
            }
        }
        Err(Snapshot { slot, version })
    }

    /// Keeps `access` unless a write to the context opened or closed since `snapshot`.
    pub fn remember(
        &self,
        context_id: Uuid,
        member_id: Uuid,
        snapshot: Snapshot,
        access: ReadAccess,
    ) {
        if !snapshot.version.is_multiple_of(2) {
            return;
        }
        {
            let mut members = snapshot
                .slot
                .members
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Checked under the lock that `bump` takes: no write can slip in between.
            if snapshot.slot.version.load(Ordering::SeqCst) != snapshot.version
                || self.cached.load(Ordering::Relaxed) >= CACHED_MEMBERS
            {
                return;
            }
            if members
                .insert(member_id, (access, Instant::now()))
                .is_none()
            {
                self.cached.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.kept.insert(context_id, snapshot.slot);
    }

    /// Drops what is cached of a context (a change made on another node).
    pub fn forget(&self, context_id: Uuid) {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(&context_id).and_then(Weak::upgrade)
        };
        if let Some(slot) = slot {
            // Two steps keep the version even: a read that began before reads again.
            slot.bump();
            slot.bump();
        }
    }

    /// Drops what is cached of every context: after this node may have missed other nodes'
    /// invalidations (its Redis subscription was down).
    pub fn clear(&self) {
        let slots: Vec<Arc<Slot>> = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.values().filter_map(Weak::upgrade).collect()
        };
        for slot in slots {
            slot.bump();
            slot.bump();
        }
    }

    /// Contexts with a gate entry (for tests of the clean-up).
    pub fn len(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether no gate is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_writer_at_a_time_per_context_and_a_bounded_wait() {
        let gates = Gates::default();
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let held = gates
            .enter(a, Duration::from_millis(50))
            .await
            .expect("free");
        // Another context is not held up.
        let other = gates.enter(b, Duration::from_millis(50)).await;
        assert!(other.is_ok());
        // The same context waits, and gives up after the bound with a 503.
        let err = gates
            .enter(a, Duration::from_millis(50))
            .await
            .expect_err("busy");
        assert_eq!(err.status().as_u16(), 503);
        drop(held);
        assert!(gates.enter(a, Duration::from_millis(50)).await.is_ok());
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn access(context: Uuid, member: Uuid) -> ReadAccess {
        ReadAccess {
            kind: "channel".to_owned(),
            membership: context_member::Model {
                context_id: context,
                member_id: member,
                role: "member".to_owned(),
                joined_at: 0,
                muted_until: None,
                history_after: None,
                key_epoch_from: 1,
            },
        }
    }

    #[tokio::test]
    async fn reads_fill_the_cache_only_when_no_write_came_between() {
        let gates = Gates::default();
        let (ctx, bob) = (Uuid::now_v7(), Uuid::now_v7());
        // A read that a write overlaps is not kept, even after the write is done.
        let Err(snapshot) = gates.cached(ctx, bob) else {
            panic!("empty cache")
        };
        let gate = gates
            .enter(ctx, Duration::from_secs(1))
            .await
            .expect("gate");
        drop(gate);
        gates.remember(ctx, bob, snapshot, access(ctx, bob));
        assert!(gates.cached(ctx, bob).is_err());

        // A read while a write is in flight is not kept either.
        let gate = gates
            .enter(ctx, Duration::from_secs(1))
            .await
            .expect("gate");
        let Err(snapshot) = gates.cached(ctx, bob) else {
            panic!("nothing cached during a write")
        };
        gates.remember(ctx, bob, snapshot, access(ctx, bob));
        drop(gate);
        assert!(gates.cached(ctx, bob).is_err());

        // A quiet read is kept, and the next write or a remote change drops it.
        let Err(snapshot) = gates.cached(ctx, bob) else {
            panic!("empty")
        };
        gates.remember(ctx, bob, snapshot, access(ctx, bob));
        assert!(gates.cached(ctx, bob).is_ok());
        drop(
            gates
                .enter(ctx, Duration::from_secs(1))
                .await
                .expect("gate"),
        );
        assert!(gates.cached(ctx, bob).is_err());
        let Err(snapshot) = gates.cached(ctx, bob) else {
            panic!("empty")
        };
        gates.remember(ctx, bob, snapshot, access(ctx, bob));
        assert!(gates.cached(ctx, bob).is_ok());
        assert_eq!(gates.cached.load(Ordering::Relaxed), 1);
        gates.forget(ctx);
        assert!(gates.cached(ctx, bob).is_err());
        assert_eq!(gates.cached.load(Ordering::Relaxed), 0, "the count follows");
    }
}
