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

impl Server {
    /// The server's data dir (its `server.key` is there unless `BRIGHTCHAT_SERVER_KEY` is
    /// set).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }
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

/// Spawns the `brightchat` binary at `bin` on a free loopback port with a fresh data dir
/// (SQLite), without waiting for it: returns the child, its base URL and the data dir, which
/// is removed when dropped.
pub fn spawn_server(
    bin: &std::path::Path,
    env: &[(&str, String)],
) -> std::io::Result<(Child, String, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let (child, base) = spawn_server_in(bin, env, dir.path())?;
    Ok((child, base, dir))
}

/// Spawns the `brightchat` binary at `bin` on a free loopback port with `data_dir`; `env`
/// comes last, so it may override the defaults set here.
pub fn spawn_server_in(
    bin: &std::path::Path,
    env: &[(&str, String)],
    data_dir: &std::path::Path,
) -> std::io::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(bin);
    command
        .env(
            "BRIGHTCHAT_LOG",
            std::env::var("BENCH_SERVER_LOG").unwrap_or("warn".into()),
        )
        .env("BRIGHTCHAT_WS_BUFFER", "4096")
        // Load runs register and write far faster than people: no rate limits unless the
        // caller sets them.
        .env("BRIGHTCHAT_RATE_AUTH", "0")
        .env("BRIGHTCHAT_RATE_WRITE", "0")
        // No plugins unless the caller names a folder (not the repository's ./plugins).
        .env("BRIGHTCHAT_PLUGINS_DIR", data_dir.join("plugins"));
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command
        .env("BRIGHTCHAT_DATA_DIR", data_dir)
        .env("BRIGHTCHAT_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

/// Starts the `brightchat` binary at `bin` and waits until `/healthz` answers.
pub async fn start_server_at(
    client: &reqwest::Client,
    bin: &std::path::Path,
    env: &[(&str, String)],
) -> Server {
    let (mut child, base, dir) = spawn_server(bin, env).expect("start brightchat");
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

/// Raises this process's soft limit on open files to its hard limit (a server it starts
/// inherits it) and returns the soft limit now in force. Thousands of WebSockets need it.
#[cfg(unix)]
pub fn raise_fd_limit() -> std::io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct it is given, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // An unlimited hard limit is not a valid soft limit for open files: stay at 2^20.
    let wanted = if limit.rlim_max == libc::RLIM_INFINITY {
        limit.rlim_cur.max(1 << 20)
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the rlimit struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.rlim_cur = wanted;
    }
    Ok(limit.rlim_cur)
}

/// Not raised on this platform; reports no limit.
#[cfg(not(unix))]
pub fn raise_fd_limit() -> std::io::Result<u64> {
    Ok(u64::MAX)
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

/// Registers and signs in a member; returns its token. Panics on any failure.
pub async fn member(client: &reqwest::Client, base: &str, name: String) -> String {
    match try_member(client, base, name).await {
        Ok(member) => member.token,
        Err(error) => panic!("member: {error}"),
    }
}

/// A signed-in member.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub token: String,
}

/// POSTs `body` and returns the JSON answer, or what went wrong (transport error, non-2xx
/// status with the body, or a body that is not JSON).
pub async fn try_post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Result<Value, String> {
    let mut request = client.post(&url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status} {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text}"))
}

/// Registers and signs in a member over the public API: register, challenge, signed login.
pub async fn try_member(
    client: &reqwest::Client,
    base: &str,
    name: String,
) -> Result<Member, String> {
    let key = loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
        if let Ok(key) = SigningKey::from_slice(&secret) {
            break key;
        }
    };
    let public = hex::encode(key.verifying_key().to_sec1_point(true).as_bytes());
    let registered = try_post(
        client,
        format!("{base}/api/members"),
        None,
        json!({"displayName": name, "publicKey": public}),
    )
    .await?;
    let id = registered["data"]["id"]
        .as_str()
        .ok_or_else(|| format!("no member id in {registered}"))?
        .to_owned();
    let challenge = try_post(
        client,
        format!("{base}/api/auth/challenge"),
        None,
        json!({"memberId": id}),
    )
    .await?;
    let challenge = challenge["data"]["challenge"]
        .as_str()
        .ok_or_else(|| format!("no challenge in {challenge}"))?
        .to_owned();
    let bytes = hex::decode(&challenge).map_err(|e| format!("challenge {challenge}: {e}"))?;
    let signature: k256::ecdsa::Signature = key.sign(&bytes);
    let login = try_post(
        client,
        format!("{base}/api/auth/login"),
        None,
        json!({"memberId": id, "challenge": challenge, "signature": hex::encode(signature.to_der().as_bytes())}),
    )
    .await?;
    let token = login["data"]["token"]
        .as_str()
        .ok_or_else(|| format!("no token in {login}"))?
        .to_owned();
    Ok(Member { id, token })
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
