//! Reads of history use cached memberships; a change of membership ends them at once on
//! this node and within the relay's delay on another.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_kick_ends_cached_reads_at_once_and_a_rejoin_sees_its_new_boundary() {
    let server = TestServer::start().await;
    let ada = server.member("ada").await;
    let bob = server.member("bob").await;
    let channel = server.channel(&ada, "cached", "public", false).await;
    let base = format!("/api/channels/{channel}");
    server
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
    server
        .channel_message(&ada, &channel, "before the kick")
        .await;
    for _ in 0..3 {
        let page = server
            .get(&format!("{base}/messages"), Some(&bob.token))
            .await;
        assert_eq!(page.data(200)["items"].as_array().expect("items").len(), 1);
    }
    // Warm: a page costs its own query and its reactions', no context or membership
    // query (four statements a read without the cache; a background poll may add one).
    // (The relay's handling of the join empties the cache once: let it pass, read again.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await
        .data(200);
    let statements = || server.state.db.statements.load(Ordering::Relaxed);
    let before = statements();
    for _ in 0..5 {
        server
            .get(&format!("{base}/messages"), Some(&bob.token))
            .await
            .data(200);
    }
    let spent = statements() - before;
    assert!(
        spent <= 12,
        "five warm history reads ran {spent} statements"
    );
    server
        .post(
            &format!("{base}/kick/{}", bob.id),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");

    // Back in: the channel hides history, so the cached boundary of the old membership must
    // not show him what was sent while he was away.
    server.channel_message(&ada, &channel, "while away").await;
    server
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
    let page = server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await;
    assert_eq!(page.data(200)["items"], json!([]));
    let after = server
        .channel_message(&ada, &channel, "after the rejoin")
        .await;
    let page = server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await;
    let items = page.data(200)["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], after["id"]);
}

#[tokio::test]
async fn a_kick_on_another_node_reaches_its_cached_reads() {
    let first = TestServer::start().await;
    let second = first.restart().await;
    let ada = first.member("ada").await;
    let bob = first.member("bob").await;
    let channel = first.channel(&ada, "two-nodes", "public", true).await;
    let base = format!("/api/channels/{channel}");
    first
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
    // Bob's access is cached on the second node.
    for _ in 0..3 {
        second
            .get(&format!("{base}/messages"), Some(&bob.token))
            .await
            .data(200);
    }
    first
        .post(
            &format!("{base}/kick/{}", bob.id),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let answer = second
            .get(&format!("{base}/messages"), Some(&bob.token))
            .await;
        if answer.status == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second node still serves a kicked member: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
