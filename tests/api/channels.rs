//! Channels: creation and names, settings, deletion, joining, history visibility, kicks.

use serde_json::json;
use uuid::Uuid;

use crate::common::{TestServer, decrypt_message, member_keys, open_with};

#[tokio::test]
async fn create_a_channel_and_read_it() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let answer = server
        .post(
            "/api/channels",
            Some(&ada.token),
            json!({"name": "general", "topic": "General discussion", "visibility": "public"}),
        )
        .await;
    assert_eq!(answer.body["message"], "Channel created");
    let channel = answer.data(201).clone();
    assert_eq!(channel["name"], "general");
    assert_eq!(channel["topic"], "General discussion");
    assert_eq!(channel["visibility"], "public");
    assert_eq!(channel["creatorId"], ada.id.to_string());
    assert_eq!(channel["historyVisibleToNewMembers"], true);
    assert_eq!(
        channel["members"],
        json!([{"memberId": ada.id, "role": "owner", "joinedAt": channel["members"][0]["joinedAt"], "mutedUntil": null}])
    );
    assert_eq!(channel["pinnedMessageIds"], json!([]));
    assert_eq!(channel["keyEpoch"], 1);
    let id = channel["id"].as_str().expect("id");
    let got = server
        .get(&format!("/api/channels/{id}"), Some(&ada.token))
        .await;
    assert_eq!(got.body["message"], "Channel retrieved");
    assert_eq!(got.data(200)["name"], "general");
}

