//! The embedded search index (the default backend): tantivy, in a directory of the data dir.
//!
//! It stores no message text (see [`schema`] for what it holds). Writes go through the one
//! `IndexWriter` tantivy allows per index, behind a mutex; all tantivy work runs on tokio's
//! blocking pool. A commit carries the checkpoint as tantivy's commit payload, so the data
//! and the checkpoint become durable together, and reloads the reader before returning, so
//! a search right after `commit` sees every write before it.

mod query;
mod schema;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use self::schema::Fields;
use super::{IndexDoc, SearchError, SearchHit, SearchIndex, SearchRequest};

/// Memory the writer may buffer before it flushes a segment.
const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;

/// One indexing thread: the indexer commits small batches often, and one thread makes one
/// segment per commit (fewer segments for each search to visit). Measured faster than two
/// threads on a 2-core machine at 100,000 messages (see benches/search.rs).
const WRITER_THREADS: usize = 1;

/// A tantivy index of channel messages. Cheap to share: clone the `Arc` it is kept in.
pub struct EmbeddedIndex {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    fields: Fields,
}

fn internal(context: &str) -> impl FnOnce(tantivy::TantivyError) -> SearchError + '_ {
    move |e| SearchError::Internal(format!("embedded index: {context}: {e}"))
}

impl EmbeddedIndex {
    /// Opens the index in `path` (created, with its parents, when missing). Only one
    /// process may have it open: tantivy's lock file refuses a second writer.
    pub fn open(path: &Path) -> Result<Self, SearchError> {
        std::fs::create_dir_all(path).map_err(|e| {
            SearchError::Internal(format!("embedded index: create {}: {e}", path.display()))
        })?;
        let directory = MmapDirectory::open(path)
            .map_err(|e| SearchError::Internal(format!("embedded index: open: {e}")))?;
        let (schema, fields) = schema::build_schema();
        let index = Index::builder()
            .schema(schema)
            .tokenizers(schema::tokenizers())
            .open_or_create(directory)
            .map_err(internal("open"))?;
        Self::from_index(index, fields)
    }

    /// An index in memory only (tests, benchmarks): the same behaviour, nothing on disk.
    pub fn in_memory() -> Result<Self, SearchError> {
        let (schema, fields) = schema::build_schema();
        let index = Index::builder()
            .schema(schema)
            .tokenizers(schema::tokenizers())
            .create_in_ram()
            .map_err(internal("create"))?;
        Self::from_index(index, fields)
    }

    fn from_index(index: Index, fields: Fields) -> Result<Self, SearchError> {
        let writer = index
            .writer_with_num_threads(WRITER_THREADS, WRITER_HEAP_BYTES)
            .map_err(internal("open the writer"))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(internal("open the reader"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                index,
                reader,
                writer: Mutex::new(writer),
                fields,
            }),
        })
    }

    /// Runs `work` on the blocking pool with the shared state.
    async fn blocking<T, F>(&self, work: F) -> Result<T, SearchError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, SearchError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| SearchError::Internal(format!("embedded index: task failed: {e}")))?
    }
}

impl Inner {
    /// Runs `work` with the writer. A writer left poisoned by a panic is still consistent
    /// (tantivy only publishes at commit), so it is used again.
    fn with_writer<T>(
        &self,
        work: impl FnOnce(&mut IndexWriter<TantivyDocument>) -> Result<T, SearchError>,
    ) -> Result<T, SearchError> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        work(&mut writer)
    }

    fn id_term(&self, id: Uuid) -> Term {
        Term::from_field_bytes(self.fields.id, id.as_bytes())
    }

    /// Commits with `payload` (the checkpoint, or none) and makes the commit searchable.
    fn commit(&self, payload: Option<String>) -> Result<(), SearchError> {
        self.with_writer(|writer| {
            let mut prepared = writer.prepare_commit().map_err(internal("commit"))?;
            if let Some(payload) = &payload {
                prepared.set_payload(payload);
            }
            prepared.commit().map_err(internal("commit"))?;
            Ok(())
        })?;
        self.reader.reload().map_err(internal("reload"))
    }
}

#[async_trait]
impl SearchIndex for EmbeddedIndex {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn upsert(&self, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| {
            inner.with_writer(|writer| {
                for doc in &docs {
                    // A delete only hits documents added before it, so a message upserted
                    // twice in one batch keeps its last version.
                    writer.delete_term(inner.id_term(doc.message_id));
                    writer
                        .add_document(schema::to_document(&inner.fields, doc))
                        .map_err(internal("add"))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_messages(&self, ids: Vec<Uuid>) -> Result<(), SearchError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| {
            inner.with_writer(|writer| {
                for id in ids {
                    writer.delete_term(inner.id_term(id));
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_channel(&self, channel_id: Uuid) -> Result<(), SearchError> {
        self.blocking(move |inner| {
            let term = Term::from_field_bytes(inner.fields.channel, channel_id.as_bytes());
            inner.with_writer(|writer| {
                writer.delete_term(term);
                Ok(())
            })
        })
        .await
    }

    async fn commit(&self, checkpoint: i64) -> Result<(), SearchError> {
        self.blocking(move |inner| inner.commit(Some(checkpoint.to_string())))
            .await
    }

    async fn checkpoint(&self) -> Result<Option<i64>, SearchError> {
        self.blocking(|inner| {
            let metas = inner.index.load_metas().map_err(internal("read metas"))?;
            match metas.payload {
                None => Ok(None),
                Some(payload) => payload.parse::<i64>().map(Some).map_err(|_| {
                    SearchError::Internal(format!(
                        "embedded index: the commit payload {payload:?} is not a checkpoint"
                    ))
                }),
            }
        })
        .await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
        let request = request.clone();
        self.blocking(move |inner| query::run(&inner.reader.searcher(), &inner.fields, &request))
            .await
    }

    async fn clear(&self) -> Result<(), SearchError> {
        self.blocking(|inner| {
            inner.with_writer(|writer| {
                writer
                    .delete_all_documents()
                    .map_err(internal("delete all"))?;
                Ok(())
            })?;
            // A commit without a payload: the checkpoint is forgotten with the data.
            inner.commit(None)
        })
        .await
    }

    async fn healthy(&self) -> bool {
        // Reading the small meta file shows the directory is still there and readable.
        self.blocking(|inner| inner.index.load_metas().map_err(internal("read metas")))
            .await
            .is_ok()
    }
}
