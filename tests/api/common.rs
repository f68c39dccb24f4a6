//! The test harness: a server on a free port, a fresh database, and members who can
//! sign in and decrypt what they are shown.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use brightchat::Config;
use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::Signer;
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use uuid::Uuid;

/// A running server with its own database.
pub struct TestServer {
    pub base: String,
    /// The settings it runs with (a second server on the same database can reuse them).
    pub config: Config,
    pub client: reqwest::Client,
    pub state: brightchat::AppState,
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

/// A registered, signed-in member with its private key.
#[derive(Clone)]
pub struct TestMember {
    pub id: Uuid,
    pub secret: [u8; 32],
    pub public_hex: String,
    pub token: String,
}

/// An HTTP answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// `data` of a success envelope, after checking the status and envelope.
    #[track_caller]
    pub fn data(&self, expected: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status, body: {}",
            self.body
        );
        assert_eq!(
            self.body["status"], "success",
            "not a success envelope: {}",
            self.body
        );
        assert!(
            self.body["message"].is_string(),
            "envelope without message: {}",
            self.body
        );
        &self.body["data"]
    }

    /// Checks an error envelope with this status and code.
    #[track_caller]
    pub fn error(&self, expected: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status, body: {}",
            self.body
        );
        assert_eq!(
            self.body["status"], "error",
            "not an error envelope: {}",
            self.body
        );
        assert_eq!(
            self.body["error"]["code"], code,
            "wrong code: {}",
            self.body
        );
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without message: {}",
            self.body
        );
    }
}

/// A fresh secp256k1 key pair: (secret, compressed public key hex).
pub fn new_keypair() -> ([u8; 32], String) {
    loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("random");
        if let Ok(key) = SigningKey::from_slice(&secret) {
            let public = key.verifying_key().to_sec1_point(true);
            return (secret, hex::encode(public.as_bytes()));
        }
    }
}

/// Signs `challenge` bytes (ECDSA over SHA-256), DER-encoded, hex.
pub fn sign_der(secret: &[u8; 32], challenge: &[u8]) -> String {
    let key = SigningKey::from_slice(secret).expect("key");
    let signature: k256::ecdsa::Signature = key.sign(challenge);
    hex::encode(signature.to_der().as_bytes())
}

/// Signs `challenge` bytes, compact `r || s`, hex.
pub fn sign_compact(secret: &[u8; 32], challenge: &[u8]) -> String {
    let key = SigningKey::from_slice(secret).expect("key");
    let signature: k256::ecdsa::Signature = key.sign(challenge);
    hex::encode(signature.to_bytes())
}

/// Decrypts an `encryptedContent` (base64 ECIES) with a member's secret key.
pub fn decrypt_dm(secret: &[u8; 32], encrypted_content: &Value) -> String {
    let bytes = STANDARD
        .decode(
            encrypted_content
                .as_str()
                .expect("encryptedContent is a string"),
        )
        .expect("encryptedContent is base64");
    let plain = ecies::decrypt(secret, &bytes).expect("the reader can decrypt its copy");
    String::from_utf8(plain).expect("utf-8")
}

/// Server logs in test output (errors only unless `BRIGHTCHAT_LOG` says otherwise), so a
/// failing test shows what the server logged.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRIGHTCHAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The PostgreSQL server to test against, if any.
/// Turns the rate limits off: most tests register and write far faster than a person.
/// `tests/api/rate_limits.rs` sets them back on where it tests them.
pub fn unlimited(config: &mut Config) {
    config.rate_auth = 0;
    config.rate_write = 0;
}

