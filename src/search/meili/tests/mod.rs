//! Tests against a real Meilisearch, run when `BRIGHTCHAT_TEST_MEILI_URL` (and
//! `BRIGHTCHAT_TEST_MEILI_KEY`) are set; each run uses fresh index uids and drops them.
//! The down-server test needs no Meilisearch.

use std::time::{Duration, Instant};

use uuid::Uuid;

mod writes;

use super::MeiliIndex;
use crate::search::{IndexDoc, SearchError, SearchIndex, SearchRequest};

/// A fresh index on the Meilisearch named by `BRIGHTCHAT_TEST_MEILI_URL`, or `None` (after
/// printing that the test is skipped) when it is not set. Drop it with [`drop_index`].
pub(crate) async fn index_from_env() -> Option<MeiliIndex> {
    let Ok(url) = std::env::var("BRIGHTCHAT_TEST_MEILI_URL") else {
        println!("skipped: BRIGHTCHAT_TEST_MEILI_URL is not set");
        return None;
    };
    let key = std::env::var("BRIGHTCHAT_TEST_MEILI_KEY").ok();
    let uid = format!("brightchat_test_{}", Uuid::new_v4().simple());
    match MeiliIndex::connect(&url, key.as_deref(), &uid).await {
        Ok(index) => Some(index),
        Err(e) => panic!("cannot set up a test index on {url}: {e}"),
    }
}

/// Deletes a test index and its `_meta` companion.
pub(crate) async fn drop_index(index: MeiliIndex) {
    for uid in [index.index.uid.clone(), index.meta.uid.clone()] {
        if let Ok(task) = index.client.delete_index(&uid).await {
            let _ = task.wait_for_completion(&index.client, None, None).await;
        }
    }
}

pub(crate) fn doc(id: Uuid, channel: Uuid, text: &str) -> IndexDoc {
    IndexDoc {
        message_id: id,
        channel_id: channel,
        sender_id: Uuid::from_u128(42),
        created_at_ms: 1_700_000_000_000,
        text: text.to_owned(),
    }
}

pub(crate) fn request(channel: Uuid, query: &str) -> SearchRequest {
    SearchRequest {
        channel_id: channel,
        query: query.to_owned(),
        after_id: None,
        until_id: None,
        limit: 50,
    }
}

pub(crate) async fn ids(index: &MeiliIndex, request: &SearchRequest) -> Vec<Uuid> {
    match index.search(request).await {
        Ok(hits) => hits.into_iter().map(|hit| hit.message_id).collect(),
        Err(e) => panic!("search {:?} failed: {e}", request.query),
    }
}

#[tokio::test]
async fn a_server_that_is_down_answers_unavailable_quickly() {
    let started = Instant::now();
    let connected = MeiliIndex::connect("http://127.0.0.1:1", Some("key"), "messages").await;
    assert!(matches!(connected, Err(SearchError::Unavailable(_))));

    let index = MeiliIndex::new("http://127.0.0.1:1", None, "messages").expect("client");
    let channel = Uuid::now_v7();
    let upsert = index
        .upsert(vec![doc(Uuid::now_v7(), channel, "hello")])
        .await;
    assert!(matches!(upsert, Err(SearchError::Unavailable(_))));
    let search = index.search(&request(channel, "hello")).await;
    assert!(matches!(search, Err(SearchError::Unavailable(_))));
    assert!(matches!(
        index.checkpoint().await,
        Err(SearchError::Unavailable(_))
    ));
    assert!(matches!(
        index.commit(1).await,
        Err(SearchError::Unavailable(_))
    ));
    assert!(!index.healthy().await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn settings_apply_twice_and_the_index_serves_in_between() {
    let Some(index) = index_from_env().await else {
        return;
    };
    let channel = Uuid::now_v7();
    let id = Uuid::now_v7();
    index
        .upsert(vec![doc(id, channel, "settings survive")])
        .await
        .expect("upsert");
    index.commit(1).await.expect("commit");
    index.apply_settings().await.expect("second apply");
    index.apply_settings().await.expect("third apply");
    assert_eq!(ids(&index, &request(channel, "survive")).await, vec![id]);
    assert!(index.healthy().await);
    drop_index(index).await;
}

#[tokio::test]
async fn id_bounds_are_exact_at_every_part_boundary() {
    let Some(index) = index_from_env().await else {
        return;
    };
    let channel = Uuid::now_v7();
    let base = Uuid::now_v7().as_u128() & !((1u128 << 80) - 1);
    // Neighbours across the low, middle and high parts of the numeric id split.
    let raw = [
        base,
        base + 1,
        base + (1 << 40) - 1,
        base + (1 << 40),
        base + (1 << 40) + 1,
        base + (1 << 80) - 1,
        base + (1 << 80),
        base + (1 << 80) + 1,
    ];
    let all: Vec<Uuid> = raw.iter().map(|n| Uuid::from_u128(*n)).collect();
    let docs = all
        .iter()
        .map(|id| doc(*id, channel, "bounded words"))
        .collect();
    index.upsert(docs).await.expect("upsert");
    index.commit(1).await.expect("commit");

    for (i, bound) in all.iter().enumerate() {
        let mut after = request(channel, "bounded");
        after.after_id = Some(*bound);
        let mut expected: Vec<Uuid> = all[i + 1..].to_vec();
        expected.reverse();
        assert_eq!(ids(&index, &after).await, expected, "after {i}");

        let mut until = request(channel, "bounded");
        until.until_id = Some(*bound);
        let mut expected: Vec<Uuid> = all[..=i].to_vec();
        expected.reverse();
        assert_eq!(ids(&index, &until).await, expected, "until {i}");
    }
    let mut window = request(channel, "bounded");
    window.after_id = Some(all[1]);
    window.until_id = Some(all[6]);
    let expected: Vec<Uuid> = all[2..=6].iter().rev().copied().collect();
    assert_eq!(ids(&index, &window).await, expected);
    drop_index(index).await;
}

#[tokio::test]
async fn equal_scores_come_newest_first_and_limit_keeps_the_best() {
    let Some(index) = index_from_env().await else {
        return;
    };
    let channel = Uuid::now_v7();
    let base = Uuid::now_v7().as_u128();
    let same: Vec<Uuid> = (0..5).map(|i| Uuid::from_u128(base + i)).collect();
    let mut docs: Vec<IndexDoc> = same
        .iter()
        .map(|id| doc(*id, channel, "tied words"))
        .collect();
    let better = Uuid::from_u128(base - 1);
    docs.push(doc(better, channel, "tied"));
    index.upsert(docs).await.expect("upsert");
    index.commit(1).await.expect("commit");

    let hits = index
        .search(&request(channel, "tied"))
        .await
        .expect("search");
    assert!(hits.iter().all(|hit| (0.0..=1.0).contains(&hit.score)));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let tied: Vec<Uuid> = hits
        .iter()
        .filter(|h| h.message_id != better)
        .map(|h| h.message_id)
        .collect();
    let newest_first: Vec<Uuid> = same.iter().rev().copied().collect();
    assert_eq!(tied, newest_first);

    let mut two = request(channel, "tied words");
    two.limit = 2;
    assert_eq!(ids(&index, &two).await, newest_first[..2].to_vec());
    drop_index(index).await;
}
