//! The Meilisearch backend (`meilisearch-sdk`), used when `BRIGHTCHAT_MEILI_URL` is set.
//!
//! Messages live in the index `<uid>` (text, channel, sender, time, and the message id as
//! three numbers for exact range filters, see [`query::IdParts`]); the checkpoint lives in
//! `<uid>_meta`. Writes are sent at once, one task per call, and tracked; [`commit`] waits
//! for them and then records the checkpoint. Every request is bounded in time, so a
//! Meilisearch that is down makes calls fail fast with [`SearchError::Unavailable`].
//!
//! Matching is exact on words (typo tolerance and prefix search are switched off so that a
//! message is found by the words it has, and an edited one never by its old words), every
//! word must match, and Meilisearch reads at most the first 10 words of a query.
//!
//! [`commit`]: SearchIndex::commit

mod calls;
#[cfg(test)]
mod load_test;
mod meta;
mod query;
mod settings;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use meilisearch_sdk::client::Client;
use meilisearch_sdk::documents::DocumentDeletionQuery;
use meilisearch_sdk::indexes::Index;
use meilisearch_sdk::search::{MatchingStrategies, SearchResults, Selectors};
use serde::Deserialize;
use uuid::Uuid;

use self::calls::{call, call_within, first_failure, wait_for_tasks};
use self::query::{MessageDoc, channel_filter, plain_words, search_filter};
use crate::search::{IndexDoc, SearchError, SearchHit, SearchIndex, SearchRequest};

/// Documents sent in one request (Meilisearch's payload limit is 100 MB by default).
const DOCS_PER_REQUEST: usize = 5_000;
/// The most hits one search returns (also set as the index's `maxTotalHits`).
pub const MAX_HITS: usize = 1_000;
/// How long `/health` may take before the backend counts as down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`SearchIndex::commit`] and [`SearchIndex::clear`] wait for Meilisearch to
/// process the writes before they fail with `Unavailable` (the writes stay queued).
const DEFAULT_COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A channel-search index in Meilisearch.
pub struct MeiliIndex {
    client: Client,
    index: Index,
    meta: Index,
    /// Write tasks sent since the last commit.
    pending: Mutex<Vec<u32>>,
    commit_timeout: Duration,
}

#[derive(Deserialize)]
struct HitId {
    id: String,
}

impl MeiliIndex {
    /// Connects to Meilisearch at `url` (with `key`, the master key or an admin key) and
    /// creates or updates the index `index_uid` and its `<index_uid>_meta` companion with
    /// the settings this backend needs ([`MeiliIndex::apply_settings`]). Safe to run on
    /// every start, from every node.
    pub async fn connect(
        url: &str,
        key: Option<&str>,
        index_uid: &str,
    ) -> Result<Self, SearchError> {
        let this = Self::new(url, key, index_uid)?;
        this.apply_settings().await?;
        Ok(this)
    }

    /// A handle on the index without a word to Meilisearch yet (for a server that starts
    /// while Meilisearch is down: call [`MeiliIndex::apply_settings`] once it is back).
    pub fn new(url: &str, key: Option<&str>, index_uid: &str) -> Result<Self, SearchError> {
        let client = Client::new(url.trim_end_matches('/'), key)
            .map_err(|e| SearchError::Internal(format!("meilisearch client: {e}")))?;
        Ok(MeiliIndex {
            index: client.index(index_uid),
            meta: client.index(meta::meta_uid(index_uid)),
            client,
            pending: Mutex::new(Vec::new()),
            commit_timeout: DEFAULT_COMMIT_TIMEOUT,
        })
    }

    /// Creates both indexes if needed and applies their settings, waiting for Meilisearch
    /// to take them. Idempotent.
    pub async fn apply_settings(&self) -> Result<(), SearchError> {
        settings::apply(&self.client, &self.index, &self.meta, self.commit_timeout).await
    }

    /// Sets how long `commit` and `clear` wait for Meilisearch to process writes.
    pub fn with_commit_timeout(mut self, limit: Duration) -> Self {
        self.commit_timeout = limit;
        self
    }

    /// The uid of the messages index.
    pub fn index_uid(&self) -> &str {
        &self.index.uid
    }

    fn track(&self, task: u32) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    fn take_pending(&self) -> Vec<u32> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts back tasks a commit could not see finish, ahead of newer ones.
    fn restore_pending(&self, mut tasks: Vec<u32>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.append(&mut pending);
        *pending = tasks;
    }

    /// Waits for the writes sent so far; a failed one is an error (and is not retried:
    /// the caller replays from its checkpoint).
    async fn flush(&self) -> Result<(), SearchError> {
        let pending = self.take_pending();
        if pending.is_empty() {
            return Ok(());
        }
        match wait_for_tasks(&self.client, &pending, self.commit_timeout).await {
            Ok(done) => first_failure(&done),
            Err(e) => {
                self.restore_pending(pending);
                Err(e)
            }
        }
    }
}

