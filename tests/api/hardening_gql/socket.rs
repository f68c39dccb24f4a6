//! `/graphql/ws`: limits, protocol close codes, revocation, presence and resume.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Frame, Gql, LEGACY, MODERN, still_serving};
use crate::common::{TestServer, WsClient, gql_code};

const EVENTS: &str =
    "subscription { events(types: [\"communication:message_sent\"]) { type messageId } }";

#[tokio::test]
async fn one_socket_cannot_open_unlimited_subscriptions() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let carol = server.member("Carol").await;
    let group = server.group(&ada, "Busy", &[&bob, &carol]).await;
    let carols = server.group(&carol, "Quiet", &[]).await;
    let max = server.config.graphql_max_subscriptions;
    assert_eq!(max, 100, "the documented default");

    let mut socket = Gql::signed_in(&server, MODERN, &bob.token).await;
    for n in 1..=max {
        socket.subscribe(&n.to_string(), EVENTS).await;
    }
    socket.subscribe("over", EVENTS).await;
    let refused = socket.next_for("over").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
        "{refused}"
    );

    // Another member's plain read answers promptly while the socket holds its maximum.
    let started = Instant::now();
    server
        .get(
            &format!("/api/groups/{carols}/messages"),
            Some(&carol.token),
        )
        .await
        .data(200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The connection stayed open and every earlier subscription delivers. Each takes its
    // starting snapshot in turn, so keep sending until all of them have had one event.
    let mut delivered = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.len() < max {
        assert!(
            Instant::now() < deadline,
            "only {} delivered",
            delivered.len()
        );
        server.group_message(&ada, &group, "to all of them").await;
        while let Some(frame) = socket.next(Duration::from_millis(500)).await {
            match frame {
                Frame::Json(message) if message["type"] == "next" => {
                    let event = &message["payload"]["data"]["events"];
                    assert_eq!(event["type"], "communication:message_sent", "{message}");
                    delivered.insert(message["id"].as_str().expect("id").to_owned());
                }
                other => panic!("after {} deliveries: {other:?}", delivered.len()),
            }
        }
    }
    // Stopping one frees a place.
    socket.send(json!({"type": "complete", "id": "1"})).await;
    socket.subscribe("again", EVENTS).await;
    for attempt in 0.. {
        assert!(attempt < 20, "the new subscription delivered nothing");
        let sent = server.group_message(&ada, &group, "once more").await;
        let mut got = None;
        while let Some(Frame::Json(message)) = socket.next(Duration::from_millis(500)).await {
            if message["id"] == "again" && message["type"] == "next" {
                got = Some(message["payload"]["data"]["events"]["messageId"].clone());
            }
        }
        if let Some(id) = got {
            assert_eq!(id, sent["id"]);
            break;
        }
    }
}

#[tokio::test]
async fn a_subscription_operation_opens_one_stream() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let mut socket = Gql::signed_in(&server, MODERN, &ada.token).await;
    // Aliases would multiply the streams behind one operation: refused, as the spec says.
    let aliases: String = (0..50)
        .map(|i| format!("e{i}: events {{ seq }} "))
        .collect();
    socket
        .subscribe("aliases", &format!("subscription {{ {aliases} }}"))
        .await;
    let reply = socket.next_for("aliases").await;
    assert_eq!(
        gql_code(&reply["payload"]).as_deref(),
        Some("VALIDATION_ERROR"),
        "{reply}"
    );
    let through_fragment = "subscription { ...Both } fragment Both on Subscription { a: events { seq } b: events { seq } }";
    socket.subscribe("fragment", through_fragment).await;
    let reply = socket.next_for("fragment").await;
    assert_eq!(
        gql_code(&reply["payload"]).as_deref(),
        Some("VALIDATION_ERROR"),
        "{reply}"
    );
    still_serving(&server, &ada.token).await;
}

#[tokio::test]
async fn connections_per_member_are_capped_across_both_sockets() {
    let server = TestServer::start_with(|c| c.ws_max_connections_per_member = 2).await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let rest = server.ws(&ada).await;
    let _gql = Gql::signed_in(&server, MODERN, &ada.token).await;

    // A third, on either route, is closed with 1008.
    let mut third = Gql::connect(&server, MODERN).await;
    third
        .send(json!({"type": "connection_init", "payload": {"token": ada.token}}))
        .await;
    assert_eq!(third.closed(Duration::from_secs(5)).await.0, Some(1008));
    let (stream, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("?token={}", ada.token)))
            .await
            .expect("connect");
    let mut third_rest = WsClient {
        stream,
        ready_seq: 0,
    };
    match third_rest.stream.next_close().await {
        Some(code) => assert_eq!(code, 1008),
        None => panic!("no close frame"),
    }
    // Another member is not affected; closing one frees a slot.
    let _bob = Gql::signed_in(&server, LEGACY, &bob.token).await;
    drop(rest);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _again = Gql::signed_in(&server, MODERN, &ada.token).await;
}

/// Reads an `/api/events` stream until its close frame.
trait NextClose {
    async fn next_close(&mut self) -> Option<u16>;
}

impl NextClose
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn next_close(&mut self) -> Option<u16> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }
}

