//! Bounded work: a resume replays its history a page at a time and only up to a cap
//! (further back, the client is told to resync); pruning deletes a prefix of positions;
//! promoting a long conversation re-encrypts it in batches.

use std::time::Duration;

use brightchat::events::{ContextType, Event, EventType, outbox};
use entity::event;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestMember, TestServer, WsClient};
use crate::graphql::{graphql_ws, next_json, subscribe};

/// Writes `count` events to the outbox in one transaction, as a write would: every even
/// one for `to` (numbered from 0 in `data.n`), every odd one for `other`. Returns the
/// position of the last.
async fn seed(server: &TestServer, to: &TestMember, other: &TestMember, count: usize) -> i64 {
    let context = Uuid::now_v7();
    let events = (0..count)
        .map(|i| {
            let (member, n) = if i % 2 == 0 {
                (to.id, i / 2)
            } else {
                (other.id, i)
            };
            Event::for_members(
                EventType::ModerationWarning,
                ContextType::Group,
                context,
                vec![member],
                json!({"n": n}),
            )
        })
        .collect();
    let txn = server.state.db.write.begin().await.expect("begin");
    outbox::record(&txn, events).await.expect("record");
    outbox::commit(&server.state, txn).await.expect("commit");
    let top = event::Entity::find()
        .select_only()
        .column_as(event::Column::Seq.max(), "top")
        .into_tuple::<Option<i64>>()
        .one(&server.state.db.read)
        .await
        .expect("top")
        .flatten()
        .expect("events");
    // Published and routed before anyone resumes: a connection that opens while more than
    // its queue's worth is being routed falls behind at once.
    server
        .state
        .events
        .caught_up(top, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    top
}

/// The frames of `event_type` until `count` of them arrived (5 s at most between two).
async fn collect(ws: &mut WsClient, event_type: &str, count: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < count {
        let frame = ws
            .next(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("only {} of {count} {event_type}", out.len()));
        if frame["type"] == event_type {
            out.push(frame);
        }
    }
    out
}

#[tokio::test]
async fn a_replay_longer_than_a_page_arrives_complete_and_in_order() {
    let server = TestServer::start().await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let ada = server.member("Ada").await;
    let from = server.ws(&bob).await.ready_seq;
    // 1,300 for Bob among 2,600: his span several pages of the replay.
    let count = 2 * 1_300;
    let top = seed(&server, &bob, &cat, count).await;
    assert!(
        (top - from) as u64 > 4 * outbox::REPLAY_PAGE,
        "several pages"
    );

    let mut resumed = server
        .ws_query(&format!("?token={}&resume={from}", bob.token))
        .await;
    let frames = collect(&mut resumed, "communication:moderation_warning", count / 2).await;
    let numbers: Vec<u64> = frames
        .iter()
        .map(|f| f["data"]["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(numbers, (0..count as u64 / 2).collect::<Vec<_>>());
    let seqs: Vec<i64> = frames
        .iter()
        .map(|f| f["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    assert!(seqs[0] > from && *seqs.last().expect("seq") <= top);

    // Live events follow the replay, after it.
    server.dm(&ada, &bob, "after the replay").await;
    let live = resumed.expect("communication:message_sent").await;
    assert!(live["seq"].as_i64().expect("seq") > top, "{live}");
    let rest = resumed.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter()
            .all(|f| f["type"] != "communication:moderation_warning"),
        "nothing replayed twice: {rest:?}"
    );
}

#[tokio::test]
async fn a_resume_further_back_than_the_cap_requires_a_resync() {
    let server = TestServer::start_with(|c| c.replay_limit = 100).await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let from = server.ws(&bob).await.ready_seq;
    let top = seed(&server, &bob, &cat, 150).await;
    assert_eq!(
        top - from,
        150,
        "one transaction's positions are contiguous"
    );

    // 101 events behind: past the cap.
    let mut far = server
        .ws_query(&format!("?token={}&resume={}", bob.token, top - 101))
        .await;
    let frame = far.next(Duration::from_secs(5)).await.expect("a frame");
    assert_eq!(frame["type"], "resync_required", "{frame}");
    assert_eq!(frame["seq"], top, "{frame}");
    let rest = far.drain(Duration::from_millis(300)).await;
    assert!(
        rest.iter()
            .all(|f| f["type"] != "communication:moderation_warning"),
        "nothing replayed: {rest:?}"
    );

    // Exactly at the cap: the whole replay (Bob's half of the last 100).
    let mut near = server
        .ws_query(&format!("?token={}&resume={}", bob.token, top - 100))
        .await;
    let frames = collect(&mut near, "communication:moderation_warning", 50).await;
    let numbers: Vec<u64> = frames
        .iter()
        .map(|f| f["data"]["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(numbers, (25..75).collect::<Vec<_>>());

    // GraphQL subscriptions answer the same way.
    let protocol = "graphql-transport-ws";
    let mut gql = graphql_ws(&server, protocol, json!({"token": bob.token})).await;
    let ack = next_json(&mut gql, Duration::from_secs(5))
        .await
        .expect("ack");
    assert_eq!(ack["type"], "connection_ack");
    let query = format!(
        "subscription {{ events(resume: {}) {{ type seq }} }}",
        top - 101
    );
    subscribe(&mut gql, protocol, &query).await;
    let answer = next_json(&mut gql, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(
        answer["payload"]["errors"][0]["extensions"]["code"], "RESYNC_REQUIRED",
        "{answer}"
    );
}

#[tokio::test]
async fn pruning_deletes_a_prefix_of_positions_even_when_times_are_out_of_order() {
    let server = TestServer::start().await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let top = seed(&server, &bob, &cat, 20).await;
    let first = top - 19;
    // Every event is past the retention window but the eleventh, whose time is recent
    // (a position taken before a slow commit, or another node's clock).
    let old = brightchat::time::now_ms() - 3_600_000;
    event::Entity::update_many()
        .col_expr(event::Column::CreatedAt, old.into())
        .filter(event::Column::Seq.gte(first))
        .filter(event::Column::Seq.ne(first + 10))
        .exec(&server.state.db.write)
        .await
        .expect("age");
    server.state.search.set_indexed(top);
    outbox::prune(&server.state).await.expect("prune");

    let left: Vec<i64> = event::Entity::find()
        .select_only()
        .column(event::Column::Seq)
        .filter(event::Column::Seq.gte(first))
        .order_by_asc(event::Column::Seq)
        .into_tuple::<i64>()
        .all(&server.state.db.read)
        .await
        .expect("rows");
    assert_eq!(left, (first + 10..=top).collect::<Vec<_>>(), "no hole");
    let mark = brightchat::events::positions::pruned_through(&server.state.db.read)
        .await
        .expect("mark");
    assert_eq!(mark, first + 9);

    // A resume inside what is kept replays it; one before it must resync.
    let mut kept = server
        .ws_query(&format!("?token={}&resume={}", bob.token, first + 9))
        .await;
    let frames = collect(&mut kept, "communication:moderation_warning", 5).await;
    assert_eq!(frames[0]["data"]["n"], 5);
    let mut gone = server
        .ws_query(&format!("?token={}&resume={}", bob.token, first + 8))
        .await;
    let frame = gone.next(Duration::from_secs(5)).await.expect("a frame");
    assert_eq!(frame["type"], "resync_required", "{frame}");
}

#[tokio::test]
async fn promoting_a_conversation_of_thousands_of_messages_keeps_every_one_readable() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let first = server.dm(&ada, &bob, "message 0").await;
    let conversation = Uuid::parse_str(first["conversationId"].as_str().expect("id")).expect("id");
    // Several batches of history, written straight to the database (sending 3,000 DMs
    // through the API would only make the test slow): the server's copy is real, what
    // the members' copies hold does not matter here.
    let count = 3_000;
    let server_key = *server.state.server_key.public_key();
    let start = brightchat::time::now_ms();
    let mut expected: Vec<(String, String, i64)> = vec![(
        first["id"].as_str().expect("id").to_owned(),
        "message 0".to_owned(),
        0,
    )];
    let rows: Vec<entity::dm_message::ActiveModel> = (1..count)
        .map(|n| {
            let id = Uuid::now_v7();
            let text = format!("message {n}");
            let (sender, recipient) = if n % 2 == 0 {
                (ada.id, bob.id)
            } else {
                (bob.id, ada.id)
            };
            expected.push((id.to_string(), text.clone(), start + n));
            entity::dm_message::ActiveModel {
                id: sea_orm::Set(id),
                conversation_id: sea_orm::Set(conversation),
                sender_id: sea_orm::Set(sender),
                recipient_id: sea_orm::Set(recipient),
                created_at: sea_orm::Set(start + n),
                ciphertext_sender: sea_orm::Set(vec![0]),
                ciphertext_recipient: sea_orm::Set(vec![0]),
                ciphertext_server: sea_orm::Set(
                    brightchat::crypto::ecies_encrypt(&server_key, text.as_bytes())
                        .expect("encrypt"),
                ),
            }
        })
        .collect();
    for chunk in rows.chunks(brightchat::db::ROWS_PER_STATEMENT) {
        entity::dm_message::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&server.state.db.write)
            .await
            .expect("history");
    }

    let started = std::time::Instant::now();
    let promoted = server
        .post(
            &format!("/api/conversations/{conversation}/promote"),
            Some(&ada.token),
            json!({"newMemberIds": [cat.id]}),
        )
        .await;
    let group = promoted.data(200)["groupId"]
        .as_str()
        .expect("id")
        .to_owned();
    eprintln!("promoting {count} messages took {:?}", started.elapsed());

    // Cat, who never saw the conversation, reads every message, with its id and time.
    let base = format!("/api/groups/{group}");
    let keys = crate::common::member_keys(&server, &cat, &base).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}/messages?limit=100&cursor={c}"),
            None => format!("{base}/messages?limit=100"),
        };
        let page = server.get(&path, Some(&cat.token)).await;
        let data = page.data(200).clone();
        for item in data["items"].as_array().expect("items") {
            let text = crate::common::decrypt_message(&keys, item);
            let at = chrono::DateTime::parse_from_rfc3339(item["createdAt"].as_str().expect("at"))
                .expect("time")
                .timestamp_millis();
            seen.push((item["id"].as_str().expect("id").to_owned(), text, at));
        }
        if data["hasMore"] != true {
            break;
        }
        cursor = Some(data["cursor"].as_str().expect("cursor").to_owned());
    }
    assert_eq!(seen.len(), count as usize, "every message");
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    for ((id, text, at), (want_id, want_text, want_at)) in seen.iter().zip(&expected) {
        assert_eq!((id, text), (want_id, want_text));
        // (The first was sent through the API, at a time of the server's choosing.)
        if *want_at != 0 {
            assert_eq!(at, want_at, "{id} keeps its time");
        }
    }
}

#[tokio::test]
async fn a_replay_overtaken_by_pruning_ends_at_its_position_and_the_resume_resyncs() {
    use brightchat::events::stream::{EventStream, StreamEnd};
    let server = TestServer::start().await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let from = server.ws(&bob).await.ready_seq;
    let top = seed(&server, &bob, &cat, 2 * outbox::REPLAY_PAGE as usize + 10).await;
    let actor = brightchat::service::auth::authenticate(&server.state, &bob.token)
        .await
        .expect("actor");
    let mut stream = EventStream::open(&server.state, &actor, Some(from))
        .await
        .expect("stream");
    assert!(!stream.resync_required);
    // The first page: Bob's half of it.
    let mut last = from;
    for _ in 0..outbox::REPLAY_PAGE / 2 {
        let delivered = stream.next().await.expect("replayed");
        assert!(delivered.seq > last);
        last = delivered.seq;
    }
    // Pruning (as `outbox::prune` does it: the mark, then the rows) overtakes the replay.
    let cut = top - 5;
    entity::server_meta::Entity::insert(entity::server_meta::ActiveModel {
        name: sea_orm::Set(brightchat::events::positions::PRUNED_KEY.to_owned()),
        value: sea_orm::Set(cut.to_string()),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(entity::server_meta::Column::Name)
            .update_column(entity::server_meta::Column::Value)
            .to_owned(),
    )
    .exec_without_returning(&server.state.db.write)
    .await
    .expect("mark");
    event::Entity::delete_many()
        .filter(event::Column::Seq.lte(cut))
        .exec(&server.state.db.write)
        .await
        .expect("prune");
    let end = stream.next().await.err().expect("the replay stops");
    let StreamEnd::Lagged { last: at } = end else {
        panic!("{end:?}");
    };
    assert!(
        at >= last && at < cut,
        "resume from what was replayed: {at}"
    );
    let mut resumed = server
        .ws_query(&format!("?token={}&resume={at}", bob.token))
        .await;
    let frame = resumed.next(Duration::from_secs(5)).await.expect("a frame");
    assert_eq!(frame["type"], "resync_required", "{frame}");
}
