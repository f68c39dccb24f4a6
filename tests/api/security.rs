//! Security properties that span paths (issue 14): who may post (typing included), what
//! sign-out ends, what an invisible channel shows an outsider, what the data files hold,
//! and what a refused write leaves behind.
//!
//! Where other modules already cover a part (the visibility table in
//! `channel_visibility.rs`, the GraphQL socket's close codes in `hardening_gql`, the limits
//! themselves in `rate_limits.rs`), these tests check what those do not: the same answer
//! as for a channel that does not exist, every path at once, nothing half-done.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::common::{TestServer, WsClient, member_keys, test_database_url};
use crate::hardening_gql::{Frame, Gql, MODERN};

/// The frames of `types` among those arriving within `wait`.
async fn frames_of(ws: &mut WsClient, wait: Duration, types: &[&str]) -> Vec<Value> {
    ws.drain(wait)
        .await
        .into_iter()
        .filter(|f| types.iter().any(|t| f["type"] == *t))
        .collect()
}

fn typing(kind: &str, context_type: &str, context_id: impl std::fmt::Display) -> Value {
    json!({"type": kind, "contextType": context_type, "contextId": context_id.to_string()})
}

/// Reads the socket until the server closes it (or `wait` passes); the close code.
async fn close_code(ws: &mut WsClient, wait: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.stream.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return Some(1006),
        }
    }
}

#[tokio::test]
async fn muted_members_and_blocked_participants_cannot_type() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let group = server.group(&ada, "Team", &[&bob]).await;
    let conversation = server.dm(&ada, &bob, "hello").await["conversationId"]
        .as_str()
        .expect("conversationId")
        .to_owned();
    let mut ada_ws = server.ws(&ada).await;
    let mut bob_ws = server.ws(&bob).await;

    // A muted member is refused like its send, and nothing reaches the others.
    server
        .post(
            &format!("/api/groups/{group}/mute/{}", bob.id),
            Some(&ada.token),
            json!({"durationMs": 60_000}),
        )
        .await
        .data(200);
    let send = server
        .post(
            &format!("/api/groups/{group}/messages"),
            Some(&bob.token),
            json!({"content": "let me speak"}),
        )
        .await;
    send.error(403, "FORBIDDEN");
    bob_ws.send(typing("typing_start", "group", &group)).await;
    let refused = bob_ws.expect("error").await;
    assert_eq!(refused["error"]["code"], "FORBIDDEN", "{refused}");
    assert_eq!(refused["error"]["message"], send.body["error"]["message"]);
    let seen = frames_of(
        &mut ada_ws,
        Duration::from_millis(500),
        &["communication:typing_start"],
    )
    .await;
    assert!(seen.is_empty(), "a muted member's typing arrived: {seen:?}");
    // Unmuted, it types again.
    server
        .delete(
            &format!("/api/groups/{group}/mute/{}", bob.id),
            Some(&ada.token),
        )
        .await
        .data(200);
    bob_ws.send(typing("typing_start", "group", &group)).await;
    assert_eq!(
        ada_ws.expect("communication:typing_start").await["data"]["memberId"],
        bob.id.to_string()
    );

    // Bob blocks Ada: her typing is refused exactly as her message is, and never reaches
    // him; his typing (he blocked, he is not blocked) still reaches her.
    server
        .post(
            &format!("/api/members/{}/block", ada.id),
            Some(&bob.token),
            json!({}),
        )
        .await
        .data(200);
    let send = server
        .post(
            "/api/conversations",
            Some(&ada.token),
            json!({"recipientId": bob.id, "content": "are you there?"}),
        )
        .await;
    send.error(404, "NOT_FOUND");
    ada_ws
        .send(typing("typing_start", "conversation", &conversation))
        .await;
    let refused = ada_ws.expect("error").await;
    assert_eq!(refused["error"], send.body["error"], "{refused}");
    let seen = frames_of(
        &mut bob_ws,
        Duration::from_millis(500),
        &["communication:typing_start"],
    )
    .await;
    assert!(
        seen.is_empty(),
        "a blocked member's typing arrived: {seen:?}"
    );
    bob_ws
        .send(typing("typing_start", "conversation", &conversation))
        .await;
    assert_eq!(
        ada_ws.expect("communication:typing_start").await["data"]["memberId"],
        bob.id.to_string()
    );
}

