//! Crash safety: the real binary is killed (SIGKILL) while members send concurrently to a
//! channel, a group and a conversation, then started again on the same data dir (and the
//! same database on PostgreSQL). Every message that was answered 201 is there and
//! decrypts for its reader; nothing is half-written: history pages hold each message once,
//! every stored message decrypts, and a resume from `seq` 0 sees each stored message's
//! event exactly once and no event of a message that is not stored.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{
    Answer, TestMember, WsClient, decrypt_dm, decrypt_message, fresh_postgres, new_keypair,
    sign_der, test_database_url,
};

/// The binary, serving on a free port; killed when dropped.
struct Process {
    child: Child,
    base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts `brightchat serve` on `data_dir` (and `database`, if given) and waits until
    /// it answers `/readyz`.
    async fn start(data_dir: &Path, database: Option<&str>, log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_brightchat"));
        for (name, _) in std::env::vars() {
            if name.starts_with("BRIGHTCHAT_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .env("BRIGHTCHAT_DATA_DIR", data_dir)
            .env("BRIGHTCHAT_PLUGINS_DIR", data_dir.join("no-plugins"))
            .env("BRIGHTCHAT_BIND", format!("127.0.0.1:{port}"))
            .env("BRIGHTCHAT_RATE_AUTH", "0")
            .env("BRIGHTCHAT_RATE_WRITE", "0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"));
        if let Some(url) = database {
            command.env("BRIGHTCHAT_DATABASE_URL", url);
        }
        let process = Self {
            child: command.spawn().expect("the binary starts"),
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("{}/readyz", process.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return process;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not become ready: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

/// A client of a server in another process.
#[derive(Clone)]
struct Remote {
    base: String,
    client: reqwest::Client,
}

impl Remote {
    fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    async fn try_call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.try_call(Method::GET, path, Some(token), None)
            .await
            .expect("the server answers")
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.try_call(Method::POST, path, token, Some(body))
            .await
            .expect("the server answers")
    }

    async fn member(&self, name: &str) -> TestMember {
        let (secret, public_hex) = new_keypair();
        let answer = self
            .post(
                "/api/members",
                None,
                json!({"displayName": name, "publicKey": public_hex}),
            )
            .await;
        let id: Uuid = answer.data(201)["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid");
        let challenge = self
            .post("/api/auth/challenge", None, json!({"memberId": id}))
            .await;
        let challenge = challenge.data(200)["challenge"]
            .as_str()
            .expect("challenge")
            .to_owned();
        let signature = sign_der(&secret, &hex::decode(&challenge).expect("hex"));
        let login = self
            .post(
                "/api/auth/login",
                None,
                json!({"memberId": id, "challenge": challenge, "signature": signature}),
            )
            .await;
        let token = login.data(200)["token"].as_str().expect("token").to_owned();
        TestMember {
            id,
            secret,
            public_hex,
            token,
        }
    }

    /// The epoch keys `member` holds in the group or channel at `base`.
    async fn keys(&self, member: &TestMember, base: &str) -> HashMap<i64, [u8; 32]> {
        let answer = self
            .get(&format!("{base}/keys?limit=100"), &member.token)
            .await;
        let mut keys = HashMap::new();
        for item in answer.data(200)["items"].as_array().expect("items") {
            let wrapped = STANDARD
                .decode(item["encryptedKey"].as_str().expect("encryptedKey"))
                .expect("base64");
            let key = ecies::decrypt(&member.secret, &wrapped).expect("the member unwraps it");
            keys.insert(
                item["epoch"].as_i64().expect("epoch"),
                key.try_into().expect("32 bytes"),
            );
        }
        keys
    }

    /// Every page of `path` as `member`, in page order; each message id once, in order.
    async fn history(&self, member: &TestMember, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path}?limit=100&cursor={c}"),
                None => format!("{path}?limit=100"),
            };
            let page = self.get(&url, &member.token).await;
            let data = page.data(200).clone();
            items.extend(data["items"].as_array().expect("items").iter().cloned());
            if data["hasMore"] != true {
                break;
            }
            cursor = Some(data["cursor"].as_str().expect("cursor").to_owned());
        }
        let ids: Vec<Uuid> = items
            .iter()
            .map(|m| m["id"].as_str().expect("id").parse().expect("uuid"))
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] > w[1]) || ids.windows(2).all(|w| w[0] < w[1]),
            "{path}: pages in one order, each message once"
        );
        items
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Place {
    Channel,
    Group,
    Conversation,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_a_kill_and_nothing_is_half_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let database = match test_database_url() {
        Some(admin) => Some(fresh_postgres(&admin).await),
        None => None,
    };
    let first = Process::start(
        &data_dir,
        database.as_deref(),
        &dir.path().join("first.log"),
    )
    .await;
    let remote = Remote::new(&first.base);
    let ada = remote.member("Ada").await;
    let bob = remote.member("Bob").await;
    let cat = remote.member("Cat").await;
    let group = remote
        .post(
            "/api/groups",
            Some(&ada.token),
            json!({"name": "Crew", "memberIds": [bob.id, cat.id]}),
        )
        .await
        .data(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let channel = remote
        .post(
            "/api/channels",
            Some(&ada.token),
            json!({"name": "crash-room", "visibility": "public", "historyVisibleToNewMembers": true}),
        )
        .await
        .data(201)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for m in [&bob, &cat] {
        remote
            .post(
                &format!("/api/channels/{channel}/join"),
                Some(&m.token),
                json!({}),
            )
            .await
            .data(200);
    }

    // Six senders, two per place, until the server dies under them.
    let acked = Arc::new(AtomicUsize::new(0));
    let senders = [
        (ada.clone(), Place::Channel),
        (bob.clone(), Place::Channel),
        (ada.clone(), Place::Group),
        (cat.clone(), Place::Group),
        (ada.clone(), Place::Conversation),
        (bob.clone(), Place::Conversation),
    ];
    let mut tasks = Vec::new();
    for (n, (from, place)) in senders.into_iter().enumerate() {
        let remote = remote.clone();
        let acked = acked.clone();
        let (path, to) = match place {
            Place::Channel => (format!("/api/channels/{channel}/messages"), None),
            Place::Group => (format!("/api/groups/{group}/messages"), None),
            Place::Conversation => (
                "/api/conversations".to_owned(),
                Some(if from.id == ada.id { bob.id } else { ada.id }),
            ),
        };
        tasks.push(tokio::spawn(async move {
            let mut sent: Vec<(Place, String, String)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            for i in 0.. {
                if Instant::now() > deadline {
                    break;
                }
                let text = format!("sender {n} message {i}");
                let body = match to {
                    Some(to) => json!({"recipientId": to, "content": text}),
                    None => json!({"content": text}),
                };
                match remote
                    .try_call(Method::POST, &path, Some(&from.token), Some(body))
                    .await
                {
                    Ok(answer) if answer.status.as_u16() == 201 => {
                        let id = answer.body["data"]["id"].as_str().expect("id").to_owned();
                        sent.push((place, id, text));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    // Anything else is not acknowledged: the test only holds the server
                    // to what it answered 201.
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            sent
        }));
    }
    let started = Instant::now();
    while acked.load(Ordering::Relaxed) < 150 && started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("sender"));
    }
    assert!(
        acknowledged.len() >= 100,
        "only {} sent",
        acknowledged.len()
    );

    // The same data dir (server key, search index) and database.
    let second = Process::start(
        &data_dir,
        database.as_deref(),
        &dir.path().join("second.log"),
    )
    .await;
    let remote = Remote::new(&second.base);

    // What each place holds, decrypted by a member (Cat reads the channel and the group,
    // Bob the conversation): every stored message decrypts.
    let mut stored: HashMap<String, (Place, String)> = HashMap::new();
    let channel_base = format!("/api/channels/{channel}");
    let keys = remote.keys(&cat, &channel_base).await;
    for m in remote
        .history(&cat, &format!("{channel_base}/messages"))
        .await
    {
        let id = m["id"].as_str().expect("id").to_owned();
        stored.insert(id, (Place::Channel, decrypt_message(&keys, &m)));
    }
    let group_base = format!("/api/groups/{group}");
    let keys = remote.keys(&cat, &group_base).await;
    for m in remote
        .history(&cat, &format!("{group_base}/messages"))
        .await
    {
        let id = m["id"].as_str().expect("id").to_owned();
        stored.insert(id, (Place::Group, decrypt_message(&keys, &m)));
    }
    let conversations = remote.get("/api/conversations", &bob.token).await;
    let conversation = conversations.data(200)["items"][0]["id"]
        .as_str()
        .map(str::to_owned);
    if let Some(conversation) = conversation {
        let path = format!("/api/conversations/{conversation}/messages");
        for m in remote.history(&bob, &path).await {
            let id = m["id"].as_str().expect("id").to_owned();
            stored.insert(
                id,
                (
                    Place::Conversation,
                    decrypt_dm(&bob.secret, &m["encryptedContent"]),
                ),
            );
        }
    }
    for (place, id, text) in &acknowledged {
        assert_eq!(
            stored.get(id),
            Some(&(*place, text.clone())),
            "acknowledged message {id} ({place:?}) is stored as sent"
        );
    }

    // A resume from the start: each stored message's event exactly once, and no event of
    // a message that was not stored.
    let url = format!(
        "{}/api/events?token={}&resume=0",
        second.base.replacen("http://", "ws://", 1),
        bob.token
    );
    let (stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut events = WsClient::ready(stream).await;
    let mut seen = HashSet::new();
    let mut seqs = Vec::new();
    while let Some(frame) = events.next(Duration::from_secs(1)).await {
        if frame["type"] == "communication:message_sent" {
            let id = frame["data"]["id"].as_str().expect("id").to_owned();
            assert!(seen.insert(id.clone()), "the event of {id} once");
            assert!(
                stored.contains_key(&id),
                "an event for a stored message: {frame}"
            );
            seqs.push(frame["seq"].as_i64().expect("seq"));
        }
    }
    let missing: Vec<&String> = stored.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "stored messages without their event: {missing:?}"
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    eprintln!(
        "{} acknowledged, {} stored (the rest were committed but not yet answered at the kill)",
        acknowledged.len(),
        stored.len()
    );
    second.kill();
}