pub fn test_database_url() -> Option<String> {
    std::env::var("BRIGHTCHAT_TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

/// Creates an empty PostgreSQL database for one test and returns its URL.
pub async fn fresh_postgres(admin_url: &str) -> String {
    let name = format!("bct_{}", Uuid::new_v4().simple());
    let admin = Database::connect(admin_url)
        .await
        .expect("connect to the test PostgreSQL server");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create a test database");
    admin.close().await.ok();
    replace_database(admin_url, &name)
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

impl TestServer {
    /// A server with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with settings changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut config = Config::with_data_dir(&data_dir);
        unlimited(&mut config);
        config.plugins_dir = dir.path().join("plugins");
        if let Some(admin_url) = test_database_url() {
            config.database_url = Some(fresh_postgres(&admin_url).await);
        }
        adjust(&mut config);
        Self::serve(config, dir, None).await
    }

    /// A server whose plugins folder starts with `files` (name, text), e.g.
    /// `("10_cap.rhai", "fn on_mute(ctx) { … }")` and `("10_cap.toml", "max_ms = 1")`.
    /// The folder is `plugins_dir()`; write to it to test hot reload.
    pub async fn start_with_plugins(
        files: &[(&str, &str)],
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("tempdir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugins dir");
        for (name, text) in files {
            std::fs::write(plugins.join(name), text).expect("write plugin");
        }
        let mut config = Config::with_data_dir(dir.path().join("data"));
        unlimited(&mut config);
        config.plugins_dir = plugins;
        if let Some(admin_url) = test_database_url() {
            config.database_url = Some(fresh_postgres(&admin_url).await);
        }
        adjust(&mut config);
        Self::serve(config, dir, None).await
    }

    /// The plugins folder this server loads from.
    pub fn plugins_dir(&self) -> PathBuf {
        self.config.plugins_dir.clone()
    }

    /// A server whose connection handling logs to `log` (to check what it logs).
    pub async fn start_logged(adjust: impl FnOnce(&mut Config), log: tracing::Dispatch) -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::with_data_dir(dir.path().join("data"));
        unlimited(&mut config);
        config.plugins_dir = dir.path().join("plugins");
        if let Some(admin_url) = test_database_url() {
            config.database_url = Some(fresh_postgres(&admin_url).await);
        }
        adjust(&mut config);
        Self::serve(config, dir, Some(log)).await
    }

    /// A server whose search index is `index` (a backend the test controls).
    pub async fn start_with_index(
        adjust: impl FnOnce(&mut Config),
        index: std::sync::Arc<dyn brightchat::search::SearchIndex>,
    ) -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::with_data_dir(dir.path().join("data"));
        unlimited(&mut config);
        config.plugins_dir = dir.path().join("plugins");
        if let Some(admin_url) = test_database_url() {
            config.database_url = Some(fresh_postgres(&admin_url).await);
        }
        adjust(&mut config);
        let app = brightchat::build_with_index(config.clone(), index)
            .await
            .expect("the app builds");
        Self::serve_app(config, dir, None, app).await
    }

    /// Another node on the same database with the same server key, as after a restart: its
    /// data dir (and so its embedded search index) is its own and starts empty.
    pub async fn restart(&self) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = self.config.clone();
        config.database_url = Some(self.config.effective_database_url());
        config.server_key_hex = Some(hex::encode(self.state.server_key.secret_bytes()).into());
        config.data_dir = dir.path().join("data");
        Self::serve(config, dir, None).await
    }

    /// A server with exactly `config` (its data dir is the caller's; `dir` is kept alive).
    pub async fn start_config(config: Config, dir: tempfile::TempDir) -> Self {
        init_logging();
        Self::serve(config, dir, None).await
    }

    async fn serve(config: Config, dir: tempfile::TempDir, log: Option<tracing::Dispatch>) -> Self {
        let app = brightchat::build(config.clone())
            .await
            .expect("the app builds");
        Self::serve_app(config, dir, log, app).await
    }

    async fn serve_app(
        config: Config,
        dir: tempfile::TempDir,
        log: Option<tracing::Dispatch>,
        app: brightchat::App,
    ) -> Self {
        let data_dir = config.data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Every test goes through the real serving stack (timeouts, connection cap).
        let serving = config.clone();
        let serve = async move {
            brightchat::serve_listener(listener, app.router, &serving, std::future::pending())
                .await
                .ok();
        };
        match log {
            Some(log) => {
                use tracing::instrument::WithSubscriber;
                tokio::spawn(serve.with_subscriber(log))
            }
            None => tokio::spawn(serve),
        };
        Self {
            config,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            state: app.state,
            data_dir,
            _dir: dir,
        }
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        Answer { status, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::DELETE, path, token, None).await
    }

    /// Sends a raw body with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        Answer { status, body }
    }

    /// Registers a member without signing in.
    pub async fn register_only(&self, name: &str) -> (Uuid, [u8; 32], String) {
        let (secret, public_hex) = new_keypair();
        let answer = self
            .post(
                "/api/members",
                None,
                json!({"displayName": name, "publicKey": public_hex}),
            )
            .await;
        let id = answer.data(201)["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid");
        (id, secret, public_hex)
    }

    /// Signs in with the challenge flow and returns the token.
    pub async fn sign_in(&self, id: Uuid, secret: &[u8; 32]) -> String {
        let challenge = self
            .post("/api/auth/challenge", None, json!({"memberId": id}))
            .await;
        let challenge = challenge.data(200)["challenge"]
            .as_str()
            .expect("challenge")
            .to_owned();
        let signature = sign_der(secret, &hex::decode(&challenge).expect("hex"));
        let login = self
            .post(
                "/api/auth/login",
                None,
                json!({"memberId": id, "challenge": challenge, "signature": signature}),
            )
            .await;
        login.data(200)["token"].as_str().expect("token").to_owned()
    }

    /// Registers and signs in a member.
    pub async fn member(&self, name: &str) -> TestMember {
        let (id, secret, public_hex) = self.register_only(name).await;
        let token = self.sign_in(id, &secret).await;
        TestMember {
            id,
            secret,
            public_hex,
            token,
        }
    }

    /// Sends a direct message and returns the message as the sender sees it.
    pub async fn dm(&self, from: &TestMember, to: &TestMember, content: &str) -> Value {
        self.post(
            "/api/conversations",
            Some(&from.token),
            json!({"recipientId": to.id, "content": content}),
        )
        .await
        .data(201)
        .clone()
    }
}

