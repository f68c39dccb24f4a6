//! Load scenarios over the public HTTP API and WebSocket, against a server at `base`.
//!
//! Used by the `load` example (which prints the table) and by the API smoke test
//! (`tests/api/load_smoke.rs`, tiny sizes, asserts only completion without errors).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use super::{member, percentile, post};

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: [&str; 5] = ["channel-send", "dm-send", "history", "search", "fanout"];

/// How big a run is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Concurrent clients for the request scenarios.
    pub clients: usize,
    /// How long each scenario sends.
    pub duration: Duration,
    /// Members of the channel used by channel-send, history and search.
    pub members: usize,
    /// WebSocket subscribers for fanout.
    pub subscribers: usize,
}

/// What one scenario measured. `latencies` is sorted.
#[derive(Clone, Debug)]
pub struct Report {
    pub scenario: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Server RSS after the scenario, when the harness started the server.
    pub rss_kib: Option<u64>,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn p(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

/// Runs the scenario called `name` (one of [`SCENARIOS`]).
pub async fn run(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    sizes: &Sizes,
) -> Result<Report, String> {
    match name {
        "channel-send" => channel_send(client, base, sizes).await,
        "dm-send" => dm_send(client, base, sizes).await,
        "history" => history(client, base, sizes).await,
        "search" => search(client, base, sizes).await,
        "fanout" => fanout(client, base, sizes).await,
        other => Err(format!(
            "unknown scenario {other:?}; expected one of {}",
            SCENARIOS.join(", ")
        )),
    }
}

fn report(scenario: &'static str, outcome: Outcome) -> Report {
    let Outcome {
        requests,
        errors,
        elapsed,
        mut latencies,
    } = outcome;
    latencies.sort();
    Report {
        scenario,
        requests,
        errors,
        elapsed,
        latencies,
        rss_kib: None,
    }
}

struct Outcome {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Registers and signs in `count` members, 16 at a time; returns (token, member id).
async fn members(client: &reqwest::Client, base: &str, prefix: &str, count: usize) -> Vec<String> {
    futures_util::stream::iter((0..count).map(|i| {
        let name = format!("{prefix}{i}");
        async move { member(client, base, name).await }
    }))
    .buffered(16)
    .collect()
    .await
}

async fn member_id(client: &reqwest::Client, base: &str, token: &str) -> Result<String, String> {
    let me: Value = client
        .get(format!("{base}/api/members/me"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    me["data"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no member id in {me}"))
}

/// A public channel created by the first token and joined by the others; returns its id.
async fn channel(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    tokens: &[String],
) -> Result<String, String> {
    let created = post(
        client,
        format!("{base}/api/channels"),
        Some(&tokens[0]),
        json!({"name": name, "visibility": "public"}),
    )
    .await;
    let id = created["data"]["id"]
        .as_str()
        .ok_or_else(|| format!("channel not created: {created}"))?
        .to_owned();
    for token in &tokens[1..] {
        let response = client
            .post(format!("{base}/api/channels/{id}/join"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("join: {}", response.status()));
        }
    }
    Ok(id)
}

async fn seed_messages(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    tokens: &[String],
    count: usize,
) -> Result<(), String> {
    for i in 0..count {
        let token = &tokens[i % tokens.len()];
        let response = client
            .post(format!("{base}/api/channels/{channel}/messages"))
            .bearer_auth(token)
            .json(&json!({"content": format!("lighthouse harbour note {i}")}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("seed message: {}", response.status()));
        }
    }
    Ok(())
}

/// `clients` tasks each send `request(client_index, sequence)` back to back until `duration`
/// has passed; a transport error or a non-2xx status counts as an error.
async fn closed_loop<F>(
    client: &reqwest::Client,
    clients: usize,
    duration: Duration,
    request: F,
) -> Outcome
where
    F: Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        let request = request.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                let at = Instant::now();
                let ok = match request(&client, index, sequence).send().await {
                    Ok(response) => {
                        let success = response.status().is_success();
                        response.bytes().await.is_ok() && success
                    }
                    Err(_) => false,
                };
                latencies.push(at.elapsed());
                if !ok {
                    errors += 1;
                }
                sequence += 1;
            }
            (latencies, errors)
        }));
    }
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        match task.await {
            Ok((latencies, errors)) => {
                outcome.requests += latencies.len() as u64;
                outcome.errors += errors;
                outcome.latencies.extend(latencies);
            }
            Err(_) => outcome.errors += 1,
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

async fn channel_send(
    client: &reqwest::Client,
    base: &str,
    sizes: &Sizes,
) -> Result<Report, String> {
    let tokens = Arc::new(members(client, base, "send", sizes.members.max(1)).await);
    let id = channel(client, base, "load-send", &tokens).await?;
    let base = base.to_owned();
    let outcome = closed_loop(client, sizes.clients, sizes.duration, move |c, i, n| {
        c.post(format!("{base}/api/channels/{id}/messages"))
            .bearer_auth(&tokens[i % tokens.len()])
            .json(&json!({"content": format!("load {i}/{n}")}))
    })
    .await;
    Ok(report("channel-send", outcome))
}

async fn dm_send(client: &reqwest::Client, base: &str, sizes: &Sizes) -> Result<Report, String> {
    // Client 2k and 2k+1 are a pair, writing to each other.
    let count = sizes.clients.max(2).div_ceil(2) * 2;
    let tokens = members(client, base, "dm", count).await;
    let mut ids = Vec::with_capacity(count);
    for token in &tokens {
        ids.push(member_id(client, base, token).await?);
    }
    let tokens = Arc::new(tokens);
    let ids = Arc::new(ids);
    let base = base.to_owned();
    let outcome = closed_loop(client, sizes.clients, sizes.duration, move |c, i, n| {
        c.post(format!("{base}/api/conversations"))
            .bearer_auth(&tokens[i])
            .json(&json!({"recipientId": ids[i ^ 1], "content": format!("dm {i}/{n}")}))
    })
    .await;
    Ok(report("dm-send", outcome))
}

async fn history(client: &reqwest::Client, base: &str, sizes: &Sizes) -> Result<Report, String> {
    let tokens = Arc::new(members(client, base, "read", sizes.members.max(1)).await);
    let id = channel(client, base, "load-history", &tokens).await?;
    seed_messages(client, base, &id, &tokens, 60).await?;
    let base = base.to_owned();
    let outcome = closed_loop(client, sizes.clients, sizes.duration, move |c, i, _| {
        c.get(format!("{base}/api/channels/{id}/messages?limit=50"))
            .bearer_auth(&tokens[i % tokens.len()])
    })
    .await;
    Ok(report("history", outcome))
}

async fn search(client: &reqwest::Client, base: &str, sizes: &Sizes) -> Result<Report, String> {
    let tokens = Arc::new(members(client, base, "find", sizes.members.max(1)).await);
    let id = channel(client, base, "load-search", &tokens).await?;
    seed_messages(client, base, &id, &tokens, 60).await?;
    let base = base.to_owned();
    let outcome = closed_loop(client, sizes.clients, sizes.duration, move |c, i, n| {
        let query = if n % 2 == 0 { "lighthouse" } else { "harbour" };
        c.get(format!(
            "{base}/api/channels/{id}/messages/search?query={query}"
        ))
        .bearer_auth(&tokens[i % tokens.len()])
    })
    .await;
    Ok(report("search", outcome))
}

/// One sender, `subscribers` WebSocket subscribers: sends one message at a time for the
/// duration, waiting (up to 10 s) until every subscriber has it. Requests are messages sent;
/// a failed send or a frame some subscriber never got counts as an error; latencies are
/// send → receipt, over every subscriber.
async fn fanout(client: &reqwest::Client, base: &str, sizes: &Sizes) -> Result<Report, String> {
    let subscribers = sizes.subscribers.max(1);
    let mut tokens = members(client, base, "fan", subscribers + 1).await;
    let id = channel(client, base, "load-fanout", &tokens).await?;
    let sender = tokens.remove(0);

    let ws_base = base.replacen("http://", "ws://", 1);
    let receipts: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let frames = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(subscribers);
    for token in &tokens {
        let (stream, _) =
            tokio_tungstenite::connect_async(format!("{ws_base}/api/events?token={token}"))
                .await
                .map_err(|e| format!("connect: {e}"))?;
        let receipts = receipts.clone();
        let frames = frames.clone();
        readers.push(tokio::spawn(async move {
            let (_, mut read) = stream.split();
            while let Some(Ok(frame)) = read.next().await {
                if let Message::Text(text) = frame {
                    let at = Instant::now();
                    frames.fetch_add(1, Ordering::Relaxed);
                    if text.contains("communication:message_sent") {
                        let value: Value =
                            serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        if let Some(id) = value["data"]["id"].as_str() {
                            receipts.lock().await.push((id.to_owned(), at));
                        }
                    }
                }
            }
        }));
    }
    // Let the presence events from the connections pass before measuring.
    let storm = Instant::now();
    let mut quiet_since = Instant::now();
    let mut seen = frames.load(Ordering::Relaxed);
    while quiet_since.elapsed() < Duration::from_millis(300)
        && storm.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = frames.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }

    let mut sent_at = std::collections::HashMap::new();
    let mut requests = 0u64;
    let mut errors = 0u64;
    let started = Instant::now();
    while started.elapsed() < sizes.duration {
        let before = receipts.lock().await.len();
        let at = Instant::now();
        requests += 1;
        let sent = client
            .post(format!("{base}/api/channels/{id}/messages"))
            .bearer_auth(&sender)
            .json(&json!({"content": format!("fanout {requests}")}))
            .send()
            .await;
        let message = match sent {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["data"]["id"].as_str().map(str::to_owned)),
            _ => None,
        };
        let Some(message) = message else {
            errors += 1;
            continue;
        };
        sent_at.insert(message, at);
        let deadline = Instant::now() + Duration::from_secs(10);
        while receipts.lock().await.len() < before + subscribers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let elapsed = started.elapsed();
    for reader in &readers {
        reader.abort();
    }
    let receipts = receipts.lock().await;
    let latencies: Vec<Duration> = receipts
        .iter()
        .filter_map(|(id, at)| sent_at.get(id).map(|start| at.duration_since(*start)))
        .collect();
    let expected = sent_at.len() * subscribers;
    errors += expected.saturating_sub(latencies.len()) as u64;
    Ok(report(
        "fanout",
        Outcome {
            requests,
            errors,
            elapsed,
            latencies,
        },
    ))
}

/// The table the `load` example prints.
pub fn table(reports: &[Report]) -> String {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "{:<13} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>10}\n",
        "scenario", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "rss KiB"
    );
    for r in reports {
        out.push_str(&format!(
            "{:<13} {:>9} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>10}\n",
            r.scenario,
            r.requests,
            r.errors,
            r.throughput(),
            ms(r.p(0.50)),
            ms(r.p(0.95)),
            ms(r.p(0.99)),
            r.rss_kib.map_or("-".to_owned(), |k| k.to_string()),
        ));
    }
    out
}