#[tokio::test]
async fn channel_names_are_strict_and_unique() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    for name in [
        "General",
        "has space",
        "-dash",
        "_under",
        "",
        "café",
        &"x".repeat(81),
        "dot.name",
    ] {
        server
            .post(
                "/api/channels",
                Some(&ada.token),
                json!({"name": name, "visibility": "public"}),
            )
            .await
            .error(400, "VALIDATION_ERROR");
    }
    for body in [
        json!({"name": "ok"}),
        json!({"visibility": "public"}),
        json!({"name": "ok", "visibility": "hidden"}),
        json!({"name": "ok", "visibility": "public", "historyVisibleToNewMembers": "yes"}),
    ] {
        server
            .post("/api/channels", Some(&ada.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server.channel(&ada, "general", "public", true).await;
    server
        .post(
            "/api/channels",
            Some(&ada.token),
            json!({"name": "general", "visibility": "secret"}),
        )
        .await
        .error(409, "ALREADY_EXISTS");
    // Names compare exactly: similar names are different channels.
    server.channel(&ada, "general-2", "public", true).await;
    server
        .channel(&ada, "x".repeat(80).as_str(), "public", true)
        .await;
}

#[tokio::test]
async fn settings_update_only_given_fields_and_only_for_owners() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "general", "public", true).await;
    server.channel(&ada, "random", "public", true).await;
    server.join(&bob, &id).await;
    server
        .put(
            &format!("/api/channels/{id}/roles/{}", bob.id),
            Some(&ada.token),
            json!({"role": "admin"}),
        )
        .await
        .data(200);
    let path = format!("/api/channels/{id}");

    let updated = server
        .put(&path, Some(&ada.token), json!({"topic": "Updated topic"}))
        .await;
    assert_eq!(updated.body["message"], "Channel updated");
    assert_eq!(
        updated.data(200),
        &json!({"id": id, "name": "general", "topic": "Updated topic", "visibility": "public", "historyVisibleToNewMembers": true})
    );
    let updated = server
        .put(&path, Some(&ada.token), json!({"name": "general-chat", "visibility": "private", "historyVisibleToNewMembers": false}))
        .await;
    assert_eq!(
        updated.data(200),
        &json!({"id": id, "name": "general-chat", "topic": "Updated topic", "visibility": "private", "historyVisibleToNewMembers": false})
    );
    let got = server.get(&path, Some(&bob.token)).await;
    assert_eq!(got.data(200)["name"], "general-chat");
    server
        .put(&path, Some(&ada.token), json!({}))
        .await
        .data(200);

    server
        .put(&path, Some(&ada.token), json!({"name": "random"}))
        .await
        .error(409, "ALREADY_EXISTS");
    server
        .put(&path, Some(&ada.token), json!({"name": "Bad Name"}))
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .put(&path, Some(&ada.token), json!({"visibility": "open"}))
        .await
        .error(400, "VALIDATION_ERROR");
    // Admins lack MANAGE_CHANNEL.
    server
        .put(&path, Some(&bob.token), json!({"topic": "mine"}))
        .await
        .error(403, "FORBIDDEN");
    server
        .put(
            &format!("/api/channels/{}", Uuid::new_v4()),
            Some(&ada.token),
            json!({"topic": "x"}),
        )
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn deleting_removes_everything() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "doomed", "private", true).await;
    server.invite_in(&ada, &id, &bob).await;
    server
        .put(
            &format!("/api/channels/{id}/roles/{}", bob.id),
            Some(&ada.token),
            json!({"role": "admin"}),
        )
        .await
        .data(200);
    let message = server.channel_message(&bob, &id, "soon gone").await;
    server
        .post(
            &format!(
                "/api/channels/{id}/messages/{}/pin",
                message["id"].as_str().expect("id")
            ),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    let token = server.invite(&ada, &id, json!({})).await;

    server
        .delete(&format!("/api/channels/{id}"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    let deleted = server
        .delete(&format!("/api/channels/{id}"), Some(&ada.token))
        .await;
    assert_eq!(deleted.body["message"], "Channel deleted");
    assert_eq!(deleted.data(200), &json!({"deleted": true}));
    server
        .get(&format!("/api/channels/{id}"), Some(&ada.token))
        .await
        .error(404, "NOT_FOUND");
    server
        .get(&format!("/api/channels/{id}/messages"), Some(&bob.token))
        .await
        .error(404, "NOT_FOUND");
    let eve = server.member("Eve").await;
    server
        .post(
            &format!("/api/channels/{id}/invites/{token}/redeem"),
            Some(&eve.token),
            json!({}),
        )
        .await
        .error(404, "NOT_FOUND");
    {
        use sea_orm::{ConnectionTrait, Statement};
        for table in [
            "context_messages",
            "member_keys",
            "epoch_keys",
            "invites",
            "context_members",
            "reactions",
        ] {
            let rows = server
                .state
                .db
                .read
                .query_all_raw(Statement::from_string(
                    server.state.db.backend(),
                    format!("SELECT * FROM {table}"),
                ))
                .await
                .expect("query");
            assert!(
                rows.is_empty(),
                "{table} still holds rows of the deleted channel"
            );
        }
    }
    // The name is free again.
    server.channel(&ada, "doomed", "public", true).await;
}

#[tokio::test]
async fn joining_a_public_channel_with_visible_history() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "general", "public", true).await;
    server.channel_message(&ada, &id, "before Bob").await;

    let joined = server
        .post(
            &format!("/api/channels/{id}/join"),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(joined.body["message"], "Joined channel");
    assert_eq!(joined.data(200), &json!({"joined": true}));
    server
        .post(
            &format!("/api/channels/{id}/join"),
            Some(&bob.token),
            json!({}),
        )
        .await
        .error(409, "ALREADY_EXISTS");
    let meta = server
        .get(&format!("/api/channels/{id}"), Some(&bob.token))
        .await;
    assert_eq!(
        meta.data(200)["keyEpoch"],
        1,
        "joining with visible history does not rotate"
    );

    server.channel_message(&ada, &id, "after Bob").await;
    let keys = member_keys(&server, &bob, &format!("/api/channels/{id}")).await;
    let history = server
        .get(&format!("/api/channels/{id}/messages"), Some(&bob.token))
        .await;
    let texts: Vec<String> = history.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| decrypt_message(&keys, m))
        .collect();
    assert_eq!(texts, ["before Bob", "after Bob"]);
    assert_eq!(history.body["data"]["items"][0]["channelId"], id);
    server
        .post(
            &format!("/api/channels/{}/join", Uuid::new_v4()),
            Some(&bob.token),
            json!({}),
        )
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn hidden_history_stays_hidden_from_newcomers() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "quiet", "public", false).await;
    let base = format!("/api/channels/{id}");
    let old = server.channel_message(&ada, &id, "before Bob").await;

    server
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
    let meta = server.get(&base, Some(&bob.token)).await;
    assert_eq!(
        meta.data(200)["keyEpoch"],
        2,
        "joining hidden history rotates"
    );
    let keys = member_keys(&server, &bob, &base).await;
    assert_eq!(
        keys.keys().copied().collect::<Vec<_>>(),
        vec![2],
        "no key for earlier epochs"
    );
    assert!(
        open_with(
            &keys[&2],
            old["id"].as_str().expect("id"),
            &old["encryptedContent"]
        )
        .is_none()
    );

    server.channel_message(&ada, &id, "after Bob").await;
    let history = server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await;
    let texts: Vec<String> = history.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| decrypt_message(&keys, m))
        .collect();
    assert_eq!(texts, ["after Bob"]);
    let backward = server
        .get(
            &format!("{base}/messages?direction=backward&limit=10"),
            Some(&bob.token),
        )
        .await;
    assert_eq!(
        backward.data(200)["items"].as_array().expect("items").len(),
        1
    );
    // The earlier message does not exist for Bob on any route.
    let old_id = old["id"].as_str().expect("id");
    server
        .post(
            &format!("{base}/messages/{old_id}/reactions"),
            Some(&bob.token),
            json!({"emoji": "👀"}),
        )
        .await
        .error(404, "NOT_FOUND");
    // Ada still sees everything.
    let history = server
        .get(&format!("{base}/messages"), Some(&ada.token))
        .await;
    assert_eq!(
        history.data(200)["items"].as_array().expect("items").len(),
        2
    );
}

