//! The group-commit writer: sends gathered into one transaction lose nothing, keep every
//! rule per send, and keep order and pagination.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::common::*;

/// Waits until `count` sends wait for the (held) writer.
async fn until_pending(server: &TestServer, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.state.writer.stats.pending.load(Ordering::Relaxed) < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count} sends queued",
            server.state.writer.stats.pending.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every page of a channel's history, forward, `limit` at a time.
async fn all_pages(server: &TestServer, member: &TestMember, base: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}/messages?limit={limit}&cursor={c}"),
            None => format!("{base}/messages?limit={limit}"),
        };
        let answer = server.get(&path, Some(&member.token)).await;
        let data = answer.data(200).clone();
        items.extend(data["items"].as_array().expect("items").iter().cloned());
        if data["hasMore"] != json!(true) {
            return items;
        }
        cursor = Some(data["cursor"].as_str().expect("cursor").to_owned());
    }
}

#[tokio::test]
async fn a_batch_with_refused_sends_commits_the_others() {
    let server = TestServer::start().await;
    let ada = server.member("ada").await;
    let bob = server.member("bob").await;
    let cat = server.member("cat").await;
    let outsider = server.member("outsider").await;
    let channel = server.channel(&ada, "batch", "public", true).await;
    let base = format!("/api/channels/{channel}");
    for member in [&bob, &cat] {
        server
            .post(&format!("{base}/join"), Some(&member.token), json!({}))
            .await
            .data(200);
    }
    server
        .post(
            &format!("{base}/mute/{}", cat.id),
            Some(&ada.token),
            json!({"durationMs": 60_000}),
        )
        .await
        .data(200);
    // Bob blocks the outsider: its DM to bob is refused in the batch; its DM to ada is not.
    server
        .post(
            &format!("/api/members/{}/block", outsider.id),
            Some(&bob.token),
            json!({}),
        )
        .await
        .data(200);
    let mut watcher = server.ws(&bob).await;

    let held = server.state.writer.hold().await;
    let before = server
        .state
        .writer
        .stats
        .largest_batch
        .load(Ordering::Relaxed);
    let mut sends = Vec::new();
    for i in 0..6 {
        sends.push((
            ada.clone(),
            format!("{base}/messages"),
            json!({"content": format!("ada {i}")}),
        ));
        sends.push((
            bob.clone(),
            format!("{base}/messages"),
            json!({"content": format!("bob {i}")}),
        ));
    }
    sends.push((
        cat.clone(),
        format!("{base}/messages"),
        json!({"content": "muted"}),
    ));
    sends.push((
        outsider.clone(),
        format!("{base}/messages"),
        json!({"content": "not a member"}),
    ));
    sends.push((
        outsider.clone(),
        "/api/conversations".to_owned(),
        json!({"recipientId": bob.id, "content": "blocked"}),
    ));
    sends.push((
        outsider.clone(),
        "/api/conversations".to_owned(),
        json!({"recipientId": ada.id, "content": "hello ada"}),
    ));
    let count = sends.len();
    // The DM to a member who blocked the sender is refused before it queues.
    let queued = count - 1;
    let requests = join_all(
        sends
            .iter()
            .map(|(member, path, body)| server.post(path, Some(&member.token), body.clone())),
    );
    let release = async {
        until_pending(&server, queued).await;
        drop(held);
    };
    let (answers, ()) = tokio::join!(requests, release);
    assert!(
        server
            .state
            .writer
            .stats
            .largest_batch
            .load(Ordering::Relaxed)
            >= 14.max(before),
        "the held sends to the channel went in one batch (a DM may go to another queue)"
    );

    let mut sent_ids = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        match i {
            0..12 => sent_ids.push(answer.data(201)["id"].as_str().expect("id").to_owned()),
            12 => answer.error(403, "FORBIDDEN"),
            13 => assert!(
                answer.status == 403 || answer.status == 404,
                "an outsider's send is refused: {answer:?}"
            ),
            14 => answer.error(404, "NOT_FOUND"),
            _ => {
                let dm = answer.data(201);
                assert_eq!(
                    decrypt_dm(&outsider.secret, &dm["encryptedContent"]),
                    "hello ada"
                );
            }
        }
    }
    // Ids are issued in queue order and strictly increase.
    let mut sorted = sent_ids.clone();
    sorted.sort();
    assert_eq!(
        sorted, sent_ids,
        "ids follow the order the sends were queued in"
    );

    // History holds exactly the twelve accepted messages, each readable.
    let keys = member_keys(&server, &bob, &base).await;
    let history = all_pages(&server, &bob, &base, 100).await;
    let ids: Vec<&str> = history
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, sent_ids.iter().map(String::as_str).collect::<Vec<_>>());
    let texts: HashSet<String> = history.iter().map(|m| decrypt_message(&keys, m)).collect();
    for i in 0..6 {
        assert!(texts.contains(&format!("ada {i}")) && texts.contains(&format!("bob {i}")));
    }
    // The refused DM left nothing for bob.
    let conversations = server.get("/api/conversations", Some(&bob.token)).await;
    assert_eq!(conversations.data(200)["items"], json!([]));

    // A subscriber gets each accepted message once, in order.
    let mut seen = Vec::new();
    while seen.len() < sent_ids.len() {
        let frame = watcher.expect("communication:message_sent").await;
        seen.push(frame["data"]["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(seen, sent_ids);
}

#[tokio::test]
async fn a_batch_whose_transaction_fails_is_retried_one_by_one() {
    let server = TestServer::start().await;
    let ada = server.member("ada").await;
    let bob = server.member("bob").await;
    let channel = server.channel(&ada, "split", "public", true).await;
    let base = format!("/api/channels/{channel}");
    server
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
    // The database itself refuses bob's messages: his item makes the batch's insert fail.
    refuse_inserts_from(&server, bob.id).await;

    let held = server.state.writer.hold().await;
    let mut sends = Vec::new();
    for i in 0..8 {
        let (member, text) = if i == 3 { (&bob, "bob") } else { (&ada, "ada") };
        sends.push((member.clone(), format!("{text} {i}")));
    }
    let path = format!("{base}/messages");
    let requests = join_all(sends.iter().map(|(member, content)| {
        server.post(&path, Some(&member.token), json!({"content": content}))
    }));
    let release = async {
        until_pending(&server, sends.len()).await;
        drop(held);
    };
    let (answers, ()) = tokio::join!(requests, release);
    for (i, answer) in answers.iter().enumerate() {
        if i == 3 {
            answer.error(500, "INTERNAL_ERROR");
        } else {
            answer.data(201);
        }
    }
    assert!(
        server
            .state
            .writer
            .stats
            .split_batches
            .load(Ordering::Relaxed)
            >= 1
    );
    let history = all_pages(&server, &ada, &base, 100).await;
    assert_eq!(history.len(), 7, "the seven good sends are stored");
    assert!(
        history
            .iter()
            .all(|m| m["senderId"] == json!(ada.id.to_string()))
    );
}

/// Installs a trigger that makes the database refuse messages from `sender`.
async fn refuse_inserts_from(server: &TestServer, sender: uuid::Uuid) {
    let db = &server.state.db.write;
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            db.execute_unprepared(&format!(
                "CREATE FUNCTION refuse_sender() RETURNS trigger AS $$ BEGIN \
                 IF NEW.sender_id = '{sender}' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse_sender BEFORE INSERT ON context_messages \
                 FOR EACH ROW EXECUTE FUNCTION refuse_sender();"
            ))
            .await
            .expect("trigger");
        }
        _ => {
            let hex = sender.simple().to_string();
            db.execute_unprepared(&format!(
                "CREATE TRIGGER refuse_sender BEFORE INSERT ON context_messages \
                 WHEN NEW.sender_id = X'{hex}' OR NEW.sender_id = '{sender}' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;"
            ))
            .await
            .expect("trigger");
        }
    }
}

