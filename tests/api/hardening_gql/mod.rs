//! Issue 9 on the GraphQL side: a guarded parser, JSON error bodies, page-proportional cost,
//! and a `/graphql/ws` that limits what one client may hold open.

mod http;
mod socket;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::TestServer;

pub const MODERN: &str = "graphql-transport-ws";
pub const LEGACY: &str = "graphql-ws";

/// A `/graphql/ws` client.
pub struct Gql {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    protocol: &'static str,
}

/// What the server sent: a JSON message, or the close frame's code and reason.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Closed(Option<u16>, String),
}

impl Gql {
    /// Connects without sending anything.
    pub async fn connect(server: &TestServer, protocol: &'static str) -> Self {
        let mut request = format!("{}/graphql/ws", server.base.replacen("http://", "ws://", 1))
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().expect("header"));
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        Self { ws, protocol }
    }

    /// Connects and signs in with `token`; waits for `connection_ack`.
    pub async fn signed_in(server: &TestServer, protocol: &'static str, token: &str) -> Self {
        let mut client = Self::connect(server, protocol).await;
        client
            .send(json!({"type": "connection_init", "payload": {"token": token}}))
            .await;
        match client.next(Duration::from_secs(5)).await {
            Some(Frame::Json(ack)) if ack["type"] == "connection_ack" => client,
            other => panic!("no connection_ack: {other:?}"),
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Starts operation `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str) {
        let kind = if self.protocol == MODERN {
            "subscribe"
        } else {
            "start"
        };
        self.send(json!({"type": kind, "id": id, "payload": {"query": query}}))
            .await;
    }

    /// The next message within `wait` (keep-alives skipped), or `None`.
    pub async fn next(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?
            {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    if value["type"] == "ka" {
                        continue;
                    }
                    return Some(Frame::Json(value));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Frame::Closed(
                        frame.as_ref().map(|f| u16::from(f.code)),
                        frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Frame::Closed(None, String::new())),
            }
        }
    }

    /// The next message for operation `id` (others skipped), within 5 s.
    pub async fn next_for(&mut self, id: &str) -> Value {
        loop {
            match self.next(Duration::from_secs(5)).await {
                Some(Frame::Json(value)) if value["id"] == id => return value,
                Some(Frame::Json(_)) => continue,
                other => panic!("nothing for {id}: {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self, wait: Duration) -> (Option<u16>, String) {
        loop {
            match self.next(wait).await {
                Some(Frame::Closed(code, reason)) => return (code, reason),
                Some(Frame::Json(_)) => continue,
                None => panic!("the connection stayed open"),
            }
        }
    }
}

/// A normal query still answers: the server is up and serving.
pub async fn still_serving(server: &TestServer, token: &str) {
    let answer = server
        .graphql(Some(token), "{ me { id } }", json!({}))
        .await;
    assert!(answer["data"]["me"]["id"].is_string(), "{answer}");
}
