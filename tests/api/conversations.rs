//! Direct messages end to end: encryption for each reader, privacy of blocks, deletes,
//! conversation lists and their previews.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestServer, decrypt_dm};

#[tokio::test]
async fn each_participant_decrypts_its_own_copy() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let text = "Hey, are you free for a call? ✓";

    let sent = server
        .post(
            "/api/conversations",
            Some(&ada.token),
            json!({"recipientId": bob.id, "content": text}),
        )
        .await;
    assert_eq!(sent.body["message"], "Message sent");
    let sent = sent.data(201).clone();
    assert_eq!(sent["senderId"], ada.id.to_string());
    assert_eq!(sent["recipientId"], bob.id.to_string());
    let message_id: Uuid = sent["id"].as_str().expect("id").parse().expect("uuid");
    assert_eq!(message_id.get_version_num(), 7, "message ids are UUID v7");
    assert!(sent["createdAt"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert_eq!(decrypt_dm(&ada.secret, &sent["encryptedContent"]), text);

    let conversation = sent["conversationId"].as_str().expect("conversationId");
    let path = format!("/api/conversations/{conversation}/messages");
    for (reader, other) in [(&ada, &bob), (&bob, &ada)] {
        let page = server.get(&path, Some(&reader.token)).await;
        let items = page.data(200)["items"].as_array().expect("items").clone();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["id"], message_id.to_string());
        assert_eq!(items[0]["senderId"], ada.id.to_string());
        assert_eq!(
            decrypt_dm(&reader.secret, &items[0]["encryptedContent"]),
            text
        );
        // The other participant's key does not open the reader's copy.
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            items[0]["encryptedContent"].as_str().expect("string"),
        )
        .expect("base64");
        assert!(ecies::decrypt(&other.secret, &bytes).is_err());
    }

    // The reply lands in the same conversation.
    let reply = server.dm(&bob, &ada, "Yes, at 3").await;
    assert_eq!(reply["conversationId"], conversation);
    assert_eq!(
        decrypt_dm(&bob.secret, &reply["encryptedContent"]),
        "Yes, at 3"
    );
}

#[tokio::test]
async fn a_block_looks_exactly_like_no_one() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    server.dm(&ada, &bob, "before the block").await;
    server
        .post(
            &format!("/api/members/{}/block", ada.id),
            Some(&bob.token),
            json!({}),
        )
        .await
        .data(200);

    let blocked = server
        .post(
            "/api/conversations",
            Some(&ada.token),
            json!({"recipientId": bob.id, "content": "hi"}),
        )
        .await;
    let nobody = server
        .post(
            "/api/conversations",
            Some(&ada.token),
            json!({"recipientId": Uuid::new_v4(), "content": "hi"}),
        )
        .await;
    blocked.error(404, "NOT_FOUND");
    assert_eq!(blocked.status, nobody.status);
    assert_eq!(
        blocked.body, nobody.body,
        "blocked and unknown recipients must be indistinguishable"
    );

    // Bob can still write to Ada, and unblocking lets Ada write again.
    server.dm(&bob, &ada, "I blocked you").await;
    server
        .delete(&format!("/api/members/{}/block", ada.id), Some(&bob.token))
        .await
        .data(200);
    server.dm(&ada, &bob, "thanks").await;
}

