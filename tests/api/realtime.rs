//! The event WebSocket: sign-in, delivery to exactly the right members, presence,
//! typing, resume and slow consumers.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::{TestServer, WsClient, decrypt_dm, decrypt_message, member_keys};

const QUIET: Duration = Duration::from_millis(300);

/// Reads frames until the connection closes; returns the close code, if any.
async fn close_code(client: &mut WsClient, wait: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.stream.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return None,
            Err(_) => panic!("the connection stayed open"),
        }
    }
}

#[tokio::test]
async fn three_ways_to_sign_in_and_ping() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;

    let mut by_query = server.ws(&ada).await;
    by_query.send(json!({"type": "ping"})).await;
    assert_eq!(
        by_query.reply(Duration::from_secs(5)).await.expect("pong")["type"],
        "pong"
    );

    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.ws_url(""),
        )
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", ada.token).parse().expect("header"),
    );
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    WsClient::ready(stream).await;

    let (mut stream, _) = tokio_tungstenite::connect_async(server.ws_url(""))
        .await
        .expect("connect");
    stream
        .send(Message::Text(
            json!({"type": "auth", "token": ada.token})
                .to_string()
                .into(),
        ))
        .await
        .expect("send");
    WsClient::ready(stream).await;

    // A bad token in the query or header is refused before the upgrade.
    let refused = tokio_tungstenite::connect_async(server.ws_url("?token=bct_wrong")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
    // A bad auth frame closes with 4001.
    let (stream, _) = tokio_tungstenite::connect_async(server.ws_url(""))
        .await
        .expect("connect");
    let mut client = WsClient {
        stream,
        ready_seq: 0,
    };
    client
        .send(json!({"type": "auth", "token": "bct_wrong"}))
        .await;
    assert_eq!(
        close_code(&mut client, Duration::from_secs(5)).await,
        Some(4001)
    );
    // Unknown frames get an error frame, and the connection stays.
    by_query.send(json!({"type": "dance"})).await;
    let error = by_query
        .reply(Duration::from_secs(5))
        .await
        .expect("error frame");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "VALIDATION_ERROR");
    by_query.send(json!({"type": "ping"})).await;
    assert_eq!(
        by_query.reply(Duration::from_secs(5)).await.expect("pong")["type"],
        "pong"
    );
}

#[tokio::test]
async fn silence_instead_of_auth_closes_with_4001() {
    let server = TestServer::start().await;
    let (stream, _) = tokio_tungstenite::connect_async(server.ws_url(""))
        .await
        .expect("connect");
    let mut client = WsClient {
        stream,
        ready_seq: 0,
    };
    assert_eq!(
        close_code(&mut client, Duration::from_secs(8)).await,
        Some(4001)
    );
}

