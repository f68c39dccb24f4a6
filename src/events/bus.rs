//! The event bus: committed events, in `seq` order, and ephemeral ones (typing, presence)
//! as they happen, to every subscriber on this node. The subscriber is the node's
//! [`router`](super::router), which hands each event to the connections that may see it.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::Event;

/// Carries events to subscribers. In-process by default; a Redis-backed bus for several
/// nodes implements the same trait (and then carries ephemeral events across nodes too).
pub trait EventBus: Send + Sync {
    /// Publishes one committed event.
    fn publish(&self, event: Arc<Event>);
    /// A receiver of everything published from now on. A receiver that falls more than the
    /// bus's capacity behind gets `Lagged` and must be dropped.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
}

/// `tokio::sync::broadcast` in this process: publishing never waits for a slow subscriber.
pub struct InProcessBus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl InProcessBus {
    /// A bus that lets a subscriber fall `capacity` events behind before it lags.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }
}

impl EventBus for InProcessBus {
    fn publish(&self, event: Arc<Event>) {
        // No subscribers is fine: nobody is listening on this node.
        let _ = self.sender.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}
