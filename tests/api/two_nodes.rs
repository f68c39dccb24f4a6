//! Two nodes on one database: what holds whether or not Redis joins them (resume on any
//! node, invite limits, no lost or repeated events).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_redeemed_on_both_nodes_at_once_admits_exactly_max_uses() {
    let a = Arc::new(TestServer::start().await);
    let b = Arc::new(a.restart().await);
    let ada = a.member("Ada").await;
    let id = a.channel(&ada, "rush", "invisible", true).await;
    let token = a.invite(&ada, &id, json!({"maxUses": 4})).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let member = node.member(&format!("M{i}")).await;
        let path = format!("/api/channels/{id}/invites/{token}/redeem");
        tasks.push(tokio::spawn(async move {
            // A busy database answers 503 with `Retry-After` (two nodes on one SQLite file
            // contend for its lock); a client retries.
            for _ in 0..50 {
                let answer = node.post(&path, Some(&member.token), json!({})).await;
                if answer.status.as_u16() != 503 {
                    return answer;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("busy for a whole second");
        }));
    }
    let (mut ok, mut gone) = (0, 0);
    for task in tasks {
        let answer = task.await.expect("task");
        match answer.status.as_u16() {
            200 => ok += 1,
            410 => gone += 1,
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert_eq!((ok, gone), (4, 12));
    for node in [&a, &b] {
        let meta = node
            .get(&format!("/api/channels/{id}"), Some(&ada.token))
            .await;
        assert_eq!(meta.data(200)["memberCount"], 5);
    }
}

/// The `message_sent` ids among `frames`, in order.
fn sent_ids(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "communication:message_sent")
        .map(|f| f["data"]["id"].clone())
        .collect()
}

#[tokio::test]
async fn a_client_that_read_on_one_node_resumes_on_the_other_and_misses_nothing() {
    let a = TestServer::start().await;
    let b = a.restart().await;
    let ada = a.member("Ada").await;
    let bob = a.member("Bob").await;
    let group = a.group(&ada, "Both nodes", &[&bob]).await;

    let mut on_a = a.ws(&bob).await;
    a.group_message(&ada, &group, "read on A").await;
    let last = on_a.expect("communication:message_sent").await["seq"]
        .as_i64()
        .expect("seq");
    drop(on_a);

    // Written on both nodes while Bob is away.
    let mut missed = Vec::new();
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        missed.push(
            node.group_message(&ada, &group, &format!("missed {i}"))
                .await["id"]
                .clone(),
        );
    }
    let mut on_b = b
        .ws_query(&format!("?token={}&resume={last}", bob.token))
        .await;
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while got.len() < missed.len() && std::time::Instant::now() < deadline {
        if let Some(frame) = on_b.next(Duration::from_millis(500)).await {
            assert_ne!(frame["type"], "resync_required", "{frame}");
            got.extend(sent_ids(std::slice::from_ref(&frame)));
        }
    }
    assert_eq!(got, missed, "exactly what was missed, in order");

    // And live from either node afterwards, once each.
    let live_a = a.group_message(&ada, &group, "live via A").await["id"].clone();
    let live_b = b.group_message(&ada, &group, "live via B").await["id"].clone();
    let mut live = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while live.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(frame) = on_b.next(Duration::from_millis(500)).await {
            live.extend(sent_ids(std::slice::from_ref(&frame)));
        }
    }
    assert_eq!(live, vec![live_a, live_b]);
    let extra = sent_ids(&on_b.drain(Duration::from_millis(400)).await);
    assert!(extra.is_empty(), "repeated: {extra:?}");
}

/// A shared search backend is indexed by one node at a time: the lease is taken once,
/// refused to another holder while it runs, and taken over once it lapses.
#[tokio::test]
async fn one_node_at_a_time_holds_the_search_indexer_lease() {
    use brightchat::search::lease::{KEY, Lease};
    use sea_orm::{EntityTrait, Set};
    let server = TestServer::start().await;
    let db = &server.state.db.write;
    let first = Lease::default();
    let second = Lease::default();
    assert!(first.hold(db).await.expect("hold"));
    assert!(!second.hold(db).await.expect("hold"));
    assert!(first.hold(db).await.expect("renew"), "the holder keeps it");

    // The holder dies: its lease lapses, and a node that looks then takes it.
    let row = entity::server_meta::Entity::find_by_id(KEY.to_owned())
        .one(db)
        .await
        .expect("read")
        .expect("the lease row");
    let who = row
        .value
        .split_once(':')
        .expect("holder:until")
        .0
        .to_owned();
    entity::server_meta::Entity::update(entity::server_meta::ActiveModel {
        name: Set(KEY.to_owned()),
        value: Set(format!("{who}:0")),
    })
    .exec(db)
    .await
    .expect("lapse");
    let third = Lease::default();
    assert!(
        third.hold(db).await.expect("hold"),
        "a lapsed lease is taken"
    );
    assert!(!Lease::default().hold(db).await.expect("hold"));
}