/// The epoch keys a member holds in a group or channel, unwrapped with its own secret key.
pub async fn member_keys(
    server: &TestServer,
    member: &TestMember,
    base: &str,
) -> std::collections::HashMap<i64, [u8; 32]> {
    let answer = server
        .get(&format!("{base}/keys?limit=100"), Some(&member.token))
        .await;
    let mut keys = std::collections::HashMap::new();
    for item in answer.data(200)["items"].as_array().expect("items") {
        let wrapped = STANDARD
            .decode(item["encryptedKey"].as_str().expect("encryptedKey"))
            .expect("base64");
        let key = ecies::decrypt(&member.secret, &wrapped).expect("the member unwraps its key");
        keys.insert(
            item["epoch"].as_i64().expect("epoch"),
            key.try_into().expect("32 bytes"),
        );
    }
    keys
}

/// Writes `count` members and their memberships of `context` straight to the database, a
/// statement per `brightchat::db::ROWS_PER_STATEMENT` rows: role `member`, joined now,
/// entitled to keys from `key_epoch_from`. Their public keys are unique but not keys at all
/// (a SEC1 tag no parser accepts), so nothing can wrap a key for them: they are for members
/// a test never acts as. Returns their ids, oldest first.
pub async fn seed_members(
    server: &TestServer,
    context: Uuid,
    count: usize,
    key_epoch_from: i32,
) -> Vec<Uuid> {
    use entity::{context_member, member};
    use sea_orm::{EntityTrait, Set};
    let now = brightchat::time::now_ms();
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(brightchat::db::ROWS_PER_STATEMENT) {
        member::Entity::insert_many(chunk.iter().map(|id| {
            let mut key = vec![0x07];
            key.extend_from_slice(id.as_bytes());
            key.extend_from_slice(&[0; 16]);
            member::ActiveModel {
                id: Set(*id),
                display_name: Set("seeded".into()),
                public_key: Set(key),
                created_at: Set(now),
            }
        }))
        .exec_without_returning(&server.state.db.write)
        .await
        .expect("seeded members");
        context_member::Entity::insert_many(chunk.iter().map(|id| context_member::ActiveModel {
            context_id: Set(context),
            member_id: Set(*id),
            role: Set("member".into()),
            joined_at: Set(now),
            muted_until: Set(None),
            history_after: Set(None),
            key_epoch_from: Set(key_epoch_from),
        }))
        .exec_without_returning(&server.state.db.write)
        .await
        .expect("seeded memberships");
    }
    ids
}

