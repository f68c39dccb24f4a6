//! Per-node routing of events: only the connections that may receive an event get it, a
//! slow socket is cut off alone, typing and presence stay off the outbox, and a crowd
//! coming online reaches an observer as one latest status per member.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::{TestMember, TestServer, WsClient};

const QUIET: Duration = Duration::from_millis(400);

async fn outbox_rows(server: &TestServer) -> u64 {
    entity::event::Entity::find()
        .count(&server.state.db.read)
        .await
        .expect("count events")
}

/// Frames other than presence changes about `member` itself.
fn not_own_presence(frames: &[Value], member: &TestMember) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| {
            !(f["type"] == "communication:presence_changed"
                && f["data"]["memberId"] == member.id.to_string())
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_channel_event_reaches_its_members_sockets_and_nobody_elses() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let channel = server.channel(&ada, "routed", "public", true).await;
    let other = server.channel(&cat, "elsewhere", "public", true).await;
    server.join(&bob, &channel).await;
    let mut bob_ws = server.ws(&bob).await;
    let mut bob_second = server.ws(&bob).await;
    let mut cat_ws = server.ws(&cat).await;
    let mut ada_ws = server.ws(&ada).await;

    let sent = server.channel_message(&ada, &channel, "for members").await;
    for ws in [&mut bob_ws, &mut bob_second, &mut ada_ws] {
        let frame = ws.expect("communication:message_sent").await;
        assert_eq!(frame["data"]["id"], sent["id"]);
        assert_eq!(frame["contextId"], channel);
    }
    let elsewhere = server.channel_message(&cat, &other, "not for them").await;
    assert_eq!(
        cat_ws.expect("communication:message_sent").await["data"]["id"],
        elsewhere["id"]
    );
    // Cat got nothing of the channel it is not in; Bob nothing of Cat's.
    let cat_saw = not_own_presence(&cat_ws.drain(QUIET).await, &cat);
    assert!(
        cat_saw.iter().all(|f| f["contextId"] != channel),
        "{cat_saw:?}"
    );
    for frames in [bob_ws.drain(QUIET).await, bob_second.drain(QUIET).await] {
        assert!(frames.iter().all(|f| f["contextId"] != other), "{frames:?}");
    }
    // A member who joins receives from its join on, on every socket it has open.
    server.join(&bob, &other).await;
    bob_ws.expect("communication:member_joined").await;
    let later = server.channel_message(&cat, &other, "now for Bob").await;
    assert_eq!(
        bob_ws.expect("communication:message_sent").await["data"]["id"],
        later["id"]
    );
    assert_eq!(
        bob_second.expect("communication:message_sent").await["data"]["id"],
        later["id"]
    );
    let ada_saw = ada_ws.drain(QUIET).await;
    assert!(
        ada_saw.iter().all(|f| f["contextId"] != other),
        "{ada_saw:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_reads_is_told_it_lagged_and_a_normal_one_gets_everything() {
    // A long send timeout: the cut-off must come from the connection's own queue.
    let server = TestServer::start_with(|c| {
        c.ws_buffer = 16;
        c.ws_send_timeout = Duration::from_secs(60);
    })
    .await;
    let ada = server.member("Ada").await;
    let fast = server.member("Fast").await;
    let slow = server.member("Slow").await;
    let channel = server.channel(&ada, "firehose", "public", true).await;
    for m in [&fast, &slow] {
        server.join(m, &channel).await;
    }
    let mut fast_ws = server.ws(&fast).await;
    let addr: std::net::SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer");
    let tcp = socket.connect(addr).await.expect("connect");
    let (slow_stream, _) = tokio_tungstenite::client_async(
        server.ws_url(&format!("?token={}", slow.token)),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .expect("handshake");
    let mut slow_ws = WsClient::ready(slow_stream).await;

    let big = "€".repeat(10_000);
    let count = 200;
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < count {
            match fast_ws.next(Duration::from_secs(20)).await {
                Some(frame) if frame["type"] == "communication:message_sent" => {
                    ids.push(frame["data"]["id"].clone());
                }
                Some(_) => {}
                None => break,
            }
        }
        ids
    });
    let mut sent = Vec::new();
    for _ in 0..count {
        let answer = server
            .post(
                &format!("/api/channels/{channel}/messages"),
                Some(&ada.token),
                json!({"content": big}),
            )
            .await;
        sent.push(answer.data(201)["id"].clone());
    }
    let received = reader.await.expect("reader");
    assert_eq!(
        received, sent,
        "the normal socket got every message, in order"
    );

    // The slow socket now reads: what was buffered, the lagged notice, then close 4008.
    let mut got = Vec::new();
    let mut notice = None;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(30), slow_ws.stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if frame["type"] == "communication:message_sent" {
                    got.push(frame["data"]["id"].clone());
                } else if frame["type"] == "error" {
                    notice = Some(frame);
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(err))) => panic!("the slow socket broke instead of closing: {err}"),
            Ok(None) => break None,
            Err(_) => panic!("the slow socket was never disconnected"),
        }
    };
    assert!(got.len() < count, "the slow socket received everything");
    assert_eq!(code, Some(CloseCode::from(4008)));
    let notice = notice.expect("the lagged notice");
    assert_eq!(notice["error"]["code"], "TOO_SLOW", "{notice}");
    let last = notice["error"]["seq"].as_i64().expect("seq");
    // Resuming from the notice's seq brings exactly the rest.
    let mut resumed = server
        .ws_query(&format!("?token={}&resume={last}", slow.token))
        .await;
    let mut rest = Vec::new();
    while rest.len() + got.len() < count {
        match resumed.next(Duration::from_secs(10)).await {
            Some(frame) if frame["type"] == "communication:message_sent" => {
                rest.push(frame["data"]["id"].clone());
            }
            Some(_) => {}
            None => break,
        }
    }
    got.extend(rest);
    assert_eq!(got, sent, "what was missed came back on resume, once");
}

