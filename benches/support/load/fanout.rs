//! `fanout`: one sender, `subscribers` WebSocket subscribers in one channel.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::try_post;
use super::seed::{SEED_CONCURRENCY, channel, register};
use super::ws::{Counters, connect_all, read, stop, wait_quiet};
use super::{Outcome, Report, Sizes, report};

/// Subscribers are distinct members (one member may hold only 20 sockets) in one channel.
/// Unless `fanout_online`, each sets its status offline before connecting, so connecting
/// thousands does not set off a presence storm (n² frames; `presence-wave` measures that).
/// Then sends one message at a time for the duration, waiting (up to 10 s) until every
/// subscriber has it. Requests are messages sent; a failed send or a frame some subscriber
/// never got counts as an error, and so does a subscriber that failed to connect or was
/// dropped; latencies are send → receipt, over every subscriber.
pub async fn fanout(client: &reqwest::Client, base: &str, sizes: &Sizes) -> Result<Report, String> {
    let subscribers = sizes.subscribers.max(1);
    let mut members = register(client, base, "fan", subscribers + 1).await?;
    let id = channel(client, base, "load-fanout", &members).await?;
    let sender = members.remove(0);
    if !sizes.fanout_online {
        appear_offline(client, base, &members).await?;
    }

    let tokens: Vec<String> = members.into_iter().map(|m| m.token).collect();
    let (sockets, _, failed) = connect_all(base, &tokens).await;
    let receipts: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(Counters::default());
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let receipts = receipts.clone();
            read(socket, counters.clone(), move |text, at| {
                if text.contains("communication:message_sent") {
                    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                    if let Some(id) = value["data"]["id"].as_str() {
                        receipts
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((id.to_owned(), at));
                    }
                }
            })
        })
        .collect();
    let connected = readers.len();
    // Let the events from the connections (presence, if any) pass before measuring.
    wait_quiet(
        &counters.frames,
        Duration::from_millis(300),
        Duration::from_secs(120),
    )
    .await;

    let received = |receipts: &Mutex<Vec<(String, Instant)>>| {
        receipts.lock().unwrap_or_else(|p| p.into_inner()).len()
    };
    let mut sent_at = HashMap::new();
    let mut requests = 0u64;
    let mut errors = failed;
    let started = Instant::now();
    while started.elapsed() < sizes.duration {
        let before = received(&receipts);
        let at = Instant::now();
        requests += 1;
        let sent = try_post(
            client,
            format!("{base}/api/channels/{id}/messages"),
            Some(&sender.token),
            json!({"content": format!("fanout {requests}")}),
        )
        .await;
        let Some(message) = sent
            .ok()
            .and_then(|v| v["data"]["id"].as_str().map(str::to_owned))
        else {
            errors += 1;
            continue;
        };
        sent_at.insert(message, at);
        let deadline = Instant::now() + Duration::from_secs(10);
        while received(&receipts) < before + connected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let elapsed = started.elapsed();
    errors += counters.closed.load(Ordering::Relaxed);
    stop(&readers);
    let receipts = receipts.lock().unwrap_or_else(|p| p.into_inner());
    let latencies: Vec<Duration> = receipts
        .iter()
        .filter_map(|(id, at)| sent_at.get(id).map(|start| at.duration_since(*start)))
        .collect();
    let expected = sent_at.len() * connected;
    errors += expected.saturating_sub(latencies.len()) as u64;
    Ok(report(
        "fanout",
        "",
        Outcome {
            requests,
            errors,
            elapsed,
            latencies,
        },
    ))
}

/// `PUT /api/presence {"status":"offline"}` for each member, concurrently.
async fn appear_offline(
    client: &reqwest::Client,
    base: &str,
    members: &[super::super::Member],
) -> Result<(), String> {
    use futures_util::StreamExt;
    let mut pending = futures_util::stream::iter(members.iter().map(|member| async move {
        let url = format!("{base}/api/presence");
        let response = client
            .put(&url)
            .bearer_auth(&member.token)
            .json(&json!({"status": "offline"}))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("{url}: {}", response.status()))
        }
    }))
    .buffer_unordered(SEED_CONCURRENCY);
    while let Some(done) = pending.next().await {
        done?;
    }
    Ok(())
}