#[tokio::test]
async fn graphql_transport_ws_close_codes() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;

    // 4400: not a protocol message.
    let mut socket = Gql::signed_in(&server, MODERN, &ada.token).await;
    socket.send_text("not json".into()).await;
    assert_eq!(socket.closed(Duration::from_secs(5)).await.0, Some(4400));
    // 4401: an operation before connection_ack.
    let mut socket = Gql::connect(&server, MODERN).await;
    socket.subscribe("1", EVENTS).await;
    assert_eq!(socket.closed(Duration::from_secs(5)).await.0, Some(4401));
    // 4403: a bad token, on both protocols.
    for protocol in [MODERN, LEGACY] {
        let mut socket = Gql::connect(&server, protocol).await;
        socket
            .send(json!({"type": "connection_init", "payload": {"token": "bct_nope"}}))
            .await;
        assert_eq!(socket.closed(Duration::from_secs(5)).await.0, Some(4403));
    }
    // 4409: a running id reused.
    let mut socket = Gql::signed_in(&server, MODERN, &ada.token).await;
    socket.subscribe("same", EVENTS).await;
    socket.subscribe("same", EVENTS).await;
    let (code, reason) = socket.closed(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4409));
    assert_eq!(reason, "Subscriber for same already exists");
    // 4429: a second connection_init.
    let mut socket = Gql::signed_in(&server, MODERN, &ada.token).await;
    socket
        .send(json!({"type": "connection_init", "payload": {"token": ada.token}}))
        .await;
    assert_eq!(socket.closed(Duration::from_secs(5)).await.0, Some(4429));
    // 1009: a frame over the limit gets a close frame, not a dropped socket.
    let mut socket = Gql::signed_in(&server, MODERN, &ada.token).await;
    socket
        .send_text(format!(
            "{{\"type\":\"ping\",\"payload\":\"{}\"}}",
            "x".repeat(40_000)
        ))
        .await;
    assert_eq!(socket.closed(Duration::from_secs(5)).await.0, Some(1009));
    // 4408: no connection_init in time.
    let mut socket = Gql::connect(&server, MODERN).await;
    assert_eq!(socket.closed(Duration::from_secs(8)).await.0, Some(4408));
    still_serving(&server, &ada.token).await;
}

#[tokio::test]
async fn a_revoked_token_runs_nothing_more_over_the_socket() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let mut socket = Gql::signed_in(&server, MODERN, &ada.token).await;
    for n in 0..3 {
        socket.subscribe(&format!("s{n}"), EVENTS).await;
    }
    socket.subscribe("before", "{ me { displayName } }").await;
    let before = socket.next_for("before").await;
    assert_eq!(before["payload"]["data"]["me"]["displayName"], "Ada");

    server
        .delete("/api/auth/token", Some(&ada.token))
        .await
        .data(200);
    // The sign-out is announced to the socket, which closes at once: no operation sent
    // after it can run. (Sending one would race the close: a write after the server has
    // closed can reset the connection before the close frame is read.)
    let signed_out = Instant::now();
    assert_eq!(socket.closed(Duration::from_secs(5)).await.0, Some(4403));
    assert!(
        signed_out.elapsed() < Duration::from_millis(1000),
        "closed {:?} after the sign-out",
        signed_out.elapsed()
    );

    // Without a new operation, the socket is closed too.
    let token = server.sign_in(ada.id, &ada.secret).await;
    let mut idle = Gql::signed_in(&server, LEGACY, &token).await;
    idle.subscribe("1", EVENTS).await;
    idle.subscribe("2", EVENTS).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .delete("/api/auth/token", Some(&token))
        .await
        .data(200);
    assert_eq!(idle.closed(Duration::from_secs(5)).await.0, Some(4403));
}

#[tokio::test]
async fn a_graphql_only_subscriber_is_shown_online() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    server.group(&ada, "Pair", &[&bob]).await;
    let mut bob_ws = server.ws(&bob).await;
    let ada_id = ada.id.to_string();
    let next_status = async |ws: &mut WsClient| -> String {
        loop {
            let frame = ws.expect("communication:presence_changed").await;
            if frame["data"]["memberId"] == ada_id {
                return frame["data"]["status"].as_str().expect("status").to_owned();
            }
        }
    };
    let socket = Gql::signed_in(&server, MODERN, &ada.token).await;
    assert_eq!(next_status(&mut bob_ws).await, "online");
    drop(socket);
    assert_eq!(next_status(&mut bob_ws).await, "offline");
}

#[tokio::test]
async fn resume_out_of_range_gets_the_same_answer_on_both_sockets() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let group = server.group(&ada, "Resume", &[&bob]).await;

    // Negative: refused on both.
    let refused =
        tokio_tungstenite::connect_async(server.ws_url(&format!("?token={}&resume=-1", bob.token)))
            .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 400);
        }
        other => panic!("expected a 400: {:?}", other.map(|_| ())),
    }
    let mut socket = Gql::signed_in(&server, MODERN, &bob.token).await;
    socket
        .subscribe("neg", "subscription { events(resume: -1) { seq } }")
        .await;
    let reply = socket.next_for("neg").await;
    assert_eq!(
        gql_code(&reply["payload"]).as_deref(),
        Some("VALIDATION_ERROR"),
        "{reply}"
    );

    // Past the newest event: resync required on both, then live events.
    let mut rest = server
        .ws_query(&format!("?token={}&resume=999999", bob.token))
        .await;
    let frame = rest.next(Duration::from_secs(5)).await.expect("a frame");
    assert_eq!(frame["type"], "resync_required", "{frame}");
    socket
        .subscribe(
            "future",
            "subscription { events(resume: 999999) { type messageId } }",
        )
        .await;
    let reply = socket.next_for("future").await;
    assert_eq!(
        gql_code(&reply["payload"]).as_deref(),
        Some("RESYNC_REQUIRED"),
        "{reply}"
    );
    let sent = server.group_message(&ada, &group, "live").await;
    loop {
        let reply = socket.next_for("future").await;
        if reply["payload"]["data"]["events"]["type"] == "communication:message_sent" {
            assert_eq!(reply["payload"]["data"]["events"]["messageId"], sent["id"]);
            break;
        }
    }
    rest.expect("communication:message_sent").await;
}
