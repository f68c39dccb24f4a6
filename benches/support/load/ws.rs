//! WebSocket clients of `/api/events`: connecting many at once, reading them in the
//! background, waiting for the server to fall quiet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::seed::Progress;

/// One connection to `/api/events`.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Handshakes in flight while connecting many sockets.
pub const CONNECT_CONCURRENCY: usize = 64;

/// Opens `/api/events` on the server at `base` (http://…) as the member with `token`.
pub async fn connect(base: &str, token: &str) -> Result<Socket, String> {
    let ws_base = base.replacen("http://", "ws://", 1);
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("{ws_base}/api/events?token={token}"))
            .await
            .map_err(|e| format!("connect: {e}"))?;
    Ok(socket)
}

/// Connects one socket per token, [`CONNECT_CONCURRENCY`] at a time. Returns the sockets that
/// opened, each handshake's duration, and how many failed.
pub async fn connect_all(base: &str, tokens: &[String]) -> (Vec<Socket>, Vec<Duration>, u64) {
    let mut progress = Progress::new("connected", tokens.len());
    let mut sockets = Vec::with_capacity(tokens.len());
    let mut latencies = Vec::with_capacity(tokens.len());
    let mut failed = 0u64;
    let mut pending = futures_util::stream::iter(tokens.iter().map(|token| async move {
        let at = Instant::now();
        connect(base, token)
            .await
            .map(|socket| (socket, at.elapsed()))
    }))
    .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some(opened) = pending.next().await {
        match opened {
            Ok((socket, took)) => {
                sockets.push(socket);
                latencies.push(took);
            }
            Err(error) => {
                if failed == 0 {
                    eprintln!("  first failed connection: {error}");
                }
                failed += 1;
            }
        }
        progress.tick();
    }
    (sockets, latencies, failed)
}

/// What the background readers of a set of sockets have seen.
#[derive(Default)]
pub struct Counters {
    /// Text frames received, over all sockets.
    pub frames: AtomicU64,
    /// Sockets that ended (closed by the server or failed).
    pub closed: AtomicU64,
}

/// Reads `socket` in the background until it ends: counts its text frames and hands each
/// to `on_text` with the time it arrived.
pub fn read(
    socket: Socket,
    counters: Arc<Counters>,
    on_text: impl Fn(&str, Instant) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (_write, mut read) = socket.split();
        while let Some(Ok(frame)) = read.next().await {
            if let Message::Text(text) = frame {
                let at = Instant::now();
                counters.frames.fetch_add(1, Ordering::Relaxed);
                on_text(text.as_str(), at);
            }
        }
        counters.closed.fetch_add(1, Ordering::Relaxed);
    })
}

/// Reads `socket` in the background, dropping what it gets (but counting it).
pub fn drain(socket: Socket, counters: Arc<Counters>) -> JoinHandle<()> {
    read(socket, counters, |_, _| {})
}

/// Waits until `frames` has not moved for `quiet`, at most `max`; returns how long it took.
pub async fn wait_quiet(frames: &AtomicU64, quiet: Duration, max: Duration) -> Duration {
    let started = Instant::now();
    let mut quiet_since = Instant::now();
    let mut seen = frames.load(Ordering::Relaxed);
    while quiet_since.elapsed() < quiet && started.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = frames.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
    started.elapsed()
}

/// Stops background readers, which closes their sockets.
pub fn stop(readers: &[JoinHandle<()>]) {
    for reader in readers {
        reader.abort();
    }
}