#[tokio::test]
async fn members_get_every_event_and_outsiders_nothing() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let eve = server.member("Eve").await;
    let mut bob_ws = server.ws(&bob).await;
    let mut eve_ws = server.ws(&eve).await;
    let mut ada_ws = server.ws(&ada).await;

    // Groups.
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let created = bob_ws.expect("communication:group_created").await;
    assert_eq!(created["contextType"], "group");
    assert_eq!(created["contextId"], group);
    assert_eq!(created["data"]["name"], "Alpha");
    assert!(
        created["seq"]
            .as_i64()
            .is_some_and(|s| s > bob_ws.ready_seq)
    );
    assert!(
        created["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let base = format!("/api/groups/{group}");
    let sent = server.group_message(&ada, &group, "Meeting at 3pm").await;
    let frame = bob_ws.expect("communication:message_sent").await;
    assert_eq!(frame["data"]["id"], sent["id"]);
    let keys = member_keys(&server, &bob, &base).await;
    assert_eq!(decrypt_message(&keys, &frame["data"]), "Meeting at 3pm");
    let mid = sent["id"].as_str().expect("id").to_owned();

    server
        .put(
            &format!("{base}/messages/{mid}"),
            Some(&ada.token),
            json!({"content": "Meeting at 4pm"}),
        )
        .await
        .data(200);
    let edited = bob_ws.expect("communication:message_edited").await;
    assert_eq!(decrypt_message(&keys, &edited["data"]), "Meeting at 4pm");
    let reaction = server
        .post(
            &format!("{base}/messages/{mid}/reactions"),
            Some(&ada.token),
            json!({"emoji": "👍"}),
        )
        .await;
    let reaction_id = reaction.data(201)["reactionId"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        bob_ws.expect("communication:reaction_added").await["data"]["reactionId"],
        reaction_id
    );
    server
        .delete(
            &format!("{base}/messages/{mid}/reactions/{reaction_id}"),
            Some(&ada.token),
        )
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:reaction_removed").await["data"]["reactionId"],
        reaction_id
    );
    server
        .post(
            &format!("{base}/messages/{mid}/pin"),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:message_pinned").await["data"],
        json!({"messageId": mid})
    );
    server
        .delete(&format!("{base}/messages/{mid}/pin"), Some(&ada.token))
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:message_unpinned").await["data"],
        json!({"messageId": mid})
    );
    server
        .post(
            &format!("{base}/mute/{}", bob.id),
            Some(&ada.token),
            json!({"durationMs": 60_000}),
        )
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:member_muted").await["data"]["memberId"],
        bob.id.to_string()
    );
    server
        .delete(&format!("{base}/mute/{}", bob.id), Some(&ada.token))
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:member_unmuted").await["data"],
        json!({"memberId": bob.id})
    );
    server.set_role(&ada, &group, &bob, "moderator").await;
    assert_eq!(
        bob_ws.expect("communication:role_changed").await["data"],
        json!({"memberId": bob.id, "role": "moderator"})
    );
    server
        .post(
            &format!("{base}/members"),
            Some(&ada.token),
            json!({"memberIds": [cat.id]}),
        )
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:member_joined").await["data"],
        json!({"memberId": cat.id})
    );
    assert_eq!(
        bob_ws.expect("communication:key_rotated").await["data"],
        json!({"epoch": 2})
    );
    server
        .delete(&format!("{base}/members/{}", cat.id), Some(&ada.token))
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:member_kicked").await["data"],
        json!({"memberId": cat.id})
    );
    assert_eq!(
        bob_ws.expect("communication:key_rotated").await["data"],
        json!({"epoch": 3})
    );
    server
        .delete(&format!("{base}/messages/{mid}"), Some(&ada.token))
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:message_deleted").await["data"],
        json!({"messageId": mid})
    );

    // Typing reaches the others, not the typist.
    ada_ws
        .send(json!({"type": "typing_start", "contextType": "group", "contextId": group}))
        .await;
    let typing = bob_ws.expect("communication:typing_start").await;
    assert_eq!(typing["data"], json!({"memberId": ada.id}));
    ada_ws
        .send(json!({"type": "typing_stop", "contextType": "group", "contextId": group}))
        .await;
    bob_ws.expect("communication:typing_stop").await;
    // Typing where one is not a member is refused.
    eve_ws
        .send(json!({"type": "typing_start", "contextType": "group", "contextId": group}))
        .await;
    let refused = eve_ws.expect("error").await;
    assert_eq!(refused["error"]["code"], "FORBIDDEN");

    // Channels.
    let channel = server.channel(&ada, "general", "public", true).await;
    server.join(&bob, &channel).await;
    let joined = bob_ws.expect("communication:member_joined").await;
    assert_eq!(joined["contextType"], "channel");
    server
        .put(
            &format!("/api/channels/{channel}"),
            Some(&ada.token),
            json!({"topic": "New"}),
        )
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:channel_updated").await["data"]["topic"],
        "New"
    );
    server
        .post(
            &format!("/api/channels/{channel}/leave"),
            Some(&bob.token),
            json!({}),
        )
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:member_left").await["data"],
        json!({"memberId": bob.id})
    );
    server.join(&bob, &channel).await;
    server
        .delete(&format!("/api/channels/{channel}"), Some(&ada.token))
        .await
        .data(200);
    assert_eq!(
        bob_ws.expect("communication:channel_deleted").await["data"],
        json!({"channelId": channel})
    );

    // Direct messages carry the copy for the member receiving the frame.
    let dm = server.dm(&ada, &bob, "just for you").await;
    let frame = bob_ws.expect("communication:message_sent").await;
    assert_eq!(frame["contextType"], "conversation");
    assert_eq!(frame["contextId"], dm["conversationId"]);
    assert_eq!(
        decrypt_dm(&bob.secret, &frame["data"]["encryptedContent"]),
        "just for you"
    );
    let own = loop {
        let frame = ada_ws.expect("communication:message_sent").await;
        if frame["contextType"] == "conversation" {
            break frame;
        }
    };
    assert_eq!(
        decrypt_dm(&ada.secret, &own["data"]["encryptedContent"]),
        "just for you"
    );
    server
        .delete(
            &format!(
                "/api/conversations/{}/messages/{}",
                dm["conversationId"].as_str().expect("id"),
                dm["id"].as_str().expect("id")
            ),
            Some(&ada.token),
        )
        .await
        .data(200);
    bob_ws.expect("communication:message_deleted").await;

    // Eve shares nothing with anyone: she saw only her own presence.
    let seen: Vec<Value> = eve_ws.drain(QUIET).await;
    for frame in &seen {
        assert!(
            frame["type"] == "communication:presence_changed"
                && frame["data"]["memberId"] == eve.id.to_string(),
            "an outsider received {frame}"
        );
    }
    // Every frame Bob got has a strictly increasing seq.
    let rest = bob_ws.drain(QUIET).await;
    let seqs: Vec<i64> = rest.iter().filter_map(|f| f["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[tokio::test]
async fn a_kicked_member_stops_receiving() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let channel = server.channel(&ada, "general", "public", true).await;
    server.join(&bob, &channel).await;
    let mut bob_ws = server.ws(&bob).await;
    server.channel_message(&ada, &channel, "before").await;
    bob_ws.expect("communication:message_sent").await;

    server
        .post(
            &format!("/api/channels/{channel}/kick/{}", bob.id),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    let kicked = bob_ws.expect("communication:member_kicked").await;
    assert_eq!(
        kicked["data"],
        json!({"memberId": bob.id}),
        "the kicked member learns of its own kick"
    );
    server.channel_message(&ada, &channel, "after").await;
    server
        .post(
            &format!("/api/channels/{channel}/messages"),
            Some(&ada.token),
            json!({"content": "more"}),
        )
        .await
        .data(201);
    let after: Vec<Value> = bob_ws.drain(QUIET).await;
    assert!(
        after.iter().all(|f| f["contextId"] != channel),
        "the kicked member received {after:?}"
    );
    // Reconnecting and resuming does not leak them either.
    let mut again = server
        .ws_query(&format!("?token={}&resume={}", bob.token, kicked["seq"]))
        .await;
    let replayed = again.drain(QUIET).await;
    assert!(
        replayed.iter().all(|f| f["contextId"] != channel),
        "{replayed:?}"
    );
}

#[tokio::test]
async fn presence_follows_connections_idleness_and_choices() {
    let server = TestServer::start_with(|c| c.idle_after = Duration::from_millis(1500)).await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    server.group(&ada, "Pair", &[&bob]).await;
    let mut bob_ws = server.ws(&bob).await;

    let ada_ws = server.ws(&ada).await;
    let ada_id = ada.id.to_string();
    let next_status = async |ws: &mut WsClient| -> String {
        loop {
            let frame = ws.expect("communication:presence_changed").await;
            if frame["data"]["memberId"] == ada_id {
                return frame["data"]["status"].as_str().expect("status").to_owned();
            }
        }
    };
    assert_eq!(next_status(&mut bob_ws).await, "online");
    // A second connection changes nothing; idle after the quiet period.
    let mut ada_ws2 = server.ws(&ada).await;
    assert_eq!(next_status(&mut bob_ws).await, "idle");
    // Activity brings Ada back.
    ada_ws2.send(json!({"type": "ping"})).await;
    assert_eq!(next_status(&mut bob_ws).await, "online");
    // dnd sticks: through quiet periods and reconnections.
    let set = server
        .put("/api/presence", Some(&ada.token), json!({"status": "dnd"}))
        .await;
    assert_eq!(set.data(200), &json!({"status": "dnd"}));
    assert_eq!(next_status(&mut bob_ws).await, "dnd");
    drop(ada_ws);
    drop(ada_ws2);
    assert_eq!(next_status(&mut bob_ws).await, "offline");
    let mut ada_ws3 = server.ws(&ada).await;
    assert_eq!(next_status(&mut bob_ws).await, "dnd");
    // The client frame sets presence too.
    ada_ws3
        .send(json!({"type": "presence", "status": "online"}))
        .await;
    assert_eq!(next_status(&mut bob_ws).await, "online");
    ada_ws3
        .send(json!({"type": "presence", "status": "away"}))
        .await;
    assert_eq!(
        ada_ws3.expect("error").await["error"]["code"],
        "VALIDATION_ERROR"
    );
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let other = server.group(&ada, "Without Bob", &[&cat]).await;
    let mut bob_ws = server.ws(&bob).await;
    server.group_message(&ada, &group, "seen live").await;
    let live = bob_ws.expect("communication:message_sent").await;
    let last_seen = live["seq"].as_i64().expect("seq");
    drop(bob_ws);

    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(
            server
                .group_message(&ada, &group, &format!("missed {i}"))
                .await["id"]
                .clone(),
        );
        server.group_message(&ada, &other, "not for Bob").await;
    }
    let mut resumed = server
        .ws_query(&format!("?token={}&resume={last_seen}", bob.token))
        .await;
    let frames = resumed.drain(QUIET).await;
    let messages: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "communication:message_sent")
        .collect();
    let ids: Vec<Value> = messages.iter().map(|f| f["data"]["id"].clone()).collect();
    assert_eq!(ids, missed, "exactly the missed messages, in order");
    assert!(frames.iter().all(|f| f["contextId"] != other), "{frames:?}");
    let seqs: Vec<i64> = frames.iter().filter_map(|f| f["seq"].as_i64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > last_seen,
        "{seqs:?}"
    );

    // Live events continue after the replay, without repeats.
    server.group_message(&ada, &group, "live again").await;
    let next = resumed.expect("communication:message_sent").await;
    assert!(next["seq"].as_i64().expect("seq") > *seqs.last().expect("seq"));

    // Resuming from the present replays nothing.
    let mut current = server
        .ws_query(&format!("?token={}&resume={}", bob.token, next["seq"]))
        .await;
    let nothing = current.drain(QUIET).await;
    assert!(
        nothing
            .iter()
            .all(|f| f["type"] != "communication:message_sent"),
        "{nothing:?}"
    );
}

