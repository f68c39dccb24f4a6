//! Writes: replacing, deleting, repeating, and the checkpoint.

use uuid::Uuid;

use super::{IndexDoc, Suite};

pub(super) async fn run(suite: &Suite<'_>) {
    upsert_replaces(suite).await;
    delete_messages(suite).await;
    delete_channel(suite).await;
    repeats_are_harmless(suite).await;
    checkpoint_round_trip(suite).await;
}

/// An edit is found by its new text only, never by the old.
async fn upsert_replaces(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let original = suite.doc(channel, "the original wording");
    let other = suite.doc(channel, "an unrelated original note");
    suite.index(&[original.clone(), other.clone()]).await;
    assert_eq!(
        suite.ids(channel, "wording").await,
        vec![original.message_id]
    );

    let edited = IndexDoc {
        text: "completely fresh phrasing".into(),
        ..original.clone()
    };
    suite.index(std::slice::from_ref(&edited)).await;
    assert!(
        suite.ids(channel, "wording").await.is_empty(),
        "an edited message is not found by its old text"
    );
    assert_eq!(
        suite.ids(channel, "original").await,
        vec![other.message_id],
        "an edited message is not found by its old text"
    );
    assert_eq!(
        suite.ids(channel, "fresh phrasing").await,
        vec![original.message_id],
        "an edited message is found by its new text"
    );

    // Two versions in one batch: the last one wins.
    let first = IndexDoc {
        text: "draft alpha".into(),
        ..original.clone()
    };
    let second = IndexDoc {
        text: "final omega".into(),
        ..original.clone()
    };
    suite
        .index
        .upsert(vec![first, second])
        .await
        .unwrap_or_else(|e| panic!("upsert failed: {e}"));
    suite.commit().await;
    assert!(
        suite.ids(channel, "draft").await.is_empty(),
        "last upsert wins"
    );
    assert_eq!(suite.ids(channel, "omega").await, vec![original.message_id]);
}

/// Deleted messages are gone after the next commit; the others stay.
async fn delete_messages(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let docs: Vec<_> = (0..3)
        .map(|_| suite.doc(channel, "ephemeral note"))
        .collect();
    suite.index(&docs).await;
    assert_eq!(suite.ids(channel, "ephemeral").await.len(), 3);
    suite
        .index
        .delete_messages(vec![docs[1].message_id])
        .await
        .unwrap_or_else(|e| panic!("delete_messages failed: {e}"));
    suite.commit().await;
    assert_eq!(
        suite.ids(channel, "ephemeral").await,
        vec![docs[2].message_id, docs[0].message_id],
        "a deleted message is not found"
    );
}

/// Deleting a channel removes its messages and no other channel's.
async fn delete_channel(suite: &Suite<'_>) {
    let (gone, kept) = (Uuid::new_v4(), Uuid::new_v4());
    let doomed: Vec<_> = (0..3)
        .map(|_| suite.doc(gone, "channel farewell"))
        .collect();
    let survivor = suite.doc(kept, "channel farewell");
    let mut all = doomed.clone();
    all.push(survivor.clone());
    suite.index(&all).await;
    suite
        .index
        .delete_channel(gone)
        .await
        .unwrap_or_else(|e| panic!("delete_channel failed: {e}"));
    suite.commit().await;
    assert!(
        suite.ids(gone, "farewell").await.is_empty(),
        "a deleted channel's messages are not found"
    );
    assert_eq!(
        suite.ids(kept, "farewell").await,
        vec![survivor.message_id],
        "deleting a channel leaves the others"
    );
}

/// Upserting, deleting, committing again: no duplicates, no errors.
async fn repeats_are_harmless(suite: &Suite<'_>) {
    let channel = Uuid::new_v4();
    let doc = suite.doc(channel, "replayed event");
    for _ in 0..3 {
        suite.index(std::slice::from_ref(&doc)).await;
    }
    assert_eq!(
        suite.ids(channel, "replayed").await,
        vec![doc.message_id],
        "a message upserted three times is one hit"
    );
    suite
        .index
        .upsert(Vec::new())
        .await
        .unwrap_or_else(|e| panic!("an empty upsert failed: {e}"));
    for _ in 0..2 {
        suite
            .index
            .delete_messages(vec![doc.message_id, Uuid::new_v4()])
            .await
            .unwrap_or_else(|e| panic!("a repeated delete failed: {e}"));
        suite
            .index
            .delete_channel(Uuid::new_v4())
            .await
            .unwrap_or_else(|e| panic!("deleting an unknown channel failed: {e}"));
        suite.commit().await;
    }
    assert!(suite.ids(channel, "replayed").await.is_empty());
    suite.commit().await;
    assert!(suite.index.healthy().await, "the index is healthy");
}

/// `checkpoint()` returns what the last commit recorded (at least it, on a shared index).
async fn checkpoint_round_trip(suite: &Suite<'_>) {
    let committed = suite.commit().await;
    let read = suite
        .index
        .checkpoint()
        .await
        .unwrap_or_else(|e| panic!("checkpoint() failed: {e}"));
    assert!(
        read.is_some_and(|c| c >= committed),
        "commit({committed}) then checkpoint() gives {read:?}"
    );
}