#[tokio::test]
async fn repeated_typing_starts_are_delivered_once_per_window() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let channel = server.channel(&ada, "typing", "public", true).await;
    server.join(&bob, &channel).await;
    let mut ada_ws = server.ws(&ada).await;
    let mut bob_ws = server.ws(&bob).await;
    let kinds = ["communication:typing_start", "communication:typing_stop"];

    ada_ws
        .send(typing("typing_start", "channel", &channel))
        .await;
    bob_ws.expect("communication:typing_start").await;
    // Keystrokes within the window: accepted (no error), not delivered again.
    for _ in 0..3 {
        ada_ws
            .send(typing("typing_start", "channel", &channel))
            .await;
    }
    let seen = frames_of(&mut bob_ws, Duration::from_millis(600), &kinds).await;
    assert!(seen.is_empty(), "repeats were delivered: {seen:?}");
    let errors = frames_of(&mut ada_ws, Duration::from_millis(100), &["error"]).await;
    assert!(errors.is_empty(), "repeats are not errors: {errors:?}");
    // A stop always passes and ends the window: the next start is delivered at once.
    ada_ws
        .send(typing("typing_stop", "channel", &channel))
        .await;
    bob_ws.expect("communication:typing_stop").await;
    ada_ws
        .send(typing("typing_start", "channel", &channel))
        .await;
    let seen = frames_of(&mut bob_ws, Duration::from_millis(600), &kinds).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "communication:typing_start");
}

#[tokio::test]
async fn signing_out_ends_rest_and_both_sockets_at_once() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;

    // Sockets are closed at once, not at the next periodic re-check (every 2 s). No frame
    // is sent after the sign-out: it would race the close (a write after the server has
    // closed can reset the connection before the close frame is read). The event socket
    // also re-checks the token on every typing or presence frame, for a sign-out it was
    // not told of.
    let mut events = server.ws(&ada).await;
    let mut gql = Gql::signed_in(&server, MODERN, &ada.token).await;
    gql.subscribe("before", "{ me { displayName } }").await;
    assert_eq!(
        gql.next_for("before").await["payload"]["data"]["me"]["displayName"],
        "Ada"
    );
    server
        .delete("/api/auth/token", Some(&ada.token))
        .await
        .data(200);
    let signed_out = Instant::now();
    assert_eq!(
        close_code(&mut events, Duration::from_secs(5)).await,
        Some(4001)
    );
    // The GraphQL socket is told of the sign-out and closes without waiting for an
    // operation (one started on it before that would get UNAUTHORIZED, then the close).
    assert_eq!(gql.closed(Duration::from_secs(5)).await.0, Some(4403));
    assert!(
        signed_out.elapsed() < Duration::from_millis(1500),
        "refused at once, not at the next periodic check"
    );
    server
        .get("/api/members/me", Some(&ada.token))
        .await
        .error(401, "UNAUTHORIZED");
    let gql_http = server
        .graphql(Some(&ada.token), "{ me { id } }", json!({}))
        .await;
    assert_eq!(
        crate::common::gql_code(&gql_http).as_deref(),
        Some("UNAUTHORIZED")
    );
    // Idle sockets are closed too, both kinds, without doing anything, and at once: the
    // sign-out is announced to them, not found at the next periodic check (every 2 s).
    let token = server.sign_in(ada.id, &ada.secret).await;
    let mut idle_events = server.ws_query(&format!("?token={token}")).await;
    let mut idle_gql = Gql::signed_in(&server, MODERN, &token).await;
    idle_gql
        .subscribe(
            "1",
            "subscription { events(types: [\"communication:message_sent\"]) { type } }",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .delete("/api/auth/token", Some(&token))
        .await
        .data(200);
    let signed_out = Instant::now();
    assert_eq!(
        close_code(&mut idle_events, Duration::from_secs(5)).await,
        Some(4001)
    );
    assert_eq!(idle_gql.closed(Duration::from_secs(5)).await.0, Some(4403));
    assert!(
        signed_out.elapsed() < Duration::from_millis(1000),
        "idle sockets closed {:?} after the sign-out, not at once",
        signed_out.elapsed()
    );
}

