//! Defects found by hostile clients and races: mutes that ended by leaving, promotion
//! twice, invites without a body, a burst on one context starving the pool, invites racing
//! a deletion, and text that hides or disguises itself. The races run concurrently and are
//! real on PostgreSQL (`BRIGHTCHAT_TEST_DATABASE_URL`).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestMember, TestServer};

async fn send(server: &TestServer, from: &TestMember, base: &str, content: &str) -> u16 {
    server
        .post(
            &format!("{base}/messages"),
            Some(&from.token),
            json!({"content": content}),
        )
        .await
        .status
        .as_u16()
}

async fn mute(server: &TestServer, by: &TestMember, base: &str, target: &TestMember) {
    server
        .post(
            &format!("{base}/mute/{}", target.id),
            Some(&by.token),
            json!({"durationMs": 600_000}),
        )
        .await
        .data(200);
}

#[tokio::test]
async fn a_mute_outlives_leaving_and_joining_a_public_channel() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "general", "public", true).await;
    let base = format!("/api/channels/{id}");
    let join = format!("{base}/join");
    server
        .post(&join, Some(&bob.token), json!({}))
        .await
        .data(200);
    mute(&server, &ada, &base, &bob).await;

    server
        .post(&format!("{base}/leave"), Some(&bob.token), json!({}))
        .await
        .data(200);
    server
        .post(&join, Some(&bob.token), json!({}))
        .await
        .data(200);
    assert_eq!(send(&server, &bob, &base, "I'm back").await, 403);
    // The channel shows the mute on the new membership too.
    let view = server.get(&base, Some(&ada.token)).await;
    let entry = view.data(200)["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["memberId"] == bob.id.to_string())
        .cloned()
        .expect("Bob is listed");
    assert!(entry["mutedUntil"].is_string(), "{entry}");

    // Lifting it works as before.
    server
        .delete(&format!("{base}/mute/{}", bob.id), Some(&ada.token))
        .await
        .data(200);
    assert_eq!(send(&server, &bob, &base, "thanks").await, 201);
}

#[tokio::test]
async fn a_mute_outlives_rejoining_a_private_channel_by_invite() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "backroom", "private", true).await;
    let base = format!("/api/channels/{id}");
    let token = server.invite(&ada, &id, json!({"maxUses": 10})).await;
    let redeem = format!("{base}/invites/{token}/redeem");
    server
        .post(&redeem, Some(&bob.token), json!({}))
        .await
        .data(200);
    mute(&server, &ada, &base, &bob).await;
    server
        .post(&format!("{base}/leave"), Some(&bob.token), json!({}))
        .await
        .data(200);
    server
        .post(&redeem, Some(&bob.token), json!({}))
        .await
        .data(200);
    assert_eq!(send(&server, &bob, &base, "still here").await, 403);
}

#[tokio::test]
async fn a_mute_outlives_removal_and_re_adding_in_a_group() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let group = server.group(&ada, "Team", &[&bob, &cat]).await;
    let base = format!("/api/groups/{group}");
    mute(&server, &ada, &base, &bob).await;
    server
        .delete(&format!("{base}/members/{}", bob.id), Some(&ada.token))
        .await
        .data(200);
    server
        .post(
            &format!("{base}/members"),
            Some(&ada.token),
            json!({"memberIds": [bob.id]}),
        )
        .await
        .data(200);
    assert_eq!(send(&server, &bob, &base, "hello again").await, 403);
    // A member who was never muted is unaffected.
    assert_eq!(send(&server, &cat, &base, "hi").await, 201);
}

/// A conversation between Ada and Bob, and Dan to bring in: (Ada, Dan, conversation id).
async fn conversation_to_promote(server: &TestServer) -> (TestMember, TestMember, String) {
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let dan = server.member("Dan").await;
    let first = server.dm(&ada, &bob, "Shall we bring Dan in?").await;
    let conversation = first["conversationId"].as_str().expect("id").to_owned();
    (ada, dan, conversation)
}

