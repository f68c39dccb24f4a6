//! The node's router: it consumes the [`EventBus`](super::EventBus) and hands each event only
//! to the connections that may receive it, instead of waking every connection for every
//! event.
//!
//! It keeps an index of this node's connections: context id → the connections whose member
//! belongs to that group or channel, and member id → that member's connections (for
//! [`Audience::Members`], per-member data and presence). Each connection keeps its member's
//! view ([`Subscriber`]); the membership changes events carry (`joined`, `left`) update the
//! view and the index in `seq` order, with the filter's rules: joins before delivery,
//! departures after, the hidden-history boundary and `exclude`.
//!
//! A connection registers *before* its snapshot ([`Router::register`]): until it is
//! activated with the snapshot's view ([`Router::activate`]), every routed event is kept
//! for it, and activation delivers those after the snapshot's `seq` that the view admits.
//! So nothing falls between the snapshot and live delivery, and nothing is sent twice.
//!
//! Each connection has its own bounded queue. When *its* queue is full the router marks it
//! lagged and forgets it (the stream then ends with `Lagged`); the router never waits.
//!
//! Presence is coalesced: `presence_changed` events wait up to [`PRESENCE_WINDOW`] and only
//! the latest per member is delivered, each connection getting the batch as one queue
//! entry (per 128 members). The batch goes out before any durable event routed after it,
//! so a peer never receives a later message before a presence change decided earlier.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;
use uuid::Uuid;

use super::filter::Subscriber;
use super::{Audience, Event, EventType};

/// How long presence changes are gathered before they are delivered.
pub const PRESENCE_WINDOW: Duration = Duration::from_millis(50);
/// Members whose presence is delivered under one hold of the index.
const PRESENCE_CHUNK: usize = 128;

/// One entry of a connection's queue.
pub enum Delivery {
    One(Arc<Event>),
    /// Several events at once (a presence batch, or what arrived during the snapshot).
    Many(Vec<Arc<Event>>),
}

/// Routes the bus to this node's connections.
pub struct Router {
    index: Mutex<Index>,
    /// Entries a connection's queue holds before it lags.
    capacity: usize,
}

#[derive(Default)]
struct Index {
    next: u64,
    conns: HashMap<u64, Conn>,
    by_member: HashMap<Uuid, HashSet<u64>>,
    /// Active connections only.
    by_context: HashMap<Uuid, HashSet<u64>>,
    /// Connections registered but not yet activated.
    waiting: HashSet<u64>,
    /// Coalesced presence: the latest event per member, in the order of first change.
    presence: Vec<Arc<Event>>,
    presence_at: HashMap<Uuid, usize>,
    presence_due: Option<Instant>,
}

struct Conn {
    member: Uuid,
    /// `None` until activated.
    view: Option<Subscriber>,
    /// Durable events up to this `seq` are in the snapshot: not delivered live.
    after: i64,
    /// Events routed while waiting for activation.
    held: Vec<Arc<Event>>,
    queue: mpsc::Sender<Delivery>,
    lagged: Arc<AtomicBool>,
}

impl Conn {
    /// Queues `delivery`; `false` when the connection must be forgotten (its queue is full,
    /// which marks it lagged, or its stream is gone).
    fn send(&self, delivery: Delivery) -> bool {
        match self.queue.try_send(delivery) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// A connection's place in the router; dropping it unregisters the connection.
pub struct Registration {
    router: Arc<Router>,
    id: u64,
    lagged: Arc<AtomicBool>,
}

impl Registration {
    /// Whether the connection's queue overflowed (it receives nothing more).
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.router.lock().remove(self.id);
    }
}

impl Router {
    /// A router whose connections may queue `capacity` entries.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            index: Mutex::new(Index::default()),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection of `member`; every event routed from now on is held for it
    /// until [`Self::activate`].
    pub fn register(self: &Arc<Self>, member: Uuid) -> (Registration, mpsc::Receiver<Delivery>) {
        let (queue, receiver) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let mut index = self.lock();
        index.next += 1;
        let id = index.next;
        index.conns.insert(
            id,
            Conn {
                member,
                view: None,
                after: i64::MAX,
                held: Vec::new(),
                queue,
                lagged: lagged.clone(),
            },
        );
        index.by_member.entry(member).or_default().insert(id);
        index.waiting.insert(id);
        drop(index);
        let registration = Registration {
            router: self.clone(),
            id,
            lagged,
        };
        (registration, receiver)
    }