#[tokio::test]
async fn kicked_and_departed_members_read_nothing_new() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let mo = server.member("Mo").await;
    let id = server.channel(&ada, "general", "public", true).await;
    let base = format!("/api/channels/{id}");
    for m in [&bob, &cat, &mo] {
        server
            .post(&format!("{base}/join"), Some(&m.token), json!({}))
            .await
            .data(200);
    }
    server
        .put(
            &format!("{base}/roles/{}", mo.id),
            Some(&ada.token),
            json!({"role": "moderator"}),
        )
        .await
        .data(200);
    server.channel_message(&ada, &id, "all of us").await;
    let bobs_keys = member_keys(&server, &bob, &base).await;
    let cats_keys = member_keys(&server, &cat, &base).await;

    server
        .post(
            &format!("{base}/kick/{}", ada.id),
            Some(&mo.token),
            json!({}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("{base}/kick/{}", bob.id),
            Some(&cat.token),
            json!({}),
        )
        .await
        .error(403, "FORBIDDEN");
    let kicked = server
        .post(
            &format!("{base}/kick/{}", bob.id),
            Some(&mo.token),
            json!({}),
        )
        .await;
    assert_eq!(kicked.body["message"], "Member kicked");
    assert_eq!(kicked.data(200), &json!({"kicked": true}));
    server
        .post(
            &format!("{base}/kick/{}", bob.id),
            Some(&mo.token),
            json!({}),
        )
        .await
        .error(404, "NOT_FOUND");
    let left = server
        .post(&format!("{base}/leave"), Some(&cat.token), json!({}))
        .await;
    assert_eq!(left.body["message"], "Left channel");
    assert_eq!(left.data(200), &json!({"left": true}));
    server
        .post(&format!("{base}/leave"), Some(&cat.token), json!({}))
        .await
        .error(403, "FORBIDDEN");

    let secret = server.channel_message(&ada, &id, "after they left").await;
    assert_eq!(secret["keyEpoch"], 3);
    for keys in [&bobs_keys, &cats_keys] {
        for key in keys.values() {
            assert!(
                open_with(
                    key,
                    secret["id"].as_str().expect("id"),
                    &secret["encryptedContent"]
                )
                .is_none()
            );
        }
    }
    for m in [&bob, &cat] {
        server
            .get(&format!("{base}/messages"), Some(&m.token))
            .await
            .error(403, "FORBIDDEN");
        server
            .get(&format!("{base}/keys"), Some(&m.token))
            .await
            .error(403, "FORBIDDEN");
    }
    // A kicked member may rejoin a public channel.
    server
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
}