/// Every route that takes a channel id, as an outsider may call it.
fn channel_routes(
    channel: &str,
    message: &str,
    member: Uuid,
) -> Vec<(Method, String, Option<Value>)> {
    let c = format!("/api/channels/{channel}");
    let m = format!("{c}/messages/{message}");
    vec![
        (Method::GET, c.clone(), None),
        (Method::GET, format!("{c}/members"), None),
        (Method::GET, format!("{c}/messages"), None),
        (
            Method::GET,
            format!("{c}/messages?direction=backward"),
            None,
        ),
        (
            Method::GET,
            format!("{c}/messages/search?query=zebracorn"),
            None,
        ),
        (Method::GET, format!("{c}/keys"), None),
        (Method::GET, format!("{c}/audit"), None),
        (Method::POST, format!("{c}/join"), Some(json!({}))),
        (Method::POST, format!("{c}/leave"), Some(json!({}))),
        (
            Method::POST,
            format!("{c}/invites/{}/redeem", "A".repeat(43)),
            Some(json!({})),
        ),
        (Method::POST, format!("{c}/invites"), Some(json!({}))),
        (
            Method::POST,
            format!("{c}/messages"),
            Some(json!({"content": "hi"})),
        ),
        (Method::PUT, m.clone(), Some(json!({"content": "hi"}))),
        (Method::DELETE, m.clone(), None),
        (
            Method::POST,
            format!("{m}/reactions"),
            Some(json!({"emoji": "👍"})),
        ),
        (
            Method::DELETE,
            format!("{m}/reactions/{}", Uuid::now_v7()),
            None,
        ),
        (Method::POST, format!("{m}/pin"), Some(json!({}))),
        (Method::DELETE, format!("{m}/pin"), None),
        (
            Method::POST,
            format!("{c}/mute/{member}"),
            Some(json!({"durationMs": 1000})),
        ),
        (Method::DELETE, format!("{c}/mute/{member}"), None),
        (Method::POST, format!("{c}/kick/{member}"), Some(json!({}))),
        (
            Method::PUT,
            format!("{c}/roles/{member}"),
            Some(json!({"role": "member"})),
        ),
        (Method::DELETE, format!("{c}/lock"), None),
        (Method::PUT, c.clone(), Some(json!({"topic": "mine"}))),
        (Method::DELETE, c, None),
    ]
}

/// GraphQL reads that take a channel id (`$id`).
const GQL_READS: [&str; 6] = [
    "query($id: UUID!) { channel(id: $id) { id name } }",
    "query($id: UUID!) { messages(kind: CHANNEL, contextId: $id) { items { id } } }",
    "query($id: UUID!) { searchMessages(channelId: $id, query: \"zebracorn\") { items { message { id } } } }",
    "query($id: UUID!) { keys(kind: CHANNEL, contextId: $id) { items { epoch } } }",
    "query($id: UUID!) { auditLog(kind: CHANNEL, contextId: $id) { items { action } } }",
    "mutation($id: UUID!) { joinChannel(channelId: $id) }",
];

/// Whatever `answer` says without the parts that name the request (GraphQL `path` and
/// `locations`), to compare answers about two ids.
fn gql_errors(answer: &Value) -> Value {
    let mut errors = answer["errors"].clone();
    if let Some(list) = errors.as_array_mut() {
        for error in list {
            if let Some(error) = error.as_object_mut() {
                error.remove("locations");
            }
        }
    }
    json!({"data": answer["data"], "errors": errors})
}