#[tokio::test]
async fn promoting_a_conversation_twice_names_the_existing_group() {
    let server = TestServer::start().await;
    let (ada, dan, conversation) = conversation_to_promote(&server).await;
    let path = format!("/api/conversations/{conversation}/promote");
    let body = json!({"newMemberIds": [dan.id]});
    let first = server.post(&path, Some(&ada.token), body.clone()).await;
    let group = first.data(200)["groupId"].as_str().expect("id").to_owned();

    let again = server.post(&path, Some(&ada.token), body).await;
    again.error(409, "ALREADY_EXISTS");
    assert_eq!(again.body["error"]["details"]["groupId"], group);
    assert!(
        again.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&group)),
        "{}",
        again.body
    );
}

#[tokio::test]
async fn concurrent_promotions_make_one_group() {
    let server = TestServer::start().await;
    let (ada, dan, conversation) = conversation_to_promote(&server).await;
    let path = format!("/api/conversations/{conversation}/promote");
    let body = json!({"newMemberIds": [dan.id]});
    let answers = join_all(
        (0..6).map(|_| server.call(Method::POST, &path, Some(&ada.token), Some(body.clone()))),
    )
    .await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|a| a.status.as_u16() == 200)
        .map(|a| &a.body["data"]["groupId"])
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for answer in answers.iter().filter(|a| a.status.as_u16() != 200) {
        answer.error(409, "ALREADY_EXISTS");
        assert_eq!(&answer.body["error"]["details"]["groupId"], created[0]);
    }
    let groups = server.get("/api/groups", Some(&dan.token)).await;
    assert_eq!(
        groups.data(200)["items"].as_array().expect("items").len(),
        1
    );
}

#[tokio::test]
async fn an_invite_with_no_body_empty_object_or_null_takes_the_defaults() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let id = server.channel(&ada, "backroom", "private", true).await;
    let path = format!("/api/channels/{id}/invites");
    let url = format!("{}{path}", server.base);

    let no_body = server
        .client
        .post(&url)
        .bearer_auth(&ada.token)
        .send()
        .await
        .expect("answers");
    assert_eq!(no_body.status().as_u16(), 201);
    let invite: Value = no_body.json().await.expect("json");
    assert!(invite["data"]["token"].is_string(), "{invite}");
    assert!(invite["data"]["maxUses"].is_null(), "{invite}");

    for body in ["{}", "null", " "] {
        let answer = server
            .raw(
                Method::POST,
                &path,
                Some(&ada.token),
                "application/json",
                body.into(),
            )
            .await;
        assert!(answer.data(201)["token"].is_string(), "{body}");
    }
    // A body that says something wrong is still refused.
    for (body, status) in [("{\"maxUses\": 0}", 400), ("{\"maxUses\": ", 400)] {
        let answer = server
            .raw(
                Method::POST,
                &path,
                Some(&ada.token),
                "application/json",
                body.into(),
            )
            .await;
        answer.error(status, "VALIDATION_ERROR");
    }
}

/// 239 members joining one channel that hides history (every join rotates the key, the
/// slowest write there is) must not starve the server: other members' reads answer
/// promptly, and every join answers 200, or 503 with `Retry-After` when it waited too
/// long, never 500.
#[tokio::test]
async fn a_burst_of_joins_on_one_channel_starves_nobody_else() {
    let server = TestServer::start_with(|config| {
        config.db_pool = 4;
        config.lock_wait = Duration::from_millis(1_500);
    })
    .await;
    let ada = server.member("Ada").await;
    let eve = server.member("Eve").await;
    let channel = server.channel(&ada, "crowd", "public", false).await;
    let group = server.group(&eve, "Elsewhere", &[&ada]).await;
    server.group_message(&eve, &group, "quiet here").await;
    let names: Vec<String> = (0..60).map(|i| format!("M{i}")).collect();
    let crowd = join_all(names.iter().map(|name| server.member(name))).await;

    let join_path = format!("/api/channels/{channel}/join");
    let joins = join_all(crowd.iter().map(|m| {
        server
            .client
            .post(format!("{}{join_path}", server.base))
            .bearer_auth(&m.token)
            .json(&json!({}))
            .send()
    }));
    let group_path = format!("/api/groups/{group}/messages");
    let reads = async {
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let started = Instant::now();
            let read = server.get(&group_path, Some(&eve.token)).await;
            read.data(200);
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest
    };
    let (joins, slowest) = tokio::join!(joins, reads);
    assert!(
        slowest < Duration::from_secs(2),
        "a read elsewhere waited {slowest:?} behind the burst"
    );
    let mut joined = 0;
    for answer in joins {
        let answer = answer.expect("the server answers");
        match answer.status().as_u16() {
            200 => joined += 1,
            503 => {
                let retry = answer
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                assert!(retry.is_some_and(|s| s >= 1), "503 without Retry-After");
                let body: Value = answer.json().await.expect("json");
                assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
            }
            other => panic!(
                "a join answered {other}: {}",
                answer.text().await.unwrap_or_default()
            ),
        }
    }
    assert!(joined > 0, "no join got through");
    // Whoever joined is a member, and the server still takes writes.
    let view = server
        .get(&format!("/api/channels/{channel}"), Some(&ada.token))
        .await;
    let members = view.data(200)["members"].as_array().expect("members").len();
    assert_eq!(members, joined + 1);
    server.group_message(&eve, &group, "still serving").await;
}

