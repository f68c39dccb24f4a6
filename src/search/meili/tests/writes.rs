//! Live-server tests of matching, writes, hostile queries and the checkpoint.

use uuid::Uuid;

use super::super::MeiliIndex;
use super::{doc, drop_index, ids, index_from_env, request};
use crate::search::SearchIndex;

#[tokio::test]
async fn words_match_exactly_all_of_them_and_edits_replace() {
    let Some(index) = index_from_env().await else {
        return;
    };
    let (channel, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let docs = vec![
        doc(a, channel, "Apple pie recipe"),
        doc(b, channel, "apple juice"),
        doc(c, other, "apple pie elsewhere"),
    ];
    index.upsert(docs.clone()).await.expect("upsert");
    index.upsert(docs).await.expect("upsert is idempotent");
    index.commit(1).await.expect("commit");
    assert_eq!(ids(&index, &request(channel, "APPLE pie")).await, vec![a]);
    assert_eq!(
        ids(&index, &request(channel, "appel")).await,
        Vec::<Uuid>::new(),
        "no typos"
    );
    assert_eq!(
        ids(&index, &request(channel, "app")).await,
        Vec::<Uuid>::new(),
        "no prefixes"
    );

    index
        .upsert(vec![doc(a, channel, "banana bread")])
        .await
        .expect("edit");
    index.commit(2).await.expect("commit");
    assert_eq!(
        ids(&index, &request(channel, "pie")).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(ids(&index, &request(channel, "banana")).await, vec![a]);

    index
        .delete_messages(vec![b, Uuid::now_v7()])
        .await
        .expect("delete");
    index.delete_channel(other).await.expect("delete channel");
    index.commit(3).await.expect("commit");
    assert_eq!(
        ids(&index, &request(channel, "apple")).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(
        ids(&index, &request(other, "apple")).await,
        Vec::<Uuid>::new()
    );
    assert_eq!(ids(&index, &request(channel, "bread")).await, vec![a]);
    drop_index(index).await;
}

#[tokio::test]
async fn hostile_queries_are_plain_words() {
    let Some(index) = index_from_env().await else {
        return;
    };
    let channel = Uuid::now_v7();
    let id = Uuid::now_v7();
    index
        .upsert(vec![doc(id, channel, "apple AND orange")])
        .await
        .expect("upsert");
    index.commit(1).await.expect("commit");

    let long = "x(\"".repeat(67);
    let hostile = [
        "\"",
        "\"\"",
        "\"apple",
        "-",
        "--apple",
        "(",
        ")",
        "AND",
        "OR NOT",
        ":",
        "*",
        "~",
        "channelId = x",
        "apple:*",
        "\\",
        "'",
        "`",
        "{}[]",
        "😀",
        "日本語",
        "🎉 -\"x",
        "\u{0}",
        "!!!",
        "...",
        long.as_str(),
    ];
    for query in hostile {
        let result = index.search(&request(channel, query)).await;
        assert!(result.is_ok(), "{query:?}: {result:?}");
    }
    for dropped in ["\"\"", "!!!", "...", "-", "( ) :"] {
        assert_eq!(
            ids(&index, &request(channel, dropped)).await,
            Vec::<Uuid>::new(),
            "{dropped:?}"
        );
    }
    // `-` and quotes are not operators: these are the words apple and orange.
    assert_eq!(
        ids(&index, &request(channel, "-apple \"orange")).await,
        vec![id]
    );
    assert_eq!(ids(&index, &request(channel, "apple AND")).await, vec![id]);
    assert_eq!(
        ids(&index, &request(channel, "pear")).await,
        Vec::<Uuid>::new()
    );
    drop_index(index).await;
}

#[tokio::test]
async fn checkpoint_is_durable_shared_and_never_moves_back() {
    let Some(index) = index_from_env().await else {
        return;
    };
    assert_eq!(index.checkpoint().await.expect("checkpoint"), None);
    index.commit(10).await.expect("commit");
    index.commit(5).await.expect("commit");
    assert_eq!(index.checkpoint().await.expect("checkpoint"), Some(10));

    // Another node (or a restart) on the same index sees and respects it.
    let url = std::env::var("BRIGHTCHAT_TEST_MEILI_URL").unwrap_or_default();
    let key = std::env::var("BRIGHTCHAT_TEST_MEILI_KEY").ok();
    let other = MeiliIndex::connect(&url, key.as_deref(), index.index_uid())
        .await
        .expect("reopen");
    assert_eq!(other.checkpoint().await.expect("checkpoint"), Some(10));
    other.commit(12).await.expect("commit");
    index.commit(11).await.expect("commit");
    assert_eq!(index.checkpoint().await.expect("checkpoint"), Some(12));

    let channel = Uuid::now_v7();
    index
        .upsert(vec![doc(Uuid::now_v7(), channel, "cleared")])
        .await
        .expect("upsert");
    index.commit(13).await.expect("commit");
    index.clear().await.expect("clear");
    assert_eq!(index.checkpoint().await.expect("checkpoint"), None);
    assert_eq!(
        ids(&index, &request(channel, "cleared")).await,
        Vec::<Uuid>::new()
    );
    drop_index(index).await;
}