    /// Starts live delivery with the member's `view` as of the snapshot at `after`: queues
    /// what was held since registration that comes after the snapshot and the view admits.
    pub fn activate(&self, registration: &Registration, mut view: Subscriber, after: i64) {
        let id = registration.id;
        let mut index = self.lock();
        index.waiting.remove(&id);
        let Index {
            conns, by_context, ..
        } = &mut *index;
        let Some(conn) = conns.get_mut(&id) else {
            return;
        };
        let held = std::mem::take(&mut conn.held);
        let newest = held
            .iter()
            .filter(|event| !event.ephemeral)
            .map(|event| event.seq)
            .max()
            .unwrap_or(after);
        let admitted: Vec<Arc<Event>> = held
            .into_iter()
            .filter(|event| (event.ephemeral || event.seq > after) && view.admit(event))
            .collect();
        for context in view.contexts() {
            by_context.entry(context).or_default().insert(id);
        }
        conn.view = Some(view);
        conn.after = after.max(newest);
        if !admitted.is_empty() && !conn.send(Delivery::Many(admitted)) {
            index.remove(id);
        }
    }

    /// Routes one event from the bus.
    pub fn route(&self, event: Arc<Event>) {
        if event.ephemeral && event.event_type == EventType::PresenceChanged {
            self.lock().hold_presence(event);
            return;
        }
        if !event.ephemeral {
            self.flush_presence();
        }
        let mut index = self.lock();
        let mut dropped = Vec::new();
        for id in index.recipients(&event) {
            if let Some(conn) = index.conns.get(&id)
                && !conn.send(Delivery::One(event.clone()))
            {
                dropped.push(id);
            }
        }
        index.hold(&event, self.capacity, &mut dropped);
        for id in dropped {
            index.remove(id);
        }
    }

    /// When the gathered presence changes are due, if any are waiting.
    pub fn presence_due(&self) -> Option<Instant> {
        self.lock().presence_due
    }

    /// Delivers the gathered presence changes, 128 members at a time so that
    /// connections opening and closing meanwhile do not wait long for the index. (Only the
    /// router's task routes, so nothing else is delivered between the chunks.)
    pub fn flush_presence(&self) {
        let events = self.lock().take_presence();
        for chunk in events.chunks(PRESENCE_CHUNK) {
            self.lock().deliver_presence(chunk);
        }
    }

    /// Forgets every connection, marking it lagged (the router fell behind the bus: every
    /// connection must resume from its last `seq`).
    pub fn cut_all(&self) {
        let mut index = self.lock();
        for conn in index.conns.values() {
            conn.lagged.store(true, Ordering::Release);
        }
        *index = Index {
            next: index.next,
            ..Index::default()
        };
    }

    /// Forgets every connection (the bus closed: the server is going away).
    pub fn close_all(&self) {
        let mut index = self.lock();
        *index = Index {
            next: index.next,
            ..Index::default()
        };
    }

    /// Connections registered on this node.
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }
}