/// Creating invites while the owner deletes the channel: each invite is made before the
/// deletion (201) or finds the channel gone (404), never a 500.
#[tokio::test]
async fn invites_racing_a_channel_deletion_never_fail_with_500() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    for round in 0..10 {
        let id = server
            .channel(&ada, &format!("doomed-{round}"), "private", true)
            .await;
        let path = format!("/api/channels/{id}/invites");
        let invites = (0..8).map(|_| {
            server.call(
                Method::POST,
                &path,
                Some(&ada.token),
                Some(json!({"maxUses": 5})),
            )
        });
        let channel_path = format!("/api/channels/{id}");
        let deletion = server.delete(&channel_path, Some(&ada.token));
        let (invites, deletion) = tokio::join!(join_all(invites), deletion);
        deletion.data(200);
        for answer in invites {
            match answer.status.as_u16() {
                201 => {}
                404 => answer.error(404, "NOT_FOUND"),
                other => panic!("an invite answered {other}: {}", answer.body),
            }
        }
    }
}

/// NUL, lone invisible characters and bidirectional overrides: refused with 400 wherever
/// other members would see them (before, a NUL emoji was a 500 on PostgreSQL).
#[tokio::test]
async fn invisible_and_disguising_text_is_refused() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let group = server.group(&ada, "Team", &[&bob]).await;
    let message = server.group_message(&ada, &group, "hello").await;
    let reactions = format!(
        "/api/groups/{group}/messages/{}/reactions",
        message["id"].as_str().expect("id")
    );
    for emoji in ["\u{0}", "\u{200B}", "\u{200D}", "\u{202E}👍"] {
        server
            .post(&reactions, Some(&bob.token), json!({"emoji": emoji}))
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .post(
            &reactions,
            Some(&bob.token),
            json!({"emoji": "👨\u{200D}👩\u{200D}👧"}),
        )
        .await
        .data(201);

    for content in ["\u{200B}", "\u{FEFF}\u{200B}", "\u{0}", "a\u{0}b"] {
        server
            .post(
                &format!("/api/groups/{group}/messages"),
                Some(&ada.token),
                json!({"content": content}),
            )
            .await
            .error(400, "VALIDATION_ERROR");
        server
            .post(
                "/api/conversations",
                Some(&ada.token),
                json!({"recipientId": bob.id, "content": content}),
            )
            .await
            .error(400, "VALIDATION_ERROR");
    }

    let (_, public_hex) = crate::common::new_keypair();
    for name in ["\u{200B}", "Ada\u{202E}nimda", "Ada\u{0}", "Bo\u{2066}b"] {
        server
            .post(
                "/api/members",
                None,
                json!({"displayName": name, "publicKey": public_hex}),
            )
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .post(
            "/api/groups",
            Some(&ada.token),
            json!({"name": "\u{200B}", "memberIds": [bob.id]}),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .post(
            "/api/channels",
            Some(&ada.token),
            json!({"name": "news", "visibility": "public", "topic": "read me\u{202E}txt.exe"}),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    // The server still serves, and plain text still works.
    server.group_message(&bob, &group, "all fine").await;
}
