//! Fan-out benchmark: one channel message to N connected WebSocket subscribers.
//!
//! Starts the `brightchat` binary on a free loopback port with a fresh data dir (SQLite),
//! registers N members who join one public channel and connect to `/api/events`, then sends
//! messages one at a time and prints the latency from sending to receipt (p50, p99, max)
//! over every subscriber and message, and the server's resident memory per idle connection.
//!
//!     cargo bench --bench fanout                     # 1,000 subscribers, 50 messages
//!     FANOUT_SUBSCRIBERS=200 FANOUT_MESSAGES=20 cargo bench --bench fanout
//!
//! It sends traffic only to 127.0.0.1 and stops by itself.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{env_number, member, percentile, post, rss_kib, start_server};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() {
    let subscribers = env_number("FANOUT_SUBSCRIBERS", 1000);
    let messages = env_number("FANOUT_MESSAGES", 50);
    let client = reqwest::Client::new();
    let server = start_server(&client, &[]).await;
    let base = server.base.clone();
    let pid = server.child.id();
    println!("fan-out: {subscribers} subscribers, {messages} messages, SQLite, server pid {pid}");

    let owner = member(&client, &base, "owner".into()).await;
    let channel = post(
        &client,
        format!("{base}/api/channels"),
        Some(&owner),
        json!({"name": "fanout", "visibility": "public"}),
    )
    .await;
    let channel = channel["data"]["id"]
        .as_str()
        .expect("channel id")
        .to_owned();

    let setup = Instant::now();
    let mut tokens = Vec::with_capacity(subscribers);
    let mut pending = futures_util::stream::iter((0..subscribers).map(|i| {
        let client = client.clone();
        let base = base.clone();
        let channel = channel.clone();
        async move {
            let token = member(&client, &base, format!("m{i}")).await;
            post(
                &client,
                format!("{base}/api/channels/{channel}/join"),
                Some(&token),
                json!({}),
            )
            .await;
            token
        }
    }))
    .buffer_unordered(16);
    while let Some(token) = pending.next().await {
        tokens.push(token);
    }
    println!(
        "setup: {} members joined in {:.1?}",
        tokens.len(),
        setup.elapsed()
    );

    let rss_before = rss_kib(pid);
    let ws_base = base.replacen("http://", "ws://", 1);
    let receipts: Arc<Mutex<Vec<(String, Instant)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(subscribers * messages)));
    let frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut connected = 0;
    for token in &tokens {
        let (stream, _) =
            tokio_tungstenite::connect_async(format!("{ws_base}/api/events?token={token}"))
                .await
                .expect("connect");
        let receipts = receipts.clone();
        let frames = frames.clone();
        tokio::spawn(async move {
            let (_, mut read) = stream.split();
            while let Some(Ok(frame)) = read.next().await {
                if let Message::Text(text) = frame {
                    let at = Instant::now();
                    frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if text.contains("communication:message_sent") {
                        let value: Value =
                            serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        if let Some(id) = value["data"]["id"].as_str() {
                            receipts.lock().await.push((id.to_owned(), at));
                        }
                    }
                }
            }
        });
        connected += 1;
    }
    // Every connection announces its member online to everyone sharing the channel: wait
    // until that storm of presence events has passed before measuring.
    let storm = Instant::now();
    let mut quiet_since = Instant::now();
    let mut seen = frames.load(std::sync::atomic::Ordering::Relaxed);
    while quiet_since.elapsed() < Duration::from_secs(1)
        && storm.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = frames.load(std::sync::atomic::Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
    println!(
        "connect storm: {seen} presence frames delivered, settled after {:.1?}",
        storm.elapsed().saturating_sub(Duration::from_secs(1))
    );
    let rss_after = rss_kib(pid);
    println!(
        "memory: server RSS {} KiB before, {} KiB with {connected} idle connections: {:.1} KiB per connection",
        rss_before,
        rss_after,
        (rss_after.saturating_sub(rss_before)) as f64 / connected.max(1) as f64
    );

    let mut sent_at = std::collections::HashMap::new();
    let mut fanout_spans = Vec::new();
    for i in 0..messages {
        let before = receipts.lock().await.len();
        let started = Instant::now();
        let sent = post(
            &client,
            format!("{base}/api/channels/{channel}/messages"),
            Some(&owner),
            json!({"content": format!("message {i}")}),
        )
        .await;
        let id = sent["data"]["id"].as_str().expect("message id").to_owned();
        sent_at.insert(id, started);
        // Wait until every subscriber has it (or 10 s pass).
        let deadline = Instant::now() + Duration::from_secs(10);
        while receipts.lock().await.len() < before + subscribers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        fanout_spans.push(started.elapsed());
    }
    let receipts = receipts.lock().await;
    let mut latencies: Vec<Duration> = receipts
        .iter()
        .filter_map(|(id, at)| sent_at.get(id).map(|start| at.duration_since(*start)))
        .collect();
    latencies.sort();
    fanout_spans.sort();
    println!(
        "delivered: {} of {} frames",
        latencies.len(),
        subscribers * messages
    );
    println!(
        "latency send->receipt: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "time to reach all subscribers per message: p50 {:.2?}  p99 {:.2?}",
        percentile(&fanout_spans, 0.50),
        percentile(&fanout_spans, 0.99)
    );
}