#[tokio::test]
async fn typing_and_presence_write_no_outbox_rows_and_are_never_replayed() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let group = server.group(&ada, "Quiet", &[&bob]).await;
    let mut bob_ws = server.ws(&bob).await;
    let before = bob_ws.ready_seq;
    let rows = outbox_rows(&server).await;

    let mut ada_ws = server.ws(&ada).await;
    // (Bob may first hear of his own status: a socket can receive its member's own.)
    let online = loop {
        let frame = bob_ws.expect("communication:presence_changed").await;
        if frame["data"]["memberId"] == ada.id.to_string() {
            break frame;
        }
    };
    assert_eq!(
        online["data"],
        json!({"memberId": ada.id, "status": "online"})
    );
    assert_eq!(
        online["seq"], before,
        "ephemeral frames carry the last durable seq"
    );
    ada_ws
        .send(json!({"type": "typing_start", "contextType": "group", "contextId": group}))
        .await;
    let typing = bob_ws.expect("communication:typing_start").await;
    assert_eq!(typing["seq"], before);
    server
        .put("/api/presence", Some(&ada.token), json!({"status": "dnd"}))
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:presence_changed").await["data"]["status"],
        "dnd"
    );
    assert_eq!(outbox_rows(&server).await, rows, "no outbox row for them");
    assert_eq!(server.ws(&ada).await.ready_seq, before, "no seq taken");

    // A durable event after them; a resume from before replays only it.
    let sent = server.group_message(&ada, &group, "durable").await;
    let live = bob_ws.expect("communication:message_sent").await;
    assert!(live["seq"].as_i64().expect("seq") > before);
    let mut resumed = server
        .ws_query(&format!("?token={}&resume={before}", bob.token))
        .await;
    let replayed = resumed.drain(QUIET).await;
    let types: Vec<&Value> = replayed.iter().map(|f| &f["type"]).collect();
    assert_eq!(
        types,
        vec!["communication:message_sent"],
        "only the durable event is replayed: {replayed:?}"
    );
    assert_eq!(replayed[0]["data"]["id"], sent["id"]);
    // Seqs never go backwards on a socket, ephemeral frames included.
    ada_ws
        .send(json!({"type": "typing_stop", "contextType": "group", "contextId": group}))
        .await;
    let stop = bob_ws.expect("communication:typing_stop").await;
    assert_eq!(stop["seq"], live["seq"]);
}

