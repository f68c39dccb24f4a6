//! `idle-ws`: many idle WebSocket connections and what they cost the server in memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::seed::register;
use super::ws::{Counters, connect_all, drain, stop, wait_quiet};
use super::{Outcome, Report, Sizes, Target, report};

/// `idle` members (distinct, sharing no context) each open one `/api/events` socket,
/// [`super::ws::CONNECT_CONCURRENCY`] handshakes at a time, and then stay quiet. Requests are
/// connections, latencies are handshakes, throughput is connections per second; a failed
/// handshake or a socket the server closed counts as an error. The server's RSS is read
/// after registering (before any socket) and once the connections have settled; the note
/// gives the difference per connection.
pub async fn idle_ws(
    client: &reqwest::Client,
    target: &Target,
    sizes: &Sizes,
) -> Result<Report, String> {
    let base = target.base();
    let count = sizes.idle.max(1);
    let members = register(client, base, "idle", count).await?;
    let tokens: Vec<String> = members.into_iter().map(|m| m.token).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_kib();

    let started = Instant::now();
    let (sockets, latencies, failed) = connect_all(base, &tokens).await;
    let elapsed = started.elapsed();
    let counters = Arc::new(Counters::default());
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| drain(socket, counters.clone()))
        .collect();
    let open = readers.len();
    // Each member's own `online` arrives on its socket; then nothing should.
    wait_quiet(
        &counters.frames,
        Duration::from_millis(500),
        Duration::from_secs(60),
    )
    .await;
    let after = target.rss_kib();
    let closed = counters.closed.load(Ordering::Relaxed);
    stop(&readers);

    let mut row = report(
        "idle-ws",
        "",
        Outcome {
            requests: count as u64,
            errors: failed + closed,
            elapsed,
            latencies,
        },
    );
    row.rss_kib = after;
    row.notes.push(match (before, after) {
        (Some(before), Some(after)) => format!(
            "idle-ws: server RSS {before} KiB before, {after} KiB with {open} idle connections: \
             {:.1} KiB per connection",
            (after as f64 - before as f64) / open.max(1) as f64
        ),
        _ => format!(
            "idle-ws: {open} idle connections; RSS per connection unknown (server not started \
             by the harness)"
        ),
    });
    Ok(row)
}
