//! How many WebSocket connections each member holds on this node, across `/api/events` and
//! `/graphql/ws`, so that one member cannot exhaust the node's sockets and database pool
//! (issue 9, item 9). A connection holds a [`ConnectionSlot`] while it is open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Bytes a WebSocket reads from its socket at a time (its read buffer). Client frames are
/// small (typing, presence, ping, GraphQL operations); a longer one is gathered over
/// several reads up to the frame limit. Idle connections are most of a busy node's sockets,
/// and this buffer is most of what one costs.
pub const READ_BUFFER: usize = 4 * 1024;

/// Close code for a connection refused because its member holds too many already
/// (1008, "policy violation").
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 1008;
/// The close reason that goes with [`CLOSE_TOO_MANY_CONNECTIONS`].
pub const TOO_MANY_CONNECTIONS: &str = "too many connections for this member";

/// Open connections by member.
#[derive(Default)]
pub struct ConnectionCounter {
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One open connection; dropping it frees the slot.
pub struct ConnectionSlot {
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
    member: Uuid,
}

impl ConnectionCounter {
    /// A slot for `member`, unless it already holds `max`.
    pub fn acquire(&self, member: Uuid, max: usize) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(member).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            open: self.open.clone(),
            member,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.member) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.member);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_member_and_freed_on_drop() {
        let counter = ConnectionCounter::default();
        let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let first = counter.acquire(ada, 2).expect("first");
        let _second = counter.acquire(ada, 2).expect("second");
        assert!(counter.acquire(ada, 2).is_none());
        assert!(counter.acquire(bob, 2).is_some());
        drop(first);
        assert!(counter.acquire(ada, 2).is_some());
    }
}