#[tokio::test]
async fn presence_reaches_members_sharing_a_context_and_not_strangers() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let dan = server.member("Dan").await;
    server.group(&ada, "Pair", &[&bob]).await;
    let channel = server.channel(&cat, "open", "public", true).await;
    server.join(&ada, &channel).await;
    let mut bob_ws = server.ws(&bob).await;
    let mut cat_ws = server.ws(&cat).await;
    let mut dan_ws = server.ws(&dan).await;
    let mut ada_other = server.ws(&ada).await;
    let about_ada = |frames: &[Value]| -> Vec<String> {
        frames
            .iter()
            .filter(|f| {
                f["type"] == "communication:presence_changed"
                    && f["data"]["memberId"] == ada.id.to_string()
            })
            .map(|f| f["data"]["status"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Ada's choice reaches the group, the channel and her own other socket.
    server
        .put("/api/presence", Some(&ada.token), json!({"status": "dnd"}))
        .await
        .data(200);
    for ws in [&mut bob_ws, &mut cat_ws, &mut ada_other] {
        let statuses = about_ada(&ws.drain(QUIET).await);
        assert_eq!(
            statuses.last().map(String::as_str),
            Some("dnd"),
            "{statuses:?}"
        );
    }
    assert!(about_ada(&dan_ws.drain(QUIET).await).is_empty());
    // Once Ada leaves the channel, Cat no longer hears of her.
    server
        .post(
            &format!("/api/channels/{channel}/leave"),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    cat_ws.expect("communication:member_left").await;
    server
        .put(
            "/api/presence",
            Some(&ada.token),
            json!({"status": "online"}),
        )
        .await
        .data(200);
    let statuses = about_ada(&bob_ws.drain(QUIET).await);
    assert_eq!(statuses, vec!["online"]);
    assert!(about_ada(&cat_ws.drain(QUIET).await).is_empty());
    assert!(about_ada(&dan_ws.drain(QUIET).await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_coming_online_reaches_an_observer_as_one_latest_status_each() {
    const N: usize = 30;
    let server = TestServer::start().await;
    let observer = server.member("Observer").await;
    let mut crowd = Vec::new();
    for i in 0..N {
        crowd.push(server.member(&format!("Crowd {i}")).await);
    }
    let refs: Vec<&TestMember> = crowd.iter().collect();
    server.group(&observer, "Crowd", &refs).await;
    let mut watcher = server.ws(&observer).await;

    let sockets = futures_util::future::join_all(crowd.iter().map(|m| server.ws(m))).await;
    let statuses = |frames: &[Value]| -> (usize, HashMap<String, String>) {
        let mut count = 0;
        let mut last = HashMap::new();
        for frame in frames {
            // The observer's socket may hear of the observer's own status too.
            if frame["type"] == "communication:presence_changed"
                && frame["data"]["memberId"] != observer.id.to_string()
            {
                count += 1;
                last.insert(
                    frame["data"]["memberId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    frame["data"]["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
        (count, last)
    };
    let (count, last) = statuses(&watcher.drain(Duration::from_millis(800)).await);
    assert_eq!(last.len(), N, "one status per member of the crowd");
    assert!(last.values().all(|s| s == "online"), "{last:?}");
    assert_eq!(count, N, "one presence frame per member of the crowd");

    drop(sockets);
    let (count, last) = statuses(&watcher.drain(Duration::from_millis(800)).await);
    assert_eq!(last.len(), N);
    assert!(last.values().all(|s| s == "offline"), "{last:?}");
    assert_eq!(count, N, "one presence frame per member of the crowd");
}