impl Index {
    fn remove(&mut self, id: u64) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        self.waiting.remove(&id);
        if let Some(ids) = self.by_member.get_mut(&conn.member) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_member.remove(&conn.member);
            }
        }
        if let Some(view) = &conn.view {
            for context in view.contexts() {
                if let Some(ids) = self.by_context.get_mut(&context) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_context.remove(&context);
                    }
                }
            }
        }
    }

    /// Keeps `event` for the connections waiting for activation (a connection holding a
    /// whole queue's worth lags).
    fn hold(&mut self, event: &Arc<Event>, capacity: usize, dropped: &mut Vec<u64>) {
        for id in &self.waiting {
            if let Some(conn) = self.conns.get_mut(id) {
                if conn.held.len() >= capacity {
                    conn.lagged.store(true, Ordering::Release);
                    dropped.push(*id);
                } else {
                    conn.held.push(event.clone());
                }
            }
        }
    }

    /// The active connections that receive `event`, with the membership changes it carries
    /// applied to their views and to the index.
    fn recipients(&mut self, event: &Event) -> Vec<u64> {
        let mut candidates: Vec<u64> = Vec::new();
        let of_member = |member: &Uuid, into: &mut Vec<u64>| {
            if let Some(ids) = self.by_member.get(member) {
                into.extend(ids.iter().copied());
            }
        };
        let of_context = |context: &Uuid, into: &mut Vec<u64>| {
            if let Some(ids) = self.by_context.get(context) {
                into.extend(ids.iter().copied());
            }
        };
        // One source gives distinct ids; several may repeat some.
        let mut several = !event.joined.is_empty() || !event.left.is_empty();
        match &event.audience {
            Audience::Context => of_context(&event.context_id, &mut candidates),
            Audience::Members { ids } => {
                several |= ids.len() > 1;
                ids.iter().for_each(|m| of_member(m, &mut candidates));
            }
            Audience::Sharing { member, contexts } => {
                several = true;
                of_member(member, &mut candidates);
                contexts.iter().for_each(|c| of_context(c, &mut candidates));
            }
        }
        for member in event.joined.iter().chain(&event.left) {
            of_member(member, &mut candidates);
        }
        if several {
            candidates.sort_unstable();
            candidates.dedup();
        }
        let context = event.context_id;
        let mut recipients = Vec::with_capacity(candidates.len());
        for id in candidates {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if !event.ephemeral && event.seq <= conn.after {
                continue;
            }
            let Some(view) = conn.view.as_mut() else {
                continue;
            };
            let before = view.belongs_to(context);
            if view.admit(event) {
                recipients.push(id);
            }
            match (before, view.belongs_to(context)) {
                (false, true) => {
                    self.by_context.entry(context).or_default().insert(id);
                }
                (true, false) => {
                    if let Some(ids) = self.by_context.get_mut(&context) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.by_context.remove(&context);
                        }
                    }
                }
                _ => {}
            }
        }
        recipients
    }

    fn hold_presence(&mut self, event: Arc<Event>) {
        match self.presence_at.get(&event.context_id) {
            Some(&at) => self.presence[at] = event,
            None => {
                self.presence_at
                    .insert(event.context_id, self.presence.len());
                self.presence.push(event);
            }
        }
        if self.presence_due.is_none() {
            self.presence_due = Some(Instant::now() + PRESENCE_WINDOW);
        }
    }

    /// The gathered presence changes, emptying the buffer.
    fn take_presence(&mut self) -> Vec<Arc<Event>> {
        self.presence_due = None;
        self.presence_at.clear();
        std::mem::take(&mut self.presence)
    }

    /// Delivers presence changes: one queue entry per connection.
    fn deliver_presence(&mut self, events: &[Arc<Event>]) {
        let mut batches: HashMap<u64, Vec<Arc<Event>>> = HashMap::new();
        let mut dropped = Vec::new();
        for event in events {
            for id in self.recipients(event) {
                batches.entry(id).or_default().push(event.clone());
            }
            self.hold(event, usize::MAX, &mut dropped);
        }
        for (id, batch) in batches {
            let delivery = match batch.len() {
                1 => batch.into_iter().next().map(Delivery::One),
                _ => Some(Delivery::Many(batch)),
            };
            if let (Some(conn), Some(delivery)) = (self.conns.get(&id), delivery)
                && !conn.send(delivery)
            {
                dropped.push(id);
            }
        }
        for id in dropped {
            self.remove(id);
        }
    }
}

