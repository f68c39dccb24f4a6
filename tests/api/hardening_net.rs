//! Issue 9, items 6, 8 and 12: oversized WebSocket messages, connections that hold the
//! server without finishing a request, and the order of presence events.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::{TestServer, WsClient};

/// The server's address without the scheme.
fn address(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes the connection (EOF or reset), up to `wait`. Returns how long
/// that took, or `None` when the connection was still open at the end.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = wait.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends a complete keep-alive `GET /healthz` on a raw connection and reads its answer.
async fn keep_alive_request(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write the request");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .expect("the answer arrives in time")
            .expect("read");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("a content-length");
            if body.len() >= length {
                return;
            }
        }
    }
}

/// `GET /healthz` on a new connection (a pooled one may be closing just then, as
/// kept-alive connections are closed by the timeouts under test). Returns the status.
async fn healthz_fresh(server: &TestServer) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

/// Item 8: connections that never finish their headers are closed after the header read
/// timeout, and the server keeps answering everyone else meanwhile.
#[tokio::test]
async fn connections_with_unfinished_headers_are_closed_after_the_timeout() {
    let server = TestServer::start_with(|config| {
        config.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut stream = TcpStream::connect(address(&server)).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .expect("write");
        slow.push(stream);
    }
    // Meanwhile an ordinary request is answered at once.
    assert_eq!(healthz_fresh(&server).await, 200);
    let closing = slow.iter_mut().map(|stream| async move {
        closed_within(stream, Duration::from_secs(6))
            .await
            .expect("a connection with unfinished headers was still open after 6 s")
    });
    let times = futures_util::future::join_all(closing).await;
    let slowest = times.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(3500),
        "closed only after {slowest:?} with a 1 s header timeout"
    );
    assert_eq!(healthz_fresh(&server).await, 200);
}

/// Item 8: a kept-alive connection with no further request is closed after the idle
/// timeout, even when the header timeout is longer.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let server = TestServer::start_with(|config| {
        config.header_read_timeout = Duration::from_secs(30);
        config.keepalive_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = TcpStream::connect(address(&server)).await.expect("connect");
    keep_alive_request(&mut stream).await;
    let closed = closed_within(&mut stream, Duration::from_secs(6))
        .await
        .expect("an idle keep-alive connection was still open after 6 s");
    assert!(
        closed >= Duration::from_millis(500) && closed < Duration::from_millis(3500),
        "closed after {closed:?} with a 1 s idle timeout"
    );
    // A connection in use is not cut: two requests 600 ms apart share one connection.
    let mut stream = TcpStream::connect(address(&server)).await.expect("connect");
    keep_alive_request(&mut stream).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    keep_alive_request(&mut stream).await;
    assert_eq!(healthz_fresh(&server).await, 200);
}

/// Log lines written by one server, for assertions.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Item 8: at the connection cap the server stops accepting (the next client waits), says
/// so in its log once, and serves the waiting client as soon as a connection closes.
#[tokio::test]
async fn the_connection_cap_holds_new_clients_until_one_closes() {
    let log = CapturedLog::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let server = TestServer::start_logged(
        |config| {
            config.max_connections = 2;
            config.header_read_timeout = Duration::from_secs(30);
            config.keepalive_timeout = Duration::from_secs(30);
        },
        subscriber.into(),
    )
    .await;
    let mut first = TcpStream::connect(address(&server)).await.expect("connect");
    keep_alive_request(&mut first).await;
    let mut second = TcpStream::connect(address(&server)).await.expect("connect");
    keep_alive_request(&mut second).await;

    let client = reqwest::Client::new();
    let url = format!("{}/healthz", server.base);
    let waiting = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served while two were open with a cap of 2"
    );
    let logged = log.text();
    assert!(
        logged.contains("connection limit reached") && logged.contains("WARN"),
        "no warning about the connection limit: {logged:?}"
    );
    assert_eq!(
        logged.matches("connection limit reached").count(),
        1,
        "the warning is rate-limited: {logged:?}"
    );

    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting client is served once a connection closes")
        .expect("the task ends")
        .expect("the request succeeds");
    assert_eq!(status.as_u16(), 200);
    drop(second);
    server.get("/healthz", None).await.data(200);
}

/// Expects the server to close the socket with `code`; returns the reason.
async fn expect_close(ws: &mut WsClient, code: CloseCode) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.stream.next())
            .await
            .expect("a close frame within 5 s");
        match frame {
            Some(Ok(Message::Close(Some(close)))) => {
                assert_eq!(close.code, code, "closed with {close:?}");
                return close.reason.to_string();
            }
            Some(Ok(Message::Close(None))) => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("the socket broke without a close frame (1006): {err}"),
            None => panic!("the socket ended without a close frame (1006)"),
        }
    }
}