/// Decrypts AES-256-GCM `nonce || ciphertext || tag` with AAD = the message id.
pub fn open_with(key: &[u8; 32], message_id: &str, encrypted: &Value) -> Option<String> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let data = STANDARD.decode(encrypted.as_str()?).ok()?;
    if data.len() < 28 {
        return None;
    }
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(key).ok()?;
    let nonce: [u8; 12] = data[..12].try_into().ok()?;
    let plain = cipher
        .decrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: &data[12..],
                aad: message_id.as_bytes(),
            },
        )
        .ok()?;
    String::from_utf8(plain).ok()
}

/// Decrypts a group or channel message with the reader's keys.
#[track_caller]
pub fn decrypt_message(keys: &std::collections::HashMap<i64, [u8; 32]>, message: &Value) -> String {
    let epoch = message["keyEpoch"].as_i64().expect("keyEpoch");
    let key = keys
        .get(&epoch)
        .unwrap_or_else(|| panic!("no key for epoch {epoch}"));
    open_with(
        key,
        message["id"].as_str().expect("id"),
        &message["encryptedContent"],
    )
    .expect("decrypts")
}

impl TestServer {
    /// Creates a group owned by `owner` with `members`; returns its id.
    pub async fn group(&self, owner: &TestMember, name: &str, members: &[&TestMember]) -> String {
        let ids: Vec<Uuid> = members.iter().map(|m| m.id).collect();
        let answer = self
            .post(
                "/api/groups",
                Some(&owner.token),
                json!({"name": name, "memberIds": ids}),
            )
            .await;
        answer.data(201)["id"].as_str().expect("id").to_owned()
    }

    /// Sends a group message and returns it.
    pub async fn group_message(&self, from: &TestMember, group: &str, content: &str) -> Value {
        self.post(
            &format!("/api/groups/{group}/messages"),
            Some(&from.token),
            json!({"content": content}),
        )
        .await
        .data(201)
        .clone()
    }

    /// Sets a member's role as `by`.
    pub async fn set_role(&self, by: &TestMember, group: &str, member: &TestMember, role: &str) {
        self.put(
            &format!("/api/groups/{group}/roles/{}", member.id),
            Some(&by.token),
            json!({"role": role}),
        )
        .await
        .data(200);
    }
}

impl TestServer {
    /// Creates a channel owned by `owner`; returns its id.
    pub async fn channel(
        &self,
        owner: &TestMember,
        name: &str,
        visibility: &str,
        history_visible: bool,
    ) -> String {
        let answer = self
            .post(
                "/api/channels",
                Some(&owner.token),
                json!({"name": name, "visibility": visibility, "topic": "A topic", "historyVisibleToNewMembers": history_visible}),
            )
            .await;
        answer.data(201)["id"].as_str().expect("id").to_owned()
    }

    /// `member` joins a public channel (200).
    pub async fn join(&self, member: &TestMember, channel: &str) {
        self.post(
            &format!("/api/channels/{channel}/join"),
            Some(&member.token),
            json!({}),
        )
        .await
        .data(200);
    }

