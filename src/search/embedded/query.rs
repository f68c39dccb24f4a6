//! One search: the user's words become a conjunction of term queries (never parsed as a
//! query language), the channel and the id bounds become zero-scored filters, and the
//! top hits are collected by BM25 score, then message id descending.

use std::ops::Bound;

use tantivy::collector::TopDocs;
use tantivy::collector::sort_key::{SortByBytes, SortBySimilarityScore};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{Order, Searcher, Term};
use uuid::Uuid;

use super::schema::{Fields, ID_FIELD, words};
use crate::search::{SearchError, SearchHit, SearchRequest};

/// Maps a BM25 score (`>= 0`, unbounded) into `0..=1`, keeping the order: `s / (1 + s)`.
/// Scores are comparable within one search only.
pub(crate) fn normalise(score: f32) -> f32 {
    if score.is_finite() && score > 0.0 {
        (score / (1.0 + score)).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The query for `request`, or `None` when no hit is possible (no indexable word in the
/// query, or bounds that exclude everything).
fn build_query(fields: &Fields, request: &SearchRequest) -> Option<BooleanQuery> {
    let words = words(&request.query);
    if words.is_empty() {
        return None;
    }
    if let (Some(after), Some(until)) = (request.after_id, request.until_id)
        && after >= until
    {
        return None;
    }
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = words
        .iter()
        .map(|word| {
            let term = Term::from_field_text(fields.text, word);
            let query: Box<dyn Query> =
                Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
            (Occur::Must, query)
        })
        .collect();
    let channel = TermQuery::new(
        Term::from_field_bytes(fields.channel, request.channel_id.as_bytes()),
        IndexRecordOption::Basic,
    );
    clauses.push((Occur::Must, filter(Box::new(channel))));
    if request.after_id.is_some() || request.until_id.is_some() {
        let id_term = |id: Uuid| Term::from_field_bytes(fields.id, id.as_bytes());
        let lower = request
            .after_id
            .map_or(Bound::Unbounded, |id| Bound::Excluded(id_term(id)));
        let upper = request
            .until_id
            .map_or(Bound::Unbounded, |id| Bound::Included(id_term(id)));
        clauses.push((Occur::Must, filter(Box::new(RangeQuery::new(lower, upper)))));
    }
    Some(BooleanQuery::new(clauses))
}

/// A clause that restricts the hits without adding to their score.
fn filter(query: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(query, 0.0))
}

/// Runs `request` on `searcher` (blocking: call it off the async runtime).
pub(crate) fn run(
    searcher: &Searcher,
    fields: &Fields,
    request: &SearchRequest,
) -> Result<Vec<SearchHit>, SearchError> {
    let Some(query) = build_query(fields, request) else {
        return Ok(Vec::new());
    };
    // Never ask the collector for more than the index holds (a huge limit must not
    // allocate), and never for zero (the collector refuses it).
    let num_docs = usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX);
    let limit = request.limit.min(num_docs);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let collector = TopDocs::with_limit(limit).order_by((
        (SortBySimilarityScore, Order::Desc),
        (SortByBytes::for_field(ID_FIELD), Order::Desc),
    ));
    let top = searcher
        .search(&query, &collector)
        .map_err(|e| SearchError::Internal(format!("embedded search: {e}")))?;
    // BM25 uses statistics of the whole index (how many messages hold a word, in every
    // channel, hidden history and not-yet-merged deletions included), so its raw value
    // would let a searcher estimate how often a word occurs where it may not look. The
    // score shown is therefore the hit's dense rank within this result, `1 / (1 + rank)`:
    // equal BM25 scores share a rank, the order is BM25's, the number is not.
    let mut hits = Vec::with_capacity(top.len());
    let mut rank = 0u32;
    let mut previous: Option<f32> = None;
    for ((score, id_bytes), _address) in top {
        let Some(message_id) = id_bytes.and_then(|bytes| Uuid::from_slice(&bytes).ok()) else {
            return Err(SearchError::Internal(
                "embedded search: a document without a valid message id".into(),
            ));
        };
        let score = normalise(score);
        if previous.is_some_and(|p| p != score) {
            rank += 1;
        }
        previous = Some(score);
        hits.push(SearchHit {
            message_id,
            score: 1.0 / (1.0 + rank as f32),
        });
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn scores_map_into_zero_one_keeping_order() {
        let raw = [0.0_f32, 0.1, 1.0, 3.5, 20.0, 1e30];
        let mapped: Vec<f32> = raw.iter().map(|s| normalise(*s)).collect();
        assert!(mapped.iter().all(|s| (0.0..=1.0).contains(s)));
        assert!(mapped.windows(2).all(|w| w[0] <= w[1]), "{mapped:?}");
        assert_eq!(normalise(f32::NAN), 0.0);
        assert_eq!(normalise(-1.0), 0.0);
    }
}