#[tokio::test]
async fn an_invisible_channel_leaks_nothing_to_an_outsider() {
    let server = TestServer::start().await;
    let owner = server.member("Owner").await;
    let insider = server.member("Insider").await;
    let outsider = server.member("Outsider").await;
    let hidden = server
        .channel(&owner, "hidden-room", "invisible", true)
        .await;
    let message = server
        .channel_message(&owner, &hidden, "zebracorn sightings tonight")
        .await;
    let message_id = message["id"].as_str().expect("id").to_owned();
    let missing = Uuid::now_v7().to_string();
    // The outsider's own public channel, with a message matching the same search.
    let open = server.channel(&outsider, "open-room", "public", true).await;
    server.channel_message(&outsider, &open, "zebracorn").await;

    // The outsider's sockets, open before anything else happens in the hidden channel.
    let mut events = server.ws(&outsider).await;
    let mut gql = Gql::signed_in(&server, MODERN, &outsider.token).await;
    gql.subscribe("all", "subscription { events { type contextId memberId } }")
        .await;
    // Asking for the channel's events by id gives nothing either.
    gql.subscribe(
        "hidden",
        &format!("subscription {{ events(contextId: \"{hidden}\") {{ type }} }}"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Every route answers as for a channel that does not exist: same status, same body.
    for ((method, path, body), (_, missing_path, _)) in
        channel_routes(&hidden, &message_id, owner.id)
            .into_iter()
            .zip(channel_routes(&missing, &message_id, owner.id))
    {
        let real = server
            .call(method.clone(), &path, Some(&outsider.token), body.clone())
            .await;
        let none = server
            .call(method.clone(), &missing_path, Some(&outsider.token), body)
            .await;
        assert_eq!(
            (real.status, &real.body),
            (none.status, &none.body),
            "{method} {path}"
        );
        assert_eq!(real.status.as_u16(), 404, "{method} {path}: {}", real.body);
    }
    for query in GQL_READS {
        let real = server
            .graphql(Some(&outsider.token), query, json!({"id": hidden}))
            .await;
        let none = server
            .graphql(Some(&outsider.token), query, json!({"id": missing}))
            .await;
        assert_eq!(gql_errors(&real), gql_errors(&none), "{query}");
        assert!(real["errors"].is_array(), "{query}: {real}");
    }

    // The insider comes in by invite, connects, types, talks; the owner edits the topic.
    server.invite_in(&owner, &hidden, &insider).await;
    let mut insider_ws = server.ws(&insider).await;
    insider_ws
        .send(typing("typing_start", "channel", &hidden))
        .await;
    server
        .channel_message(&insider, &hidden, "zebracorn again")
        .await;
    server
        .put(
            &format!("/api/channels/{hidden}"),
            Some(&owner.token),
            json!({"topic": "secret plans"}),
        )
        .await
        .data(200);
    drop(insider_ws);

    // Lists: absent from REST and GraphQL, on every page.
    let mut cursor = String::new();
    loop {
        let page = server
            .get(
                &format!("/api/channels?limit=1{cursor}"),
                Some(&outsider.token),
            )
            .await;
        let data = page.data(200);
        for item in data["items"].as_array().expect("items") {
            assert_ne!(item["id"], hidden.as_str(), "listed: {item}");
        }
        match data["cursor"].as_str() {
            Some(next) if data["hasMore"] == true => cursor = format!("&cursor={next}"),
            _ => break,
        }
    }
    let listed = server
        .graphql(
            Some(&outsider.token),
            "{ channels(page: {limit: 100}) { items { id } } }",
            json!({}),
        )
        .await;
    let items = listed["data"]["channels"]["items"]
        .as_array()
        .expect("items");
    assert!(items.iter().all(|c| c["id"] != hidden.as_str()), "{listed}");
    assert!(items.iter().any(|c| c["id"] == open.as_str()), "{listed}");
    // Search in the outsider's own channel finds its own message only.
    let hits = server
        .get(
            &format!("/api/channels/{open}/messages/search?query=zebracorn"),
            Some(&outsider.token),
        )
        .await;
    let hits = hits.data(200)["items"].clone();
    assert!(!hits.to_string().contains(&hidden), "{hits}");
    assert!(!hits.to_string().contains(&message_id), "{hits}");

    // Nothing about the channel or its members reached the outsider's sockets.
    let leaked = |frame: &Value| {
        let text = frame.to_string();
        text.contains(&hidden)
            || text.contains(&insider.id.to_string())
            || text.contains(&owner.id.to_string())
    };
    let frames = events.drain(Duration::from_millis(800)).await;
    let bad: Vec<&Value> = frames.iter().filter(|f| leaked(f)).collect();
    assert!(bad.is_empty(), "the event socket was told: {bad:?}");
    while let Some(frame) = gql.next(Duration::from_millis(300)).await {
        match frame {
            Frame::Json(value) => {
                assert!(!leaked(&value), "the GraphQL socket was told: {value}");
                assert_ne!(value["id"], "hidden", "{value}");
            }
            Frame::Closed(code, reason) => panic!("closed: {code:?} {reason}"),
        }
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The data files hold no message text and no raw key.
///
/// Sends a DM, a group and a channel message (and an edit, so the edit history holds a
/// version) with distinctive sentences, then reads every file under the data dir while the
/// server runs: the database with its WAL and shared memory (SQLite), the embedded search
/// index, anything else. None may hold a sentence, nor a context's 32-byte epoch key (raw,
/// hex or base64), nor the server's secret, except the server key file itself.
///
/// The search index keeps the *words* of channel messages as index terms by design
/// (docs/search.md "Privacy"), so single words would be found there; whole sentences
/// (several words in order) must not be. On PostgreSQL the database is not in the data dir:
/// the test then scans what is (the search index, the key file) and says so.
#[tokio::test]
async fn data_files_hold_no_message_text_nor_raw_keys() {
    let server = TestServer::start().await;
    if test_database_url().is_some() {
        eprintln!(
            "PostgreSQL: the database is not under the data dir; scanning the search index and key file only"
        );
    }
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let sentences = [
        "the walrus sings at midnight over copper hills",
        "quiet lanterns guard the orchard of forgotten keys",
        "seven violet kites drift above the harbour wall",
        "an amber tortoise counts the stars behind the mill",
        "the edited heron now naps beside a velvet canal",
    ];
    server.dm(&ada, &bob, sentences[0]).await;
    let group = server.group(&ada, "Vault", &[&bob]).await;
    server.group_message(&ada, &group, sentences[1]).await;
    let channel = server.channel(&ada, "vault", "public", true).await;
    server.channel_message(&ada, &channel, sentences[2]).await;
    let edited = server.channel_message(&ada, &channel, sentences[3]).await;
    server
        .put(
            &format!(
                "/api/channels/{channel}/messages/{}",
                edited["id"].as_str().expect("id")
            ),
            Some(&ada.token),
            json!({"content": sentences[4]}),
        )
        .await
        .data(200);
    // Wait until the search index holds the channel's messages.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let hits = server
            .get(
                &format!("/api/channels/{channel}/messages/search?query=heron"),
                Some(&ada.token),
            )
            .await;
        if !hits.data(200)["items"]
            .as_array()
            .expect("items")
            .is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the index never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut needles: Vec<(String, Vec<u8>)> = sentences
        .iter()
        .map(|s| (format!("text {s:?}"), s.as_bytes().to_vec()))
        .collect();
    for base in [
        format!("/api/groups/{group}"),
        format!("/api/channels/{channel}"),
    ] {
        for (epoch, key) in member_keys(&server, &ada, &base).await {
            let name = format!("{base} epoch {epoch} key");
            needles.push((format!("{name} (raw)"), key.to_vec()));
            needles.push((format!("{name} (hex)"), hex::encode(key).into_bytes()));
            needles.push((format!("{name} (HEX)"), hex::encode_upper(key).into_bytes()));
            needles.push((
                format!("{name} (base64)"),
                STANDARD.encode(key).into_bytes(),
            ));
        }
    }
    assert!(
        needles.len() > sentences.len(),
        "keys were found to look for"
    );
    let secret = *server.state.server_key.secret_bytes();
    let secret_needles = [
        ("server secret (raw)", secret.to_vec()),
        ("server secret (hex)", hex::encode(secret).into_bytes()),
    ];

    let key_file = server.data_dir.join("server.key");
    let files = files_under(&server.data_dir);
    assert!(!files.is_empty(), "the data dir holds files");
    let mut found = Vec::new();
    for file in &files {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        for (name, needle) in &needles {
            if contains(&bytes, needle) {
                found.push(format!("{}: {name}", file.display()));
            }
        }
        if *file != key_file {
            for (name, needle) in &secret_needles {
                if contains(&bytes, needle) {
                    found.push(format!("{}: {name}", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "found in the data files: {found:#?}");
    // The key file does hold the secret (so the scan would have seen it elsewhere).
    let key_text = std::fs::read_to_string(&key_file).expect("the server key file");
    assert!(key_text.contains(&hex::encode(secret)));
}

#[tokio::test]
async fn a_write_refused_for_its_rate_leaves_nothing_half_done() {
    let server = TestServer::start_with(|c| c.rate_write = 4).await;
    let ada = server.member("Ada").await;
    let carol = server.member("Carol").await;
    let dave = server.member("Dave").await;
    let mut ada_ws = server.ws(&ada).await;
    // Ada's four writes: a channel, an invite for one use, two messages.
    let channel = server.channel(&ada, "limited", "private", true).await;
    let invite = server.invite(&ada, &channel, json!({"maxUses": 1})).await;
    for text in ["one", "two"] {
        server.channel_message(&ada, &channel, text).await;
    }
    let refused = server
        .post(
            &format!("/api/channels/{channel}/messages"),
            Some(&ada.token),
            json!({"content": "three"}),
        )
        .await;
    refused.error(429, "RATE_LIMITED");
    let history = server
        .get(
            &format!("/api/channels/{channel}/messages"),
            Some(&ada.token),
        )
        .await;
    assert_eq!(
        history.data(200)["items"].as_array().expect("items").len(),
        2,
        "the refused message was not stored"
    );
    let sent = frames_of(
        &mut ada_ws,
        Duration::from_millis(600),
        &["communication:message_sent"],
    )
    .await;
    assert_eq!(sent.len(), 2, "no event for the refused message: {sent:?}");

    // Carol spends her budget, then her redemption is refused: the invite is not used up,
    // so Dave still redeems its one use, and Carol is not a member.
    for status in ["dnd", "idle", "online", "dnd"] {
        server
            .put(
                "/api/presence",
                Some(&carol.token),
                json!({"status": status}),
            )
            .await
            .data(200);
    }
    let redeem = format!("/api/channels/{channel}/invites/{invite}/redeem");
    server
        .post(&redeem, Some(&carol.token), json!({}))
        .await
        .error(429, "RATE_LIMITED");
    server
        .post(&redeem, Some(&dave.token), json!({}))
        .await
        .data(200);
    let members = server
        .get(
            &format!("/api/channels/{channel}/members"),
            Some(&ada.token),
        )
        .await;
    let ids: Vec<String> = members.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["memberId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(ids.contains(&dave.id.to_string()), "{ids:?}");
    assert!(!ids.contains(&carol.id.to_string()), "{ids:?}");
    let joined = frames_of(
        &mut ada_ws,
        Duration::from_millis(600),
        &["communication:member_joined"],
    )
    .await;
    assert_eq!(joined.len(), 1, "one join, Dave's: {joined:?}");
    assert_eq!(joined[0]["data"]["memberId"], dave.id.to_string());

    // A typing frame over Ada's budget is refused on her socket and reaches nobody.
    let mut dave_ws = server.ws(&dave).await;
    ada_ws
        .send(typing("typing_start", "channel", &channel))
        .await;
    assert_eq!(
        ada_ws.expect("error").await["error"]["code"],
        "RATE_LIMITED"
    );
    let seen = frames_of(
        &mut dave_ws,
        Duration::from_millis(500),
        &["communication:typing_start"],
    )
    .await;
    assert!(seen.is_empty(), "{seen:?}");
}
