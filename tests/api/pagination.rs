//! Cursor pagination of message history: forward and backward, limits, bad cursors, and
//! no gaps or repeats while new messages arrive.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use crate::common::{TestMember, TestServer, decrypt_dm};

async fn conversation_with(
    server: &TestServer,
    ada: &TestMember,
    bob: &TestMember,
    n: usize,
) -> String {
    let mut conversation = String::new();
    for i in 0..n {
        let sent = server.dm(ada, bob, &format!("message {i}")).await;
        conversation = sent["conversationId"].as_str().expect("id").to_owned();
    }
    conversation
}

fn texts(reader: &TestMember, page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| decrypt_dm(&reader.secret, &m["encryptedContent"]))
        .collect()
}

#[tokio::test]
async fn forward_pages_oldest_first() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let conversation = conversation_with(&server, &ada, &bob, 5).await;
    let base = format!("/api/conversations/{conversation}/messages");

    let first = server
        .get(&format!("{base}?limit=2"), Some(&bob.token))
        .await;
    let first = first.data(200).clone();
    assert_eq!(texts(&bob, &first), ["message 0", "message 1"]);
    assert_eq!(first["hasMore"], true);
    let cursor = first["cursor"].as_str().expect("cursor");

    let second = server
        .get(&format!("{base}?limit=2&cursor={cursor}"), Some(&bob.token))
        .await;
    let second = second.data(200).clone();
    assert_eq!(texts(&bob, &second), ["message 2", "message 3"]);
    let cursor = second["cursor"].as_str().expect("cursor");

    let third = server
        .get(&format!("{base}?limit=2&cursor={cursor}"), Some(&bob.token))
        .await;
    let third = third.data(200).clone();
    assert_eq!(texts(&bob, &third), ["message 4"]);
    assert_eq!(third["hasMore"], false);

    // The default page holds everything here (default limit 50).
    let all = server.get(&base, Some(&ada.token)).await;
    assert_eq!(texts(&ada, all.data(200)).len(), 5);
}

#[tokio::test]
async fn backward_starts_at_the_newest_page() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let conversation = conversation_with(&server, &ada, &bob, 5).await;
    let base = format!("/api/conversations/{conversation}/messages");

    let newest = server
        .get(
            &format!("{base}?limit=2&direction=backward"),
            Some(&bob.token),
        )
        .await;
    let newest = newest.data(200).clone();
    assert_eq!(
        texts(&bob, &newest),
        ["message 3", "message 4"],
        "items inside a page stay oldest first"
    );
    assert_eq!(newest["hasMore"], true);
    let cursor = newest["cursor"].as_str().expect("cursor");

    let older = server
        .get(&format!("{base}?limit=2&cursor={cursor}"), Some(&bob.token))
        .await;
    let older = older.data(200).clone();
    assert_eq!(texts(&bob, &older), ["message 1", "message 2"]);
    let cursor = older["cursor"].as_str().expect("cursor");

    let oldest = server
        .get(
            &format!("{base}?limit=2&direction=backward&cursor={cursor}"),
            Some(&bob.token),
        )
        .await;
    let oldest = oldest.data(200).clone();
    assert_eq!(texts(&bob, &oldest), ["message 0"]);
    assert_eq!(oldest["hasMore"], false);

    // A backward cursor cannot be read forward.
    server
        .get(
            &format!("{base}?direction=forward&cursor={cursor}"),
            Some(&bob.token),
        )
        .await
        .error(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn bad_limits_directions_and_cursors_are_400() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let eve = server.member("Eve").await;
    let conversation = conversation_with(&server, &ada, &bob, 3).await;
    let other = conversation_with(&server, &ada, &eve, 3).await;
    let base = format!("/api/conversations/{conversation}/messages");

    for query in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=1.5",
        "direction=sideways",
        "cursor=%%%",
        "cursor=AAAA",
    ] {
        server
            .get(&format!("{base}?{query}"), Some(&ada.token))
            .await
            .error(400, "VALIDATION_ERROR");
    }
    for query in ["limit=1", "limit=100"] {
        server
            .get(&format!("{base}?{query}"), Some(&ada.token))
            .await
            .data(200);
    }

    let page = server
        .get(&format!("{base}?limit=1"), Some(&ada.token))
        .await;
    let cursor = page.data(200)["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    // Tampered: flip one character.
    let mut tampered: Vec<char> = cursor.chars().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    server
        .get(&format!("{base}?cursor={tampered}"), Some(&ada.token))
        .await
        .error(400, "VALIDATION_ERROR");
    // A cursor of another conversation, and of the conversations list.
    server
        .get(
            &format!("/api/conversations/{other}/messages?cursor={cursor}"),
            Some(&ada.token),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .get(
            &format!("/api/conversations?cursor={cursor}"),
            Some(&ada.token),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .get("/api/conversations?limit=0", Some(&ada.token))
        .await
        .error(400, "VALIDATION_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_never_skip_or_repeat_while_messages_arrive() {
    let server = Arc::new(TestServer::start().await);
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let conversation = conversation_with(&server, &ada, &bob, 10).await;
    let base = format!("/api/conversations/{conversation}/messages");

    // Both members keep writing while Bob pages through.
    let writer = {
        let server = server.clone();
        let (ada, bob) = (ada.clone(), bob.clone());
        tokio::spawn(async move {
            for i in 10..40 {
                let (from, to) = if i % 2 == 0 {
                    (&ada, &bob)
                } else {
                    (&bob, &ada)
                };
                server.dm(from, to, &format!("message {i}")).await;
            }
        })
    };

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut writer_done = false;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=3&cursor={c}"),
            None => format!("{base}?limit=3"),
        };
        let page = server.get(&path, Some(&bob.token)).await;
        let data = page.data(200).clone();
        for item in data["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        if let Some(c) = data["cursor"].as_str() {
            cursor = Some(c.to_owned());
        }
        if data["hasMore"] == false {
            if writer_done {
                break;
            }
            // Caught up with the writer: wait for it, then read what remains.
            if writer.is_finished() {
                writer_done = true;
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    writer.await.expect("writer");

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a page repeated a message");
    assert_eq!(seen.len(), 40, "a message was skipped");
    let full = server
        .get(&format!("{base}?limit=100"), Some(&bob.token))
        .await;
    let ids: Vec<String> = full.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, seen, "paging order equals history order");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "history is in id (time) order");
}