/// A `ping` frame padded to exactly `len` bytes.
fn ping_of_len(len: usize) -> String {
    let frame = json!({"type": "ping", "pad": ""}).to_string();
    let text = json!({"type": "ping", "pad": "x".repeat(len - frame.len())}).to_string();
    assert_eq!(text.len(), len);
    text
}

/// Item 6: a message over the limit (just over it, or far over it, in one frame or in
/// fragments) ends in close code 1009 with a reason; other sockets and REST carry on.
#[tokio::test]
async fn oversized_websocket_messages_close_with_1009() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mut bystander = server.ws(&bob).await;

    for size in [16 * 1024 + 1usize, 64 * 1024, 1024 * 1024] {
        let mut ws = server.ws(&ada).await;
        let text = ping_of_len(size);
        // The server may close before the whole message is written; that is fine.
        let _ = ws.stream.send(Message::Text(text.into())).await;
        let reason = expect_close(&mut ws, CloseCode::Size).await;
        assert!(reason.contains("16384"), "reason: {reason}");
    }

    // Fragments under the limit that add up to more than it.
    {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let mut ws = server.ws(&ada).await;
        let piece = "x".repeat(8 * 1024);
        let frames = [
            Frame::message(piece.clone(), OpCode::Data(Data::Text), false),
            Frame::message(piece.clone(), OpCode::Data(Data::Continue), false),
            Frame::message(piece, OpCode::Data(Data::Continue), true),
        ];
        for frame in frames {
            let _ = ws.stream.send(Message::Frame(frame)).await;
        }
        expect_close(&mut ws, CloseCode::Size).await;
    }

    // A socket signed in by its first frame is held to the same limit.
    let (stream, _) = tokio_tungstenite::connect_async(server.ws_url(""))
        .await
        .expect("connect");
    let mut unsigned = WsClient {
        stream,
        ready_seq: 0,
    };
    let _ = unsigned
        .stream
        .send(Message::Text("x".repeat(100 * 1024).into()))
        .await;
    expect_close(&mut unsigned, CloseCode::Size).await;

    // A message at the limit is still read (and answered).
    let mut ws = server.ws(&ada).await;
    ws.stream
        .send(Message::Text(ping_of_len(16 * 1024).into()))
        .await
        .expect("send");
    assert_eq!(ws.expect("pong").await["type"], "pong");

    bystander.send(json!({"type": "ping"})).await;
    assert_eq!(bystander.expect("pong").await["type"], "pong");
    server.get("/healthz", None).await.data(200);
}

/// Item 12: a member closes one socket and opens another at once, 60 times over. After
/// each round the peer's last `presence_changed` for that member says `online`, since it
/// is connected. A group message sent afterwards marks the end of each round: events
/// arrive in commit order, so every presence event of the round came before it.
#[tokio::test]
async fn the_last_presence_event_shows_a_member_who_reconnects_at_once_as_online() {
    let server = TestServer::start().await;
    let peer = server.member("Peer").await;
    let mover = server.member("Mover").await;
    let group = server.group(&peer, "Presence", &[&mover]).await;
    let mut watcher = server.ws(&peer).await;
    let mut current = server.ws(&mover).await;
    let mut last = String::new();
    let mut wrong = Vec::new();
    for round in 0..60 {
        let closing = async {
            let _ = current.stream.close(None).await;
            // The server drops the socket once it has handled the disconnection.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(Ok(_)) = current.stream.next().await {}
            })
            .await;
        };
        let (_, next) = tokio::join!(closing, server.ws(&mover));
        current = next;
        let marker = server
            .group_message(&mover, &group, &format!("round {round}"))
            .await;
        loop {
            let frame = watcher
                .next(Duration::from_secs(5))
                .await
                .expect("the round's message reaches the peer");
            if frame["type"] == "communication:presence_changed"
                && frame["data"]["memberId"] == mover.id.to_string()
            {
                last = frame["data"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            if frame["type"] == "communication:message_sent" && frame["data"]["id"] == marker["id"]
            {
                break;
            }
        }
        if last != "online" {
            wrong.push(round);
        }
    }
    assert!(
        wrong.is_empty(),
        "the peer's last presence event for a connected member was not online after rounds {wrong:?}"
    );
    // The member's own view agrees, and the server still answers.
    assert_eq!(healthz_fresh(&server).await, 200);
}
