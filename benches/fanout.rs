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

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::Signer;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_server(client: &reqwest::Client) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_brightchat"))
        .env("BRIGHTCHAT_DATA_DIR", dir.path())
        .env("BRIGHTCHAT_BIND", format!("127.0.0.1:{port}"))
        .env("BRIGHTCHAT_LOG", "warn")
        .env("BRIGHTCHAT_WS_BUFFER", "4096")
        .stdout(Stdio::null())
        .spawn()
        .expect("start brightchat");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Server {
                child,
                base,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    response.json().await.expect("json")
}

/// Registers and signs in a member; returns its token.
async fn member(client: &reqwest::Client, base: &str, name: String) -> String {
    let key = loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("random");
        if let Ok(key) = SigningKey::from_slice(&secret) {
            break key;
        }
    };
    let public = hex::encode(key.verifying_key().to_sec1_point(true).as_bytes());
    let registered = post(
        client,
        format!("{base}/api/members"),
        None,
        json!({"displayName": name, "publicKey": public}),
    )
    .await;
    let id = registered["data"]["id"].clone();
    let challenge = post(
        client,
        format!("{base}/api/auth/challenge"),
        None,
        json!({"memberId": id}),
    )
    .await;
    let challenge = challenge["data"]["challenge"]
        .as_str()
        .expect("challenge")
        .to_owned();
    let signature: k256::ecdsa::Signature = key.sign(&hex::decode(&challenge).expect("hex"));
    let login = post(
        client,
        format!("{base}/api/auth/login"),
        None,
        json!({"memberId": id, "challenge": challenge, "signature": hex::encode(signature.to_der().as_bytes())}),
    )
    .await;
    login["data"]["token"].as_str().expect("token").to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let subscribers = env_number("FANOUT_SUBSCRIBERS", 1000);
    let messages = env_number("FANOUT_MESSAGES", 50);
    let client = reqwest::Client::new();
    let server = start_server(&client).await;
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