#[async_trait]
impl SearchIndex for MeiliIndex {
    fn name(&self) -> &'static str {
        "meilisearch"
    }

    fn shared(&self) -> bool {
        true
    }

    async fn upsert(&self, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        for chunk in docs.chunks(DOCS_PER_REQUEST) {
            let body: Vec<MessageDoc<'_>> = chunk.iter().map(MessageDoc::of).collect();
            let task = call(self.index.add_or_replace(&body, Some("id"))).await?;
            self.track(task.task_uid);
        }
        Ok(())
    }

    async fn delete_messages(&self, ids: Vec<Uuid>) -> Result<(), SearchError> {
        let ids: Vec<String> = ids.iter().map(|id| id.hyphenated().to_string()).collect();
        for chunk in ids.chunks(DOCS_PER_REQUEST) {
            let task = call(self.index.delete_documents(chunk)).await?;
            self.track(task.task_uid);
        }
        Ok(())
    }

    async fn delete_channel(&self, channel_id: Uuid) -> Result<(), SearchError> {
        let filter = channel_filter(channel_id);
        let mut query = DocumentDeletionQuery::new(&self.index);
        query.with_filter(&filter);
        let task = call(self.index.delete_documents_with(&query)).await?;
        self.track(task.task_uid);
        Ok(())
    }

    async fn commit(&self, checkpoint: i64) -> Result<(), SearchError> {
        self.flush().await?;
        let (recorded, prune) = meta::record(&self.meta, checkpoint).await?;
        let done = wait_for_tasks(&self.client, &[recorded], self.commit_timeout).await?;
        first_failure(&done)?;
        // Older checkpoint documents are pruned in the background; the next commit
        // checks that the pruning went through.
        self.track(prune);
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Option<i64>, SearchError> {
        meta::read(&self.meta).await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
        let words = plain_words(&request.query);
        let limit = request.limit.min(MAX_HITS);
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let filter = search_filter(request);
        let mut query = self.index.search();
        query
            .with_query(&words)
            .with_filter(&filter)
            .with_limit(limit)
            .with_matching_strategy(MatchingStrategies::ALL)
            .with_show_ranking_score(true)
            .with_show_ranking_score_details(true)
            .with_attributes_to_retrieve(Selectors::Some(&["id"]));
        let results: SearchResults<HitId> = call(query.execute()).await?;
        Ok(hits_of(results))
    }

    async fn clear(&self) -> Result<(), SearchError> {
        self.take_pending();
        let documents = call(self.index.delete_all_documents()).await?;
        let checkpoints = call(self.meta.delete_all_documents()).await?;
        let uids = [documents.task_uid, checkpoints.task_uid];
        let done = wait_for_tasks(&self.client, &uids, self.commit_timeout).await?;
        first_failure(&done)
    }

    async fn healthy(&self) -> bool {
        matches!(
            call_within(HEALTH_TIMEOUT, self.client.health()).await,
            Ok(health) if health.status == "available"
        )
    }
}

/// Ranking rules that take part only in a search with query words (a placeholder search
/// has none of them in its ranking details). `words` is left out with the `all` strategy.
const QUERY_RULES: [&str; 7] = [
    "words",
    "typo",
    "proximity",
    "attribute",
    "attributeRank",
    "wordPosition",
    "exactness",
];

/// Hits in the order the trait promises: score descending, then message id descending.
/// Meilisearch already ranks equal relevance by id descending (the last ranking rules),
/// this only settles hits whose scores are equal as `f32`. A search whose words the
/// tokenizer all dropped runs as a placeholder search (every document, and none of the
/// [`QUERY_RULES`] in the ranking details): it has no hits.
fn hits_of(results: SearchResults<HitId>) -> Vec<SearchHit> {
    let placeholder = results.hits.iter().any(|hit| {
        hit.ranking_score_details
            .as_ref()
            .is_none_or(|details| !QUERY_RULES.iter().any(|rule| details.contains_key(*rule)))
    });
    if placeholder {
        return Vec::new();
    }
    let mut hits: Vec<SearchHit> = results
        .hits
        .into_iter()
        .filter_map(|hit| {
            let Ok(message_id) = Uuid::parse_str(&hit.result.id) else {
                tracing::warn!(id = %hit.result.id, "meilisearch returned a foreign document id");
                return None;
            };
            let score = hit.ranking_score.unwrap_or(0.0).clamp(0.0, 1.0) as f32;
            Some(SearchHit { message_id, score })
        })
        .collect();
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.message_id.cmp(&a.message_id))
    });
    hits
}
