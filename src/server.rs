//! The HTTP server: accepts TCP connections and serves the router on each with hyper's
//! HTTP/1 connection builder, so that a connection cannot be held open for free.
//!
//! - **Header read timeout** (`BRIGHTCHAT_HEADER_READ_TIMEOUT_SECS`): hyper closes a
//!   connection whose request head is not complete in time. Hyper's timer starts whenever
//!   it waits for a request head, so it also bounds the wait for the *next* request on a
//!   kept-alive connection (Slowloris: a request line and half the headers, then nothing).
//! - **Keep-alive idle timeout** (`BRIGHTCHAT_KEEPALIVE_TIMEOUT_SECS`): a connection with no
//!   bytes read or written for that long is shut down gracefully (a request in progress is
//!   answered first, then the connection closes). An upgraded connection (WebSocket) is
//!   no longer watched: its own protocol keeps it alive or ends it.
//! - **Connection cap** (`BRIGHTCHAT_MAX_CONNECTIONS`): each accepted connection holds a
//!   permit until its socket closes (WebSockets included). With none left the server
//!   stops accepting (new clients wait in the kernel's backlog) and logs a warning at most
//!   once every [`LIMIT_LOG_EVERY`]; accepting resumes as soon as one closes.
//!
//! [`serve_listener`] is what the binary and the tests use, so every test goes through
//! this stack.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::Config;

/// The connection-limit warning is logged at most this often.
pub const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long to pause accepting after an accept error such as "too many open files".
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The serving limits taken from [`Config`].
#[derive(Clone, Copy, Debug)]
struct Limits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets
/// requests in progress finish, and returns once every HTTP connection has closed.
/// Connections already upgraded to WebSockets are not waited for.
///
/// Handlers can extract the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve_listener(
    listener: TcpListener,
    router: Router,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = Limits {
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.keepalive_timeout,
        max_connections: config.max_connections.max(1),
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut limit_logged: Option<Instant> = None;
    let mut error_logged: Option<Instant> = None;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if due(&mut limit_logged) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached (BRIGHTCHAT_MAX_CONNECTIONS): not accepting new connections until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    if due(&mut error_logged) {
                        tracing::warn!(error = %err, "cannot accept connections; pausing");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            stream: Tracked::new(stream, permit),
            peer,
            idle_timeout: limits.idle_timeout,
            stop: stop_rx.clone(),
        };
        tokio::spawn(connection.run());
    }
    drop(listener);
    drop(stop_rx);
    // Tell every connection to finish, then wait until their tasks (each holds a receiver)
    // have ended.
    let _ = stop_tx.send(());
    stop_tx.closed().await;
    Ok(())
}

/// True (and remembers now) when the last time was long enough ago to log again.
fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < LIMIT_LOG_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// Errors about one connection, not about the listener: accept the next one at once.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what it needs.
struct Connection {
    builder: http1::Builder,
    router: Router,
    stream: Tracked,
    peer: SocketAddr,
    idle_timeout: Duration,
    stop: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self) {
        let peer = self.peer;
        let activity = self.stream.activity.clone();
        let service = self
            .router
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(self.stream), TowerToHyperService::new(service))
            .with_upgrades();
        let mut conn = pin!(conn);
        // Once a graceful close has begun, the connection gets this long to finish the
        // response in flight; a client that never reads it (a stalled write, so no
        // activity) must not keep its socket and its connection slot for ever.
        let mut closing_deadline: Option<Instant> = None;
        loop {
            let idle_at = activity.last() + self.idle_timeout;
            let closing = closing_deadline.is_some();
            let hard_stop = closing_deadline.unwrap_or_else(Instant::now);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                    break;
                }
                _ = self.stop.changed(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing_deadline = Some(Instant::now() + self.idle_timeout);
                }
                () = tokio::time::sleep_until(idle_at.into()), if !closing => {
                    if activity.last().elapsed() >= self.idle_timeout {
                        tracing::debug!(%peer, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing_deadline = Some(Instant::now() + self.idle_timeout);
                    }
                }
                () = tokio::time::sleep_until(hard_stop.into()), if closing => {
                    tracing::debug!(%peer, "dropping a connection that did not finish closing");
                    break;
                }
            }
        }
    }
}

/// When a connection last read or wrote a byte.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A TCP stream that records its activity and holds a connection permit until dropped
/// (after a WebSocket upgrade too, since the upgraded socket keeps this stream).
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl Tracked {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            activity: Arc::new(Activity {
                start: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
            _permit: permit,
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