/// The router's task on `bus` (a receiver taken before anything is published). It ends
/// when the bus closes.
pub async fn run(router: Arc<Router>, mut bus: broadcast::Receiver<Arc<Event>>) {
    {
        loop {
            let due = router.presence_due();
            let received = tokio::select! {
                received = bus.recv() => received,
                () = sleep_until(due) => {
                    router.flush_presence();
                    continue;
                }
            };
            match received {
                Ok(event) => router.route(event),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "the event router fell behind the bus; every connection must resume"
                    );
                    router.cut_all();
                }
                Err(RecvError::Closed) => {
                    router.close_all();
                    break;
                }
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ContextType;

    fn view(member: Uuid, contexts: &[Uuid]) -> Subscriber {
        Subscriber::new(member, contexts.iter().map(|c| (*c, None)).collect())
    }

    fn drain(receiver: &mut mpsc::Receiver<Delivery>) -> Vec<Arc<Event>> {
        let mut out = Vec::new();
        while let Ok(delivery) = receiver.try_recv() {
            match delivery {
                Delivery::One(event) => out.push(event),
                Delivery::Many(events) => out.extend(events),
            }
        }
        out
    }

    fn sent(context: Uuid, seq: i64) -> Arc<Event> {
        let mut event =
            Event::for_context(EventType::MessageSent, ContextType::Channel, context, ());
        event.seq = seq;
        Arc::new(event)
    }

    #[test]
    fn events_reach_only_the_members_of_their_context() {
        let router = Router::new(16);
        let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let (ours, theirs) = (Uuid::new_v4(), Uuid::new_v4());
        let (a, mut a_rx) = router.register(ada);
        router.activate(&a, view(ada, &[ours]), 0);
        let (b, mut b_rx) = router.register(bob);
        router.activate(&b, view(bob, &[theirs]), 0);
        router.route(sent(ours, 1));
        router.route(sent(theirs, 2));
        let seqs = |events: Vec<Arc<Event>>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(drain(&mut a_rx)), vec![1]);
        assert_eq!(seqs(drain(&mut b_rx)), vec![2]);
        // A join applies before delivery, a departure after it.
        let mut joined =
            Event::for_context(EventType::MemberJoined, ContextType::Channel, theirs, ())
                .joining(vec![ada]);
        joined.seq = 3;
        router.route(Arc::new(joined));
        let mut left = Event::for_context(EventType::MemberLeft, ContextType::Channel, theirs, ())
            .leaving(vec![ada]);
        left.seq = 4;
        router.route(Arc::new(left));
        router.route(sent(theirs, 5));
        assert_eq!(seqs(drain(&mut a_rx)), vec![3, 4]);
        assert_eq!(seqs(drain(&mut b_rx)), vec![3, 4, 5]);
        drop(a);
        assert_eq!(router.connections(), 1);
    }

    #[test]
    fn a_full_queue_lags_that_connection_only() {
        let router = Router::new(2);
        let context = Uuid::new_v4();
        let slow_member = Uuid::new_v4();
        let (slow, _slow_rx) = router.register(slow_member);
        router.activate(&slow, view(slow_member, &[context]), 0);
        let fast_member = Uuid::new_v4();
        let (fast, mut fast_rx) = router.register(fast_member);
        router.activate(&fast, view(fast_member, &[context]), 0);
        for seq in 1..=3 {
            router.route(sent(context, seq));
            drain(&mut fast_rx);
        }
        assert!(slow.lagged());
        assert!(!fast.lagged());
        assert_eq!(router.connections(), 1);
    }

    #[test]
    fn events_between_registration_and_snapshot_are_kept_once() {
        let router = Router::new(16);
        let member = Uuid::new_v4();
        let context = Uuid::new_v4();
        let (registration, mut rx) = router.register(member);
        router.route(sent(context, 1)); // in the snapshot
        router.route(sent(context, 2)); // after it
        router.activate(&registration, view(member, &[context]), 1);
        router.route(sent(context, 2)); // never twice
        router.route(sent(context, 3));
        let seqs: Vec<i64> = drain(&mut rx).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }

    #[test]
    fn presence_is_coalesced_per_member_and_reaches_those_sharing_a_context() {
        let router = Router::new(16);
        let (ada, bob, eve) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let context = Uuid::new_v4();
        let (b, mut b_rx) = router.register(bob);
        router.activate(&b, view(bob, &[context]), 0);
        let (e, mut e_rx) = router.register(eve);
        router.activate(&e, view(eve, &[]), 0);
        for status in ["online", "idle", "online"] {
            let event = Event::for_sharing(
                EventType::PresenceChanged,
                ada,
                vec![context],
                serde_json::json!({"memberId": ada, "status": status}),
            );
            router.route(Arc::new(event));
        }
        assert!(drain(&mut b_rx).is_empty(), "held for the window");
        router.flush_presence();
        let got = drain(&mut b_rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data["status"], "online");
        assert!(drain(&mut e_rx).is_empty());
        // A durable event sends the gathered presence out first.
        let event = Event::for_sharing(EventType::PresenceChanged, ada, vec![context], ());
        router.route(Arc::new(event));
        router.route(sent(context, 1));
        let kinds: Vec<EventType> = drain(&mut b_rx).iter().map(|e| e.event_type).collect();
        assert_eq!(
            kinds,
            vec![EventType::PresenceChanged, EventType::MessageSent]
        );
    }

    /// A rough figure, not a check: `cargo test --lib routing_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn routing_cost() {
        let (connections, contexts, events) = (10_000usize, 100usize, 20_000i64);
        let router = Router::new(1 << 20);
        let ids: Vec<Uuid> = (0..contexts).map(|_| Uuid::new_v4()).collect();
        let mut held = Vec::new();
        for n in 0..connections {
            let member = Uuid::new_v4();
            let (registration, receiver) = router.register(member);
            router.activate(&registration, view(member, &[ids[n % contexts]]), 0);
            held.push((registration, receiver));
        }
        let started = std::time::Instant::now();
        for seq in 1..=events {
            router.route(sent(ids[seq as usize % contexts], seq));
        }
        let elapsed = started.elapsed();
        let delivered: usize = held.iter_mut().map(|(_, rx)| drain(rx).len()).sum();
        println!(
            "{events} events over {connections} connections in {contexts} contexts: \
             {delivered} deliveries, {:?} per event",
            elapsed / events as u32
        );
        assert_eq!(delivered, events as usize * connections / contexts);
    }

    /// A rough figure, not a check: `cargo test --lib presence_crowd -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn presence_crowd_cost() {
        let crowd = 1_000usize;
        let router = Router::new(1024);
        let context = Uuid::new_v4();
        let members: Vec<Uuid> = (0..crowd).map(|_| Uuid::new_v4()).collect();
        let mut held = Vec::new();
        for member in &members {
            let (registration, receiver) = router.register(*member);
            router.activate(&registration, view(*member, &[context]), 0);
            held.push((registration, receiver));
        }
        let started = std::time::Instant::now();
        for member in &members {
            let data = serde_json::json!({"memberId": member, "status": "online"});
            let event =
                Event::for_sharing(EventType::PresenceChanged, *member, vec![context], data);
            router.route(Arc::new(event));
        }
        router.flush_presence();
        let elapsed = started.elapsed();
        let (mut entries, mut frames) = (0, 0);
        for (_, receiver) in &mut held {
            while let Ok(delivery) = receiver.try_recv() {
                entries += 1;
                frames += match delivery {
                    Delivery::One(_) => 1,
                    Delivery::Many(events) => events.len(),
                };
            }
        }
        println!(
            "{crowd} members online at once: {frames} frames in {entries} queue entries, {elapsed:?}"
        );
        assert_eq!(entries, crowd * crowd.div_ceil(PRESENCE_CHUNK));
        assert_eq!(frames, crowd * crowd);
    }
}
