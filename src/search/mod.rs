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

use async_trait::async_trait;
use uuid::Uuid;

pub mod meili;

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
