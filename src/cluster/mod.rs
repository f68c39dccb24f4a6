//! Several nodes on one Redis (`BRIGHTCHAT_REDIS_URL`): Redis carries what must cross
//! nodes at once but is not the record of anything. The outbox stays the log of committed
//! events; Redis only makes nodes notice them sooner.
//!
//! - **Wake-ups** (channel `{prefix}:wake`): after a local commit a node publishes a tiny
//!   message (coalesced: at most one in flight); every other node wakes its outbox relay,
//!   so an event reaches sockets on other nodes in milliseconds instead of at the relay's
//!   next poll. Without Redis the poll still delivers.
//! - **Ephemeral events** (`{prefix}:ephemeral`): typing and presence, tagged with the
//!   sending node, which has already put them on its own bus; the others put them on theirs.
//! - **Sign-out** (`{prefix}:revoke`): see [`Cluster::revoke`].
//! - **Presence** (see [`presence`]): every node's live connections per member, in Redis.
//!
//! The subscription runs on its own connection with reconnect and backoff;
//! [`Cluster::healthy`] is true only while it is subscribed. While it is not, the node does
//! not trust its token cache; on (re)subscribing it empties its token and membership caches
//! (invalidations may have been missed), wakes its relay and registers its connections
//! again. Nothing in a request waits on Redis for longer than [`COMMAND_TIMEOUT`].

mod buckets;
mod listener;
mod outgoing;
pub mod presence;
mod revoke;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::config::Config;
use crate::events::Event;
use crate::state::AppState;

/// The longest one Redis command may take before the caller gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
/// Ephemeral events waiting to be published, at most; past it they are dropped (logged).
const OUTGOING_QUEUE: usize = 8192;
/// A repeated Redis failure is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// This node's link to the others.
pub struct Cluster {
    /// Random per boot: tells this node's messages and sessions from the others'.
    pub node: String,
    prefix: String,
    client: redis::Client,
    conn: ConnectionManager,
    healthy: AtomicBool,
    /// Set by [`Cluster::halt`]: heartbeats and sweeps stop (as if the node died).
    halted: AtomicBool,
    /// Wake-ups to publish (coalesced by `Notify`'s single permit).
    wake: Notify,
    outgoing: mpsc::Sender<String>,
    outgoing_rx: Mutex<Option<mpsc::Receiver<String>>>,
    /// How long a node's heartbeat lives.
    pub node_ttl: Duration,
    /// Presence kept by this node and the newest presence version seen per member.
    pub(crate) presence: presence::Local,
    failures: Throttle,
}

/// What crosses nodes on the ephemeral channel.
#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    /// For presence: the order Redis decided it in (older ones are dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    event: Event,
}

/// Connects and PINGs Redis when `BRIGHTCHAT_REDIS_URL` is set; `None` without it. An
/// unreachable Redis fails the start with one line naming the variable.
pub async fn connect(config: &Config) -> anyhow::Result<Option<std::sync::Arc<Cluster>>> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let fail = |problem: String| anyhow::anyhow!("BRIGHTCHAT_REDIS_URL: {problem}");
    if url.starts_with("rediss://") {
        return Err(fail(
            "rediss:// (TLS) is not supported by this build; use redis://".into(),
        ));
    }
    let client = redis::Client::open(url.as_str())
        .map_err(|err| fail(format!("not a usable Redis URL: {err}")))?;
    let settings = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    let unreachable = |err: String| fail(format!("cannot reach Redis: {err}"));
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        ConnectionManager::new_with_config(client.clone(), settings),
    )
    .await
    .map_err(|_| unreachable("timed out".into()))?
    .map_err(|err| unreachable(err.to_string()))?;
    let pong: String = tokio::time::timeout(
        Duration::from_secs(3),
        redis::cmd("PING").query_async(&mut conn),
    )
    .await
    .map_err(|_| unreachable("PING timed out".into()))?
    .map_err(|err| unreachable(err.to_string()))?;
    if pong != "PONG" {
        return Err(unreachable(format!("PING answered {pong}")));
    }
    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    Ok(Some(std::sync::Arc::new(Cluster {
        node: Uuid::new_v4().simple().to_string(),
        prefix: config.redis_prefix.clone(),
        client,
        conn,
        healthy: AtomicBool::new(false),
        halted: AtomicBool::new(false),
        wake: Notify::new(),
        outgoing,
        outgoing_rx: Mutex::new(Some(outgoing_rx)),
        node_ttl: config.redis_node_ttl,
        presence: presence::Local::default(),
        failures: Throttle::default(),
    })))
}

/// Starts the subscription, the publisher, heartbeats and the dead-node sweeper.
pub fn spawn(state: &AppState) {
    let Some(cluster) = state.cluster.clone() else {
        return;
    };
    let rx = cluster
        .outgoing_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(rx) = rx {
        outgoing::spawn(cluster.clone(), rx, state.downgrade());
    }
    listener::spawn(cluster.clone(), state);
    presence::spawn_upkeep(cluster, state.downgrade());
}

impl Cluster {
    /// A key or channel under this deployment's prefix.
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// A connection for one command (the manager multiplexes and reconnects).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// True only while the subscription to the other nodes is live.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Whether Redis answers PING within a short time (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        let pong = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        matches!(pong, Ok(Ok(ref p)) if p == "PONG")
    }

    /// Tells the other nodes that events were committed (never waits).
    pub fn wake_peers(&self) {
        self.wake.notify_one();
    }

    /// Sends an ephemeral event to the other nodes (never waits; dropped, and logged,
    /// while the queue is full). `version` orders presence changes.
    pub fn send_ephemeral(&self, event: &Event, version: Option<u64>) {
        let envelope = EnvelopeRef {
            node: &self.node,
            version,
            event,
        };
        let Ok(text) = serde_json::to_string(&envelope) else {
            return;
        };
        if self.outgoing.try_send(text).is_err() && self.failures.due() {
            tracing::warn!("Redis publishing is behind; dropping ephemeral events");
        }
    }

    /// Whether a presence change with `version` is newer than any seen for `member`
    /// (and remembers it).
    pub fn fresh_presence(&self, member: Uuid, version: u64) -> bool {
        self.presence.fresh(member, version)
    }

    /// Stops this node's heartbeats and sweeps, as if it had died (tests, and a node on its
    /// way out).
    pub fn halt(&self) {
        self.halted.store(true, Ordering::SeqCst);
    }

    fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// Logs a failed Redis operation, at most once every [`LOG_EVERY`].
    fn log_failure(&self, what: &str, err: &dyn std::fmt::Display) {
        if self.failures.due() {
            tracing::warn!(error = %err, "Redis: {what} failed (repeats are not logged for 10 s)");
        }
    }
}

#[derive(Serialize)]
struct EnvelopeRef<'a> {
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    event: &'a Event,
}

/// Rate limit for log lines.
#[derive(Default)]
struct Throttle {
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Runs a Redis future with [`COMMAND_TIMEOUT`].
async fn timed<T>(
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".into()),
    }
}