    /// Creates an invite as `by` and returns its token.
    pub async fn invite(&self, by: &TestMember, channel: &str, body: Value) -> String {
        let answer = self
            .post(
                &format!("/api/channels/{channel}/invites"),
                Some(&by.token),
                body,
            )
            .await;
        answer.data(201)["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Brings `member` into a channel with a fresh invite made by `owner`.
    pub async fn invite_in(&self, owner: &TestMember, channel: &str, member: &TestMember) {
        let token = self.invite(owner, channel, json!({})).await;
        self.post(
            &format!("/api/channels/{channel}/invites/{token}/redeem"),
            Some(&member.token),
            json!({}),
        )
        .await
        .data(200);
    }

    /// Sends a channel message and returns it.
    pub async fn channel_message(&self, from: &TestMember, channel: &str, content: &str) -> Value {
        self.post(
            &format!("/api/channels/{channel}/messages"),
            Some(&from.token),
            json!({"content": content}),
        )
        .await
        .data(201)
        .clone()
    }
}

/// A WebSocket client of `/api/events`.
pub struct WsClient {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// The `seq` announced in the `ready` frame.
    pub ready_seq: i64,
}

impl TestServer {
    /// The WebSocket URL with `query`.
    pub fn ws_url(&self, query: &str) -> String {
        format!(
            "{}/api/events{query}",
            self.base.replacen("http://", "ws://", 1)
        )
    }

    /// Connects with `?token=` and waits for the `ready` frame.
    pub async fn ws(&self, member: &TestMember) -> WsClient {
        self.ws_query(&format!("?token={}", member.token)).await
    }

    /// Connects with the given query and waits for the `ready` frame.
    pub async fn ws_query(&self, query: &str) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(self.ws_url(query))
            .await
            .expect("connect");
        WsClient::ready(stream).await
    }
}

impl WsClient {
    /// Waits for the `ready` frame.
    pub async fn ready(
        stream: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Self {
        let mut client = Self {
            stream,
            ready_seq: 0,
        };
        let ready = client
            .next(std::time::Duration::from_secs(5))
            .await
            .expect("a ready frame");
        assert_eq!(ready["type"], "ready", "{ready}");
        client.ready_seq = ready["seq"].as_i64().expect("seq");
        client
    }

    /// The next JSON frame within `wait`, or `None`. Panics on a close frame.
    pub async fn next(&mut self, wait: std::time::Duration) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match frame.expect("a frame") {
                Message::Text(text) => {
                    return Some(serde_json::from_str(text.as_str()).expect("JSON frame"));
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Waits for the next frame that is not a presence change: the member's own presence
    /// (online when its first socket opens) arrives whenever the server publishes it, so a
    /// reply to a client frame may come after it.
    pub async fn reply(&mut self, wait: std::time::Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next(left).await?;
            if frame["type"] != "communication:presence_changed" {
                return Some(frame);
            }
        }
    }

    /// Waits (up to 5 s) for an event of `event_type`, skipping others; returns it.
    pub async fn expect(&mut self, event_type: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next(left).await {
                Some(frame) if frame["type"] == event_type => return frame,
                Some(_) => continue,
                None => panic!("no {event_type} within 5 s"),
            }
        }
    }

    /// Every frame arriving within `wait`.
    pub async fn drain(&mut self, wait: std::time::Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next(wait).await {
            frames.push(frame);
        }
        frames
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(
                frame.to_string().into(),
            ))
            .await
            .expect("send");
    }
}

impl TestServer {
    /// Runs a GraphQL operation; returns the whole response body.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        response.json().await.expect("a JSON response")
    }
}

/// The `extensions.code` of the first GraphQL error, if any.
pub fn gql_code(response: &Value) -> Option<String> {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

/// A private `redis-server` for one test, on a free port, without persistence; killed when
/// dropped.
pub struct RedisServer {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl RedisServer {
    /// Starts one, or `None` (with a note) when `redis-server` is not installed. Under CI
    /// (`CI=true`) a missing binary fails the test instead.
    pub async fn start() -> Option<Self> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("redis-server not found, and CI=true");
            }
            eprintln!("skipped: redis-server not found");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = Self { child: None, port };
        server.run().await;
        Some(server)
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (its data is gone: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its connections open and answers nothing,
    /// like a host that vanished without a reset.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: `kill` on the pid of a child this value owns and has not reaped.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        self.run().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TestServer {
    /// Another node of the same deployment: same database, server key and Redis, its own
    /// data dir.
    pub async fn peer(&self) -> TestServer {
        self.restart().await
    }

    /// Waits (up to 10 s) until this node is subscribed to Redis.
    pub async fn until_cluster_healthy(&self) {
        let cluster = self.state.cluster.as_ref().expect("a node with Redis");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cluster.healthy() {
            assert!(
                std::time::Instant::now() < deadline,
                "not subscribed to Redis within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