#[tokio::test]
async fn invalid_messages_are_400() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    for body in [
        json!({"content": "hi"}),
        json!({"recipientId": bob.id}),
        json!({"recipientId": "not-a-uuid", "content": "hi"}),
        json!({"recipientId": bob.id, "content": ""}),
        json!({"recipientId": bob.id, "content": " \n\t "}),
        json!({"recipientId": bob.id, "content": 42}),
        json!({"recipientId": bob.id, "content": "é".repeat(10_001)}),
        json!({"recipientId": ada.id, "content": "to myself"}),
        json!([1, 2]),
    ] {
        server
            .post("/api/conversations", Some(&ada.token), body.clone())
            .await
            .error(400, "VALIDATION_ERROR");
    }
    // Exactly 10,000 characters is fine.
    server.dm(&ada, &bob, &"é".repeat(10_000)).await;
    server
        .post(
            "/api/conversations",
            None,
            json!({"recipientId": bob.id, "content": "hi"}),
        )
        .await
        .error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn history_is_for_participants_only() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let eve = server.member("Eve").await;
    let sent = server.dm(&ada, &bob, "private").await;
    let conversation = sent["conversationId"].as_str().expect("id");

    server
        .get(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&eve.token),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .get(
            &format!("/api/conversations/{}/messages", Uuid::new_v4()),
            Some(&ada.token),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .get("/api/conversations/nope/messages", Some(&ada.token))
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .get(&format!("/api/conversations/{conversation}/messages"), None)
        .await
        .error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn only_the_author_deletes_and_the_message_is_gone() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let eve = server.member("Eve").await;
    let first = server.dm(&ada, &bob, "first").await;
    let second = server.dm(&ada, &bob, "second").await;
    let conversation = first["conversationId"].as_str().expect("id").to_owned();
    let other = server.dm(&ada, &eve, "elsewhere").await;
    let delete = |message: &Value| {
        format!(
            "/api/conversations/{conversation}/messages/{}",
            message["id"].as_str().expect("id")
        )
    };

    server
        .delete(&delete(&second), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .delete(&delete(&second), Some(&eve.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .delete(&delete(&other), Some(&ada.token))
        .await
        .error(404, "NOT_FOUND");
    server
        .delete(
            &format!(
                "/api/conversations/{conversation}/messages/{}",
                Uuid::new_v4()
            ),
            Some(&ada.token),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .delete(
            &format!(
                "/api/conversations/{}/messages/{}",
                Uuid::new_v4(),
                Uuid::new_v4()
            ),
            Some(&ada.token),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .delete(
            &format!("/api/conversations/{conversation}/messages/bad"),
            Some(&ada.token),
        )
        .await
        .error(400, "VALIDATION_ERROR");

    let answer = server.delete(&delete(&second), Some(&ada.token)).await;
    assert_eq!(answer.body["message"], "Message deleted");
    assert_eq!(answer.data(200), &json!({"deleted": true}));
    server
        .delete(&delete(&second), Some(&ada.token))
        .await
        .error(404, "NOT_FOUND");

    let history = server
        .get(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&bob.token),
        )
        .await;
    let ids: Vec<&str> = history.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec![first["id"].as_str().expect("id")]);

    // The list now previews the newest remaining message.
    let list = server.get("/api/conversations", Some(&bob.token)).await;
    assert_eq!(list.data(200)["items"][0]["lastMessagePreview"], "first");
}

#[tokio::test]
async fn conversations_list_newest_activity_first_with_previews() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let dan = server.member("Dan").await;

    let long = format!("{}{}", "ü".repeat(99), "xyz and more");
    let with_bob = server.dm(&ada, &bob, "hello bob").await;
    let with_cat = server.dm(&cat, &ada, &long).await;
    let with_dan = server.dm(&ada, &dan, "hello dan").await;
    // Bob writes again: his conversation becomes the newest.
    server.dm(&bob, &ada, "Hey, are you free for a call?").await;

    let answer = server.get("/api/conversations", Some(&ada.token)).await;
    assert_eq!(answer.body["message"], "Conversations listed");
    let data = answer.data(200);
    assert_eq!(data["hasMore"], false);
    let items = data["items"].as_array().expect("items");
    let ids: Vec<&str> = items
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        vec![
            with_bob["conversationId"].as_str().expect("id"),
            with_dan["conversationId"].as_str().expect("id"),
            with_cat["conversationId"].as_str().expect("id"),
        ]
    );
    assert_eq!(
        items[0]["lastMessagePreview"],
        "Hey, are you free for a call?"
    );
    let expected_preview: String = long.chars().take(100).collect();
    assert_eq!(items[2]["lastMessagePreview"], expected_preview.as_str());
    let mut participants: Vec<String> = items[0]["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p.as_str().expect("id").to_owned())
        .collect();
    participants.sort();
    let mut expected = vec![ada.id.to_string(), bob.id.to_string()];
    expected.sort();
    assert_eq!(participants, expected);
    assert!(
        items[0]["lastMessageAt"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let times: Vec<&str> = items
        .iter()
        .map(|c| c["lastMessageAt"].as_str().expect("time"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // Bob sees only his conversation; Dan only his.
    let bobs = server.get("/api/conversations", Some(&bob.token)).await;
    assert_eq!(bobs.data(200)["items"].as_array().expect("items").len(), 1);

    // Paging one at a time yields the same order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/conversations?limit=1&cursor={c}"),
            None => "/api/conversations?limit=1".to_owned(),
        };
        let page = server.get(&path, Some(&ada.token)).await;
        let data = page.data(200).clone();
        for item in data["items"].as_array().expect("items") {
            paged.push(item["id"].as_str().expect("id").to_owned());
        }
        if data["hasMore"] == false {
            break;
        }
        cursor = data["cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(paged, ids);
    server
        .get("/api/conversations", None)
        .await
        .error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn the_database_holds_no_message_plaintext() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let secret_text = "zebra-moonlight-7731 the plans are in the blue folder";
    server.dm(&ada, &bob, secret_text).await;
    server.dm(&bob, &ada, secret_text).await;
    // Reading the list derives a preview; it must not be written anywhere either.
    server
        .get("/api/conversations", Some(&ada.token))
        .await
        .data(200);

    let needle = "zebra-moonlight-7731";
    if crate::common::test_database_url().is_none() {
        // Every byte written to the data dir: SQLite's file, its write-ahead log, the
        // search index.
        let mut found = false;
        let mut dirs = vec![server.data_dir.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("data dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).expect("read");
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found = true;
                }
            }
        }
        assert!(!found, "plaintext found in the data dir");
        assert!(server.data_dir.join("brightchat.db").exists());
    } else {
        use sea_orm::{ConnectionTrait, Statement};
        let db = &server.state.db.read;
        for table in ["dm_messages", "conversations", "members", "server_meta"] {
            let rows = db
                .query_all_raw(Statement::from_string(
                    server.state.db.backend(),
                    format!("SELECT row_to_json(t)::text AS row FROM {table} t"),
                ))
                .await
                .expect("query");
            for row in rows {
                let text: String = row.try_get("", "row").expect("row");
                assert!(!text.contains(needle), "plaintext in {table}");
                let hex_needle = hex::encode(needle);
                assert!(!text.contains(&hex_needle), "plaintext bytes in {table}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_messages_share_one_conversation() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let server = server.clone();
        let (from, to) = if i % 2 == 0 {
            (ada.clone(), bob.clone())
        } else {
            (bob.clone(), ada.clone())
        };
        tasks.push(tokio::spawn(async move {
            server.dm(&from, &to, &format!("m{i}")).await
        }));
    }
    let mut conversations = std::collections::HashSet::new();
    for task in tasks {
        let message = task.await.expect("task");
        conversations.insert(message["conversationId"].as_str().expect("id").to_owned());
    }
    assert_eq!(conversations.len(), 1);
    let list = server.get("/api/conversations", Some(&ada.token)).await;
    assert_eq!(list.data(200)["items"].as_array().expect("items").len(), 1);
}