#[tokio::test]
async fn concurrent_sends_edits_and_deletes_keep_order_and_pages() {
    let server = TestServer::start().await;
    let owner = server.member("owner").await;
    let names: Vec<String> = (0..6).map(|i| format!("w{i}")).collect();
    let writers = join_all(names.iter().map(|name| server.member(name))).await;
    let refs: Vec<&TestMember> = writers.iter().collect();
    let group = server.group(&owner, "busy", &refs).await;
    let base = format!("/api/groups/{group}");

    // Six members send 20 messages each at once; each edits its 5th and deletes its 10th as
    // soon as they are stored, while a reader pages through the history.
    let work = join_all(writers.iter().map(|writer| {
        let base = base.clone();
        let server = &server;
        async move {
            let mut mine = Vec::new();
            for n in 0..20 {
                let sent = server
                    .post(
                        &format!("{base}/messages"),
                        Some(&writer.token),
                        json!({"content": format!("{} {n}", writer.id)}),
                    )
                    .await;
                let id = sent.data(201)["id"].as_str().expect("id").to_owned();
                if n == 5 {
                    server
                        .put(
                            &format!("{base}/messages/{id}"),
                            Some(&writer.token),
                            json!({"content": format!("{} {n} edited", writer.id)}),
                        )
                        .await
                        .data(200);
                }
                if n == 10 {
                    server
                        .delete(&format!("{base}/messages/{id}"), Some(&writer.token))
                        .await
                        .data(200);
                }
                mine.push((n, id));
            }
            mine
        }
    }));
    let reader = async {
        // Pages read while messages arrive ascend and never repeat or skip an item: the
        // reader always continues from the cursor of its last page, also at the end.
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..40 {
            let path = match &cursor {
                Some(c) => format!("{base}/messages?limit=7&cursor={c}"),
                None => format!("{base}/messages?limit=7"),
            };
            let data = server
                .get(&path, Some(&owner.token))
                .await
                .data(200)
                .clone();
            for item in data["items"].as_array().expect("items") {
                let id = item["id"].as_str().expect("id").to_owned();
                assert!(
                    seen.last().is_none_or(|l| *l < id),
                    "pages ascend, no repeats"
                );
                seen.push(id);
            }
            if let Some(next) = data["cursor"].as_str() {
                cursor = Some(next.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    };
    let (sent, seen) = tokio::join!(work, reader);

    let keys = member_keys(&server, &owner, &base).await;
    let history = all_pages(&server, &owner, &base, 9).await;
    assert_eq!(history.len(), 6 * 19, "every send but the deleted ones");
    let ids: Vec<&str> = history
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "history ascends with no repeats");
    // The concurrent reader skipped nothing up to where it got.
    if let Some(reached) = seen.last() {
        for id in ids.iter().filter(|id| **id <= reached.as_str()) {
            assert!(seen.iter().any(|s| s == id), "the reader skipped {id}");
        }
    }
    let by_id: HashMap<&str, &Value> = history
        .iter()
        .map(|m| (m["id"].as_str().expect("id"), m))
        .collect();
    for (writer, mine) in writers.iter().zip(&sent) {
        // Each sender's own messages are in the order it sent them.
        let positions: Vec<usize> = mine
            .iter()
            .filter(|(n, _)| *n != 10)
            .map(|(_, id)| ids.iter().position(|x| x == id).expect("stored"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        for (n, id) in mine {
            match n {
                10 => assert!(!by_id.contains_key(id.as_str()), "deleted"),
                5 => assert_eq!(
                    decrypt_message(&keys, by_id[id.as_str()]),
                    format!("{} 5 edited", writer.id)
                ),
                _ => assert_eq!(
                    decrypt_message(&keys, by_id[id.as_str()]),
                    format!("{} {n}", writer.id)
                ),
            }
        }
    }
    // Backward paging gives the same items, newest page first.
    let mut backward = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}/messages?limit=11&direction=backward&cursor={c}"),
            None => format!("{base}/messages?limit=11&direction=backward"),
        };
        let data = server
            .get(&path, Some(&owner.token))
            .await
            .data(200)
            .clone();
        let mut page: Vec<String> = data["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_owned())
            .collect();
        page.reverse();
        backward.extend(page);
        if data["hasMore"] != json!(true) {
            break;
        }
        cursor = Some(data["cursor"].as_str().expect("cursor").to_owned());
    }
    backward.reverse();
    assert_eq!(backward, ids);
}

#[tokio::test]
async fn clients_that_give_up_while_queued_leave_the_writer_serving() {
    let server = TestServer::start().await;
    let ada = server.member("ada").await;
    let channel = server.channel(&ada, "impatient", "public", true).await;
    let url = format!("{}/api/channels/{channel}/messages", server.base);
    let held = server.state.writer.hold().await;
    // Twenty clients send and hang up before the writer takes their sends.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let gave_up = join_all((0..20).map(|i| {
        impatient
            .post(&url)
            .bearer_auth(&ada.token)
            .json(&json!({"content": format!("gone {i}")}))
            .send()
    }))
    .await;
    assert!(gave_up.iter().all(Result::is_err), "every client gave up");
    drop(held);
    // The writer goes on: a patient send is answered, and nothing stays counted as pending.
    let kept = server.channel_message(&ada, &channel, "still here").await;
    assert!(kept["id"].is_string());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.state.writer.stats.pending.load(Ordering::Relaxed) != 0 {
        assert!(std::time::Instant::now() < deadline, "sends left pending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Queued sends whose clients left are still written (a client retrying may post twice;
    // see decisions.md), each exactly once and in order.
    let history = all_pages(&server, &ada, &format!("/api/channels/{channel}"), 100).await;
    assert_eq!(history.len(), 21);
    assert_eq!(
        history.last().map(|m| m["id"].clone()),
        Some(kept["id"].clone())
    );
}