#[tokio::test]
async fn a_gap_older_than_retention_requires_a_resync() {
    let server = TestServer::start_with(|c| c.event_retention = Duration::from_millis(1)).await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let bob_ws = server.ws(&bob).await;
    let seq = bob_ws.ready_seq;
    drop(bob_ws);
    server.group_message(&ada, &group, "pruned away").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The outbox keeps what the search indexer has not applied: let it catch up first.
    let search = &server.state.search;
    let done = brightchat::search::indexer::catch_up(&server.state, search.index.as_ref())
        .await
        .expect("indexing catches up");
    search.set_indexed(done.checkpoint);
    brightchat::events::outbox::prune(&server.state)
        .await
        .expect("prune");
    let mut resumed = server
        .ws_query(&format!("?token={}&resume={seq}", bob.token))
        .await;
    let frame = resumed.next(Duration::from_secs(5)).await.expect("a frame");
    assert_eq!(frame["type"], "resync_required", "{frame}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_without_delaying_a_fast_one() {
    let server = TestServer::start_with(|c| {
        c.ws_buffer = 32;
        c.ws_send_timeout = Duration::from_millis(500);
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
    // The slow client has a tiny receive buffer and never reads.
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
    let mut slow_ws = WsClient {
        stream: slow_stream,
        ready_seq: 0,
    };

    let big = "€".repeat(10_000);
    // About 40 KB a frame: 200 frames are twice what the kernel buffers of one
    // connection hold, so the slow client must fall behind.
    let count = 200;
    let reader = tokio::spawn(async move {
        let mut received = 0;
        let started = std::time::Instant::now();
        while received < count {
            match fast_ws.next(Duration::from_secs(20)).await {
                Some(frame) if frame["type"] == "communication:message_sent" => received += 1,
                Some(_) => {}
                None => break,
            }
        }
        (received, started.elapsed())
    });
    for _ in 0..count {
        server
            .post(
                &format!("/api/channels/{channel}/messages"),
                Some(&ada.token),
                json!({"content": big}),
            )
            .await
            .data(201);
    }
    let (received, elapsed) = reader.await.expect("reader");
    assert_eq!(received, count, "the fast client got every message");
    assert!(
        elapsed < Duration::from_secs(60),
        "the fast client was held up: {elapsed:?}"
    );

    // The slow client was dropped: reading now ends in close code 4008 or a reset, before
    // all the messages.
    let mut got = 0;
    let mut code = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), slow_ws.stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if text.contains("communication:message_sent") {
                    got += 1;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                code = frame.map(|f| f.code);
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!("the slow client was never disconnected"),
        }
    }
    assert!(got < count, "the slow client received everything ({got})");
    if let Some(code) = code {
        assert_eq!(code, CloseCode::from(4008));
    }
}

#[tokio::test]
async fn events_about_hidden_history_are_held_back() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let channel = server.channel(&ada, "quiet", "public", false).await;
    let base = format!("/api/channels/{channel}");
    let old = server.channel_message(&ada, &channel, "before Bob").await;
    let old_id = old["id"].as_str().expect("id").to_owned();
    server
        .post(
            &format!("{base}/messages/{old_id}/pin"),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    server
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
    // Bob does not see the earlier pin in the metadata either.
    let meta = server.get(&base, Some(&bob.token)).await;
    assert_eq!(meta.data(200)["pinnedMessageIds"], json!([]));

    let mut bob_ws = server.ws(&bob).await;
    server
        .put(
            &format!("{base}/messages/{old_id}"),
            Some(&ada.token),
            json!({"content": "edited before Bob"}),
        )
        .await
        .data(200);
    server
        .post(
            &format!("{base}/messages/{old_id}/reactions"),
            Some(&ada.token),
            json!({"emoji": "👀"}),
        )
        .await
        .data(201);
    server
        .delete(&format!("{base}/messages/{old_id}/pin"), Some(&ada.token))
        .await
        .data(200);
    let new = server.channel_message(&ada, &channel, "after Bob").await;
    let frames = bob_ws.drain(QUIET).await;
    assert!(
        frames.iter().all(
            |f| f["data"]["id"] != old_id.as_str() && f["data"]["messageId"] != old_id.as_str()
        ),
        "events about a message from before Bob joined reached him: {frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "communication:message_sent" && f["data"]["id"] == new["id"])
    );
}

#[tokio::test]
async fn signing_out_closes_open_sockets() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let mut ws = server.ws(&ada).await;
    server
        .delete("/api/auth/token", Some(&ada.token))
        .await
        .data(200);
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(6)).await,
        Some(4001)
    );
}
