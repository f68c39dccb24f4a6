//! Shared application state handed to every handler and service function.

use std::ops::Deref;
use std::sync::Arc;

use crate::config::Config;
use crate::crypto::ServerKey;
use crate::db::Db;
use crate::events::InProcessBus;
use crate::events::connections::ConnectionCounter;
use crate::events::outbox::EventHub;
use crate::search::{Search, SearchIndex};
use crate::service::auth::TokenCache;
use crate::service::gates::Gates;
use crate::service::keys::EpochKeyCache;
use crate::service::pagination::CursorCodec;
use crate::service::presence::Presence;

/// Events the bus holds for the node's router before it lags. A slot's event is released as
/// soon as the router has read it, so only a router that is behind holds events.
const BUS_CAPACITY: usize = 16_384;

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What the state holds.
pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub server_key: ServerKey,
    pub cursors: CursorCodec,
    pub tokens: TokenCache,
    pub epoch_keys: EpochKeyCache,
    pub presence: Presence,
    pub events: EventHub,
    /// Per-context admission gates for writes.
    pub gates: Gates,
    /// WebSocket connections open per member.
    pub connections: ConnectionCounter,
    /// Channel search: the index and its indexer's state.
    pub search: Search,
    /// Moderation plugins.
    pub plugins: crate::plugins::Plugins,
    /// What plugin hooks are told, kept where it changes rarely.
    pub facts: crate::service::facts::FactsCache,
    /// Where ECIES work runs (bounded).
    pub crypto: crate::crypto::CryptoPool,
    /// Public keys and conversation ids, which never change once written.
    pub lookups: crate::service::lookups::Lookups,
    /// Group commit for message sends.
    pub writer: crate::service::writer::Writer,
    /// The other nodes, through Redis (`BRIGHTCHAT_REDIS_URL`); `None` for a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Rate limits (`BRIGHTCHAT_RATE_AUTH`, `BRIGHTCHAT_RATE_WRITE`).
    pub limits: crate::service::limits::Limits,
    /// Debounce of repeated `typing_start` frames (bounded).
    pub typing: crate::service::typing::TypingWindows,
    /// Prometheus series (served on `BRIGHTCHAT_METRICS_BIND`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The supervised background tasks (see [`crate::supervise`]).
    pub tasks: Arc<crate::supervise::Tasks>,
}

impl AppState {
    /// The state of a node; `cluster` links it to the others (see [`crate::cluster`]).
    pub fn new(
        config: Config,
        db: Db,
        server_key: ServerKey,
        index: Arc<dyn SearchIndex>,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Self {
        // SQLite has one writer: one queue. PostgreSQL commits batches of different
        // contexts in parallel.
        let writer_shards = match db.backend() {
            sea_orm::DbBackend::Postgres => 4,
            _ => 1,
        };
        let cursors = CursorCodec::new(server_key.derive("brightchat cursor v1"));
        // The bus feeds one router per node, which never waits on a connection: it only lags
        // when the node is overloaded as a whole.
        let bus = std::sync::Arc::new(InProcessBus::new(BUS_CAPACITY.max(config.ws_buffer)));
        let queue = config.ws_buffer;
        let registry = Arc::new(crate::plugins::Registry::new(
            config.plugins_dir.clone(),
            crate::plugins::Limits {
                budget: config.plugin_budget,
                ..crate::plugins::Limits::default()
            },
        ));
        registry.reload();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let plugins = crate::plugins::Plugins::new(
            registry,
            Arc::new(crate::plugins::DbStateStore::new(db.write.clone())),
            metrics.clone(),
        );
        let limits = crate::service::limits::Limits::new(&config);
        Self(Arc::new(Inner {
            limits,
            config,
            db,
            server_key,
            cursors,
            tokens: TokenCache::new(),
            epoch_keys: EpochKeyCache::new(),
            presence: Presence::default(),
            events: EventHub::new(bus, queue, cluster.clone()),
            gates: Gates::default(),
            connections: ConnectionCounter::default(),
            search: Search::new(index),
            plugins,
            facts: Default::default(),
            crypto: Default::default(),
            lookups: Default::default(),
            writer: crate::service::writer::Writer::new(writer_shards),
            typing: Default::default(),
            cluster,
            metrics,
            tasks: Default::default(),
        }))
    }
}

/// What background tasks hold: it does not keep the server alive. Once every server handle
/// (router, `App`) is gone, the tasks end at their next turn and the storage they share
/// (database pools, the search index's lock) is released, as a restart in the same process
/// needs.
#[derive(Clone)]
pub struct WeakState(std::sync::Weak<Inner>);

impl WeakState {
    /// The state, while the server is alive.
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}

impl AppState {
    /// A handle for background tasks (see [`WeakState`]).
    pub fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.0))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
