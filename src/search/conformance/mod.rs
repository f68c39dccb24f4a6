//! The conformance suite every [`SearchIndex`] backend must pass (the rules in
//! `src/search/mod.rs`): `run(index)` panics with a message naming the rule on any
//! violation.
//!
//! It brings its own data in fresh random channels and never calls `clear()`, so it can run
//! against an index that other data (or another run) shares, such as one Meilisearch index.
//! It relies on no stemming, no typo tolerance and no stop words. Every search it makes is
//! also checked for the general rules: at most `limit` hits, no id twice, scores in `0..=1`
//! and non-increasing, equal scores ordered newest first.

mod matching;
mod writes;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::{NoContext, Timestamp, Uuid};

use super::{IndexDoc, SearchHit, SearchIndex, SearchRequest};

/// Runs every case against `index`, panicking on the first violation.
pub async fn run(index: &dyn SearchIndex) {
    let suite = Suite::new(index);
    matching::run(&suite).await;
    writes::run(&suite).await;
}

/// The index under test and the suite's own counters.
pub(crate) struct Suite<'a> {
    index: &'a dyn SearchIndex,
    /// The checkpoint the next commit records (increasing through the run).
    checkpoint: AtomicI64,
    /// The millisecond of the last message id handed out.
    last_ms: AtomicU64,
}

impl<'a> Suite<'a> {
    fn new(index: &'a dyn SearchIndex) -> Self {
        Self {
            index,
            checkpoint: AtomicI64::new(42),
            last_ms: AtomicU64::new(0),
        }
    }

    /// A new UUID v7 message id, later (greater) than every id handed out before: each id
    /// is a distinct millisecond, so their order never depends on the random bits.
    pub(crate) fn message_id(&self) -> Uuid {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2))
            .unwrap_or(0);
        let previous = self
            .last_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        let ms = now.max(previous + 1);
        let ts = Timestamp::from_unix(NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
        Uuid::new_v7(ts)
    }

    /// A document in `channel` with a new id and `text`.
    pub(crate) fn doc(&self, channel: Uuid, text: &str) -> IndexDoc {
        let message_id = self.message_id();
        let created_at_ms = message_id
            .get_timestamp()
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                i64::try_from(secs).unwrap_or(0) * 1000 + i64::from(nanos / 1_000_000)
            })
            .unwrap_or(0);
        IndexDoc {
            message_id,
            channel_id: channel,
            sender_id: Uuid::new_v4(),
            created_at_ms,
            text: text.to_owned(),
        }
    }

    /// Upserts `docs` and commits them.
    pub(crate) async fn index(&self, docs: &[IndexDoc]) {
        self.index
            .upsert(docs.to_vec())
            .await
            .unwrap_or_else(|e| panic!("upsert of {} documents failed: {e}", docs.len()));
        self.commit().await;
    }

    /// Commits with the next checkpoint and returns it.
    pub(crate) async fn commit(&self) -> i64 {
        let checkpoint = self.checkpoint.fetch_add(1, Ordering::SeqCst);
        self.index
            .commit(checkpoint)
            .await
            .unwrap_or_else(|e| panic!("commit({checkpoint}) failed: {e}"));
        checkpoint
    }

    /// Searches with `request`, checks the general rules, and returns the hits.
    pub(crate) async fn search(&self, request: SearchRequest) -> Vec<SearchHit> {
        let hits = self
            .index
            .search(&request)
            .await
            .unwrap_or_else(|e| panic!("search {:?} failed: {e}", request.query));
        check_general_rules(&request, &hits);
        hits
    }

    /// The ids of the hits for `query` in `channel` (limit 100), best first.
    pub(crate) async fn ids(&self, channel: Uuid, query: &str) -> Vec<Uuid> {
        ids(&self.search(request(channel, query)).await)
    }
}

/// A request for `query` in `channel`, unbounded, limit 100.
pub(crate) fn request(channel: Uuid, query: &str) -> SearchRequest {
    SearchRequest {
        channel_id: channel,
        query: query.to_owned(),
        after_id: None,
        until_id: None,
        limit: 100,
    }
}

pub(crate) fn ids(hits: &[SearchHit]) -> Vec<Uuid> {
    hits.iter().map(|h| h.message_id).collect()
}

/// The ids of `docs`, newest first (the order of equally relevant hits).
pub(crate) fn newest_first(docs: &[&IndexDoc]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = docs.iter().map(|d| d.message_id).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

fn check_general_rules(request: &SearchRequest, hits: &[SearchHit]) {
    let q = &request.query;
    assert!(
        hits.len() <= request.limit,
        "search {q:?}: {} hits for limit {}",
        hits.len(),
        request.limit
    );
    for hit in hits {
        assert!(
            (0.0..=1.0).contains(&hit.score),
            "search {q:?}: score {} is outside 0..=1",
            hit.score
        );
    }
    for (i, pair) in hits.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.score >= b.score,
            "search {q:?}: scores must not increase, hit {i} has {} and hit {} has {}",
            a.score,
            i + 1,
            b.score
        );
        if a.score == b.score {
            assert!(
                a.message_id > b.message_id,
                "search {q:?}: equal scores must be ordered newest first (hits {i} and {})",
                i + 1
            );
        }
    }
    let mut seen: Vec<Uuid> = ids(hits);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        hits.len(),
        "search {q:?}: a message id came twice"
    );
}
