//! The checkpoint, kept in Meilisearch itself, in the index `<uid>_meta`.
//!
//! Each commit adds a document `{"id": "c<checkpoint>", "seq": <checkpoint>}` and then
//! deletes those with a smaller `seq`; the checkpoint is the largest `seq`. There is no
//! read-modify-write, so nodes sharing one Meilisearch can commit concurrently and the
//! checkpoint never moves backwards: the largest document is never among those deleted.
//! `seq` is filtered and sorted as an `f64`, exact up to 2^53.

use meilisearch_sdk::documents::DocumentDeletionQuery;
use meilisearch_sdk::indexes::Index;
use meilisearch_sdk::search::{SearchResults, Selectors};
use serde::{Deserialize, Serialize};

use super::calls::call;
use crate::search::SearchError;

/// The uid of the companion index that holds the checkpoint.
pub fn meta_uid(index_uid: &str) -> String {
    format!("{index_uid}_meta")
}

#[derive(Serialize, Deserialize)]
struct CheckpointDoc {
    #[serde(skip_deserializing)]
    id: String,
    seq: i64,
}

/// Sends the checkpoint document and the pruning of older ones; returns both task uids.
pub async fn record(meta: &Index, checkpoint: i64) -> Result<(u32, u32), SearchError> {
    let doc = CheckpointDoc {
        id: format!("c{checkpoint}"),
        seq: checkpoint,
    };
    let recorded = call(meta.add_or_replace(&[doc], Some("id"))).await?;
    let filter = format!("seq < {checkpoint}");
    let mut prune = DocumentDeletionQuery::new(meta);
    prune.with_filter(&filter);
    let pruned = call(meta.delete_documents_with(&prune)).await?;
    Ok((recorded.task_uid, pruned.task_uid))
}

/// The largest recorded checkpoint, `None` when there is none.
pub async fn read(meta: &Index) -> Result<Option<i64>, SearchError> {
    let mut query = meta.search();
    query
        .with_sort(&["seq:desc"])
        .with_limit(1)
        .with_attributes_to_retrieve(Selectors::Some(&["seq"]));
    let results: SearchResults<CheckpointDoc> = call(query.execute()).await?;
    Ok(results.hits.first().map(|hit| hit.result.seq))
}
