//! Channel search (CONTRACT.md "Search"): one [`SearchIndex`] trait and two backends,
//! Meilisearch ([`meili::MeiliIndex`], when `BRIGHTCHAT_MEILI_URL` is set) and an embedded
//! index in the data dir ([`embedded::EmbeddedIndex`], the default), which pass one shared
//! conformance suite. The service layer sees only the trait.
//!
//! What an index holds is enough to match and rank, keyed by message id: the channel, the
//! sender, the time, and the message's words. The embedded index stores no message text
//! (its words are indexed, not stored); Meilisearch keeps the text of what it indexes (see
//! docs/search.md). Results are message ids with a score; the service reads the messages
//! themselves from the database, so deleted messages and hidden history never leak even
//! when the index lags.
//!
//! Matching: every word of the query must occur in a message (case-insensitive). Ranking is
//! the backend's: BM25 for the embedded index, Meilisearch's ranking rules otherwise. Each
//! backend maps its score into `0..=1`, higher is better, and orders equal scores by
//! message id, newest first.

#[doc(hidden)]
pub mod conformance;
pub mod embedded;
pub mod indexer;
pub mod lease;
pub mod meili;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::Notify;
use uuid::Uuid;

/// A channel message on its way into an index. The text lives only in memory here.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexDoc {
    pub message_id: Uuid,
    pub channel_id: Uuid,
    pub sender_id: Uuid,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The plaintext to index (the current version, for an edited message).
    pub text: String,
}

/// One search in one channel.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchRequest {
    pub channel_id: Uuid,
    /// 1..=200 characters (checked by the service).
    pub query: String,
    /// Only messages with an id greater than this one (history hidden from a newcomer).
    pub after_id: Option<Uuid>,
    /// Only messages with an id at most this one (a result's snapshot bound).
    pub until_id: Option<Uuid>,
    /// Most hits to return, best first.
    pub limit: usize,
}

/// One hit: a message id and its relevance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchHit {
    pub message_id: Uuid,
    /// In `0..=1`, higher is more relevant.
    pub score: f32,
}

/// What a backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The backend does not answer (network, time-out, 5xx): the caller may retry later.
    #[error("search backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a bad setting, a corrupt index, a refused task).
    #[error("search backend error: {0}")]
    Internal(String),
}

/// A search backend. Writes are idempotent (upserting a message twice, deleting one that
/// is not there, are harmless), so replaying events after a crash is safe.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// `embedded` or `meilisearch` (logs, `/readyz`, the benchmark).
    fn name(&self) -> &'static str;

    /// Whether every node of a deployment uses this same index (then one node indexes
    /// for all, see [`lease`]). A node's own index (the embedded one) is not shared.
    fn shared(&self) -> bool {
        false
    }

    /// Adds messages, or replaces them by id (an edit replaces the old text).
    async fn upsert(&self, docs: Vec<IndexDoc>) -> Result<(), SearchError>;

    /// Removes messages by id.
    async fn delete_messages(&self, ids: Vec<Uuid>) -> Result<(), SearchError>;

    /// Removes every message of a channel.
    async fn delete_channel(&self, channel_id: Uuid) -> Result<(), SearchError>;

    /// Makes every write so far durable and searchable, and records `checkpoint` (the
    /// sequence of the last event those writes reflect) with them, so that after a crash
    /// [`SearchIndex::checkpoint`] never claims more than the index holds.
    async fn commit(&self, checkpoint: i64) -> Result<(), SearchError>;

    /// The checkpoint of the last commit; `None` for an index never committed.
    async fn checkpoint(&self) -> Result<Option<i64>, SearchError>;

    /// Hits for `request`, best first, at most `request.limit`.
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError>;

    /// Removes everything and forgets the checkpoint (before a full rebuild).
    async fn clear(&self) -> Result<(), SearchError>;

    /// Whether the backend answers now (for `/readyz`).
    async fn healthy(&self) -> bool;
}

/// Opens the configured backend: Meilisearch when `BRIGHTCHAT_MEILI_URL` is set, else the
/// embedded index in `<data dir>/search`.
pub async fn open(config: &crate::Config) -> anyhow::Result<Arc<dyn SearchIndex>> {
    match &config.meili_url {
        Some(url) => {
            let index =
                meili::MeiliIndex::connect(url, config.meili_key.as_deref(), &config.meili_index)
                    .await
                    .map_err(|err| anyhow::anyhow!("BRIGHTCHAT_MEILI_URL: {err}"))?;
            Ok(Arc::new(index))
        }
        None => {
            let dir = config.data_dir.join("search");
            // One process writes an embedded index. A server stopping in this process (or
            // one just exiting) releases it within moments: wait a little for that.
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            loop {
                match embedded::EmbeddedIndex::open(&dir) {
                    Ok(index) => return Ok(Arc::new(index)),
                    Err(err) if err.to_string().contains("Lock") && Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(err) => {
                        anyhow::bail!(
                            "the search index in {} cannot be opened (is another server using this data dir?): {err}",
                            dir.display()
                        )
                    }
                }
            }
        }
    }
}

/// A frozen, ordered result list: the pages of one search are slices of it, so paging
/// never repeats or skips a hit however the index changes meanwhile.
pub struct ResultSnapshot {
    pub hits: Vec<SearchHit>,
    pub made: Instant,
}

/// The node's search: its index, the indexer's wake-up and position, and recent result
/// snapshots.
pub struct Search {
    pub index: Arc<dyn SearchIndex>,
    /// Rung after every commit on this node, so the indexer follows within milliseconds.
    pub wake: Notify,
    /// The checkpoint the indexer last reached (-1 before its first catch-up).
    indexed: AtomicI64,
    /// Result snapshots by search scope and bound.
    pub snapshots: quick_cache::sync::Cache<String, Arc<ResultSnapshot>>,
    /// Who indexes a shared backend.
    pub lease: lease::Lease,
}

/// Result snapshots kept per node (each at most [`MAX_SNAPSHOT_HITS`] hits).
const SNAPSHOT_CAPACITY: usize = 2_000;
/// The most hits one search can page through.
pub const MAX_SNAPSHOT_HITS: usize = 1_000;

impl Search {
    pub fn new(index: Arc<dyn SearchIndex>) -> Self {
        Self {
            index,
            wake: Notify::new(),
            indexed: AtomicI64::new(-1),
            snapshots: quick_cache::sync::Cache::new(SNAPSHOT_CAPACITY),
            lease: lease::Lease::default(),
        }
    }

    /// Records how far the indexer got.
    pub fn set_indexed(&self, checkpoint: i64) {
        self.indexed.store(checkpoint, Ordering::Relaxed);
    }

    /// How far the indexer got, once it has caught up at least once.
    pub fn indexed(&self) -> Option<i64> {
        Some(self.indexed.load(Ordering::Relaxed)).filter(|c| *c >= 0)
    }
}