#[tokio::test]
async fn the_last_member_out_deletes_the_channel() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "brief", "public", true).await;
    server.join(&bob, &id).await;
    server
        .post(
            &format!("/api/channels/{id}/leave"),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    let meta = server
        .get(&format!("/api/channels/{id}"), Some(&bob.token))
        .await;
    assert_eq!(
        meta.data(200)["members"][0]["role"],
        "owner",
        "ownership passed on"
    );
    server
        .post(
            &format!("/api/channels/{id}/leave"),
            Some(&bob.token),
            json!({}),
        )
        .await
        .data(200);
    server
        .get(&format!("/api/channels/{id}"), Some(&bob.token))
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn channel_moderation_uses_the_shared_rules() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "general", "public", true).await;
    let base = format!("/api/channels/{id}");
    server
        .post(&format!("{base}/join"), Some(&bob.token), json!({}))
        .await
        .data(200);
    let message = server.channel_message(&bob, &id, "hello").await;
    let mid = message["id"].as_str().expect("id");

    let muted = server
        .post(
            &format!("{base}/mute/{}", bob.id),
            Some(&ada.token),
            json!({"durationMs": 60_000}),
        )
        .await;
    assert_eq!(muted.data(200)["muted"], true);
    server
        .post(
            &format!("{base}/messages"),
            Some(&bob.token),
            json!({"content": "x"}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .put(
            &format!("{base}/messages/{mid}"),
            Some(&bob.token),
            json!({"content": "x"}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("{base}/messages/{mid}/reactions"),
            Some(&bob.token),
            json!({"emoji": "👍"}),
        )
        .await
        .error(403, "FORBIDDEN");
    let unmuted = server
        .delete(&format!("{base}/mute/{}", bob.id), Some(&ada.token))
        .await;
    assert_eq!(unmuted.data(200), &json!({"unmuted": true}));

    let edited = server
        .put(
            &format!("{base}/messages/{mid}"),
            Some(&bob.token),
            json!({"content": "hello!"}),
        )
        .await;
    assert_eq!(
        edited.data(200)["editHistory"]
            .as_array()
            .expect("history")
            .len(),
        1
    );
    let reaction = server
        .post(
            &format!("{base}/messages/{mid}/reactions"),
            Some(&ada.token),
            json!({"emoji": "🎉"}),
        )
        .await;
    let reaction_id = reaction.data(201)["reactionId"]
        .as_str()
        .expect("id")
        .to_owned();
    server
        .delete(
            &format!("{base}/messages/{mid}/reactions/{reaction_id}"),
            Some(&ada.token),
        )
        .await
        .data(200);
    server
        .post(
            &format!("{base}/messages/{mid}/pin"),
            Some(&bob.token),
            json!({}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("{base}/messages/{mid}/pin"),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    let meta = server.get(&base, Some(&bob.token)).await;
    assert_eq!(meta.data(200)["pinnedMessageIds"], json!([mid]));
    server
        .delete(&format!("{base}/messages/{mid}/pin"), Some(&ada.token))
        .await
        .data(200);
    server
        .delete(&format!("{base}/messages/{mid}"), Some(&ada.token))
        .await
        .data(200);
    let history = server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await;
    assert_eq!(history.data(200)["items"], json!([]));
}

#[tokio::test]
async fn a_mute_survives_a_restart() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "general", "public", true).await;
    server.join(&bob, &id).await;
    server
        .post(
            &format!("/api/channels/{id}/mute/{}", bob.id),
            Some(&ada.token),
            json!({"durationMs": 600_000}),
        )
        .await
        .data(200);

    let restarted = server.restart().await;
    restarted
        .post(
            &format!("/api/channels/{id}/messages"),
            Some(&bob.token),
            json!({"content": "let me speak"}),
        )
        .await
        .error(403, "FORBIDDEN");
    restarted
        .channel_message(&ada, &id, "still moderated")
        .await;
}
