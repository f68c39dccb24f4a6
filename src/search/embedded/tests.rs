use std::path::Path;

use uuid::Uuid;

use super::EmbeddedIndex;
use crate::search::{IndexDoc, SearchIndex, SearchRequest, conformance};

fn doc(channel: Uuid, text: &str) -> IndexDoc {
    IndexDoc {
        message_id: Uuid::now_v7(),
        channel_id: channel,
        sender_id: Uuid::new_v4(),
        created_at_ms: 1_700_000_000_000,
        text: text.to_owned(),
    }
}

fn request(channel: Uuid, query: &str) -> SearchRequest {
    SearchRequest {
        channel_id: channel,
        query: query.to_owned(),
        after_id: None,
        until_id: None,
        limit: 10,
    }
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the index dir") {
        let path = entry.expect("a dir entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read an index file");
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn passes_the_conformance_suite_in_memory() {
    let index = EmbeddedIndex::in_memory().expect("an in-memory index");
    conformance::run(&index).await;
}

#[tokio::test]
async fn passes_the_conformance_suite_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = EmbeddedIndex::open(&dir.path().join("search")).expect("open the index");
    conformance::run(&index).await;
}

/// The index directory never holds a message's text: words are indexed without positions
/// and nothing is stored. Single words do live in the term dictionary (that is what makes
/// them searchable), so what is checked is that the sentence, and any two of its words in
/// order, appear nowhere.
#[tokio::test]
async fn the_index_directory_holds_no_message_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sentence = "Meet me behind the lighthouse at midnight with the quartermaster";
    let channel = Uuid::new_v4();
    {
        let index = EmbeddedIndex::open(dir.path()).expect("open the index");
        index
            .upsert(vec![doc(channel, sentence)])
            .await
            .expect("upsert");
        index.commit(7).await.expect("commit");
        let hits = index
            .search(&request(channel, "lighthouse quartermaster"))
            .await
            .expect("search");
        assert_eq!(hits.len(), 1, "the message is searchable");
    }
    let files = files(dir.path());
    assert!(!files.is_empty(), "the index wrote files");
    let words: Vec<&str> = sentence.split(' ').collect();
    let mut needles = vec![sentence.to_owned(), sentence.to_lowercase()];
    needles.extend(
        words
            .windows(2)
            .map(|pair| pair.join(" ").to_lowercase())
            .filter(|pair| pair.len() > 8),
    );
    for (name, bytes) in &files {
        for needle in &needles {
            assert!(
                !contains(bytes, needle.as_bytes()),
                "{name} contains {needle:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_checkpoint_and_the_data_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let channel = Uuid::new_v4();
    let message = doc(channel, "durable words");
    {
        let index = EmbeddedIndex::open(dir.path()).expect("open the index");
        assert_eq!(index.checkpoint().await.expect("checkpoint"), None);
        index.upsert(vec![message.clone()]).await.expect("upsert");
        index.commit(41).await.expect("commit");
        index.commit(42).await.expect("commit");
        // Written but never committed: lost on restart, and the checkpoint says so.
        index
            .upsert(vec![doc(channel, "uncommitted words")])
            .await
            .expect("upsert");
    }
    let index = EmbeddedIndex::open(dir.path()).expect("reopen the index");
    assert_eq!(index.checkpoint().await.expect("checkpoint"), Some(42));
    let hits = index
        .search(&request(channel, "words"))
        .await
        .expect("search");
    let ids: Vec<Uuid> = hits.iter().map(|h| h.message_id).collect();
    assert_eq!(ids, vec![message.message_id]);
    assert!(index.healthy().await);

    index.clear().await.expect("clear");
    assert_eq!(index.checkpoint().await.expect("checkpoint"), None);
    assert!(
        index
            .search(&request(channel, "durable"))
            .await
            .expect("search")
            .is_empty(),
        "clear removes everything"
    );
    drop(index);
    let index = EmbeddedIndex::open(dir.path()).expect("reopen the index");
    assert_eq!(index.checkpoint().await.expect("checkpoint"), None);
}

#[tokio::test]
async fn odd_limits_and_accents() {
    let index = EmbeddedIndex::in_memory().expect("an in-memory index");
    let channel = Uuid::new_v4();
    let cafe = doc(channel, "Rendez-vous au Café Crème");
    index.upsert(vec![cafe.clone()]).await.expect("upsert");
    index.commit(1).await.expect("commit");
    let ask = |query: &str, limit: usize| SearchRequest {
        limit,
        ..request(channel, query)
    };
    let found = index.search(&ask("cafe creme", usize::MAX)).await;
    assert_eq!(
        found.expect("a huge limit is fine").len(),
        1,
        "accents fold: \"cafe\" finds \"Café\""
    );
    let none = index.search(&ask("cafe", 0)).await.expect("limit 0");
    assert!(none.is_empty(), "limit 0 has no hit");
    let long = format!("cafe {}", "x".repeat(60));
    let found = index.search(&ask(&long, 5)).await.expect("a long word");
    assert_eq!(
        found.len(),
        1,
        "words over 40 bytes are not indexed, nor searched"
    );
}
