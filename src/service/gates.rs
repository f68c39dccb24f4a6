//! Per-context admission gates: a write to a group or channel first waits here, in memory,
//! for the writes to that context ahead of it, and only then takes a database connection
//! and the context's row lock. A burst on one context therefore holds at most one pooled
//! connection on this node instead of the whole pool, and reads and writes elsewhere keep
//! flowing. The wait is bounded ([`crate::Config::lock_wait`]); past it the request answers
//! 503 `SERVICE_UNAVAILABLE` with `Retry-After`. Across nodes the row lock (PostgreSQL
//! `FOR UPDATE`, bounded by `lock_timeout`) still orders writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};

/// Held while a write to one context is in flight; dropping it lets the next one in.
pub type Gate = OwnedMutexGuard<()>;

/// One async mutex per context with a write in flight or waiting.
#[derive(Default)]
pub struct Gates {
    slots: Mutex<HashMap<Uuid, Weak<AsyncMutex<()>>>>,
}

impl Gates {
    /// Waits up to `wait` for the context's gate.
    pub async fn enter(&self, context_id: Uuid, wait: Duration) -> ServiceResult<Gate> {
        let slot = self.slot(context_id);
        match tokio::time::timeout(wait, slot.lock_owned()).await {
            Ok(gate) => Ok(gate),
            Err(_) => {
                tracing::warn!(%context_id, "a write waited too long for its context; answering 503");
                Err(ServiceError::busy())
            }
        }
    }

    fn slot(&self, context_id: Uuid) -> Arc<AsyncMutex<()>> {
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
        let slot = Arc::new(AsyncMutex::new(()));
        slots.insert(context_id, Arc::downgrade(&slot));
        slot
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
