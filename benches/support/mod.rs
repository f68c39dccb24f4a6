//! What the benchmarks share: starting the release binary on a free loopback port with a
//! fresh data dir, signing members in, and percentiles. Also included by the `load` example
//! and by the API tests (`load_smoke`), with `#[path]`.

#![allow(dead_code)]

pub mod load;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::Signer;
use serde_json::{Value, json};

pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub struct Server {
    pub child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts the `brightchat` binary Cargo built for this bench or test target.
pub async fn start_server(client: &reqwest::Client, env: &[(&str, String)]) -> Server {
    // Cargo sets it for benches and tests only; the `load` example uses start_server_at.
    let Some(bin) = option_env!("CARGO_BIN_EXE_brightchat") else {
        panic!("CARGO_BIN_EXE_brightchat is not set for this target: use start_server_at");
    };
    start_server_at(client, std::path::Path::new(bin), env).await
}

/// Starts the `brightchat` binary at `bin`.
pub async fn start_server_at(
    client: &reqwest::Client,
    bin: &std::path::Path,
    env: &[(&str, String)],
) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut command = Command::new(bin);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .env("BRIGHTCHAT_DATA_DIR", dir.path())
        .env("BRIGHTCHAT_BIND", format!("127.0.0.1:{port}"))
        .env(
            "BRIGHTCHAT_LOG",
            std::env::var("BENCH_SERVER_LOG").unwrap_or("warn".into()),
        )
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

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    response.json().await.expect("json")
}

/// Registers and signs in a member; returns its token.
pub async fn member(client: &reqwest::Client, base: &str, name: String) -> String {
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

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
