//! Group messages: edits with encrypted history, reactions, pins, deletes, mutes.

use serde_json::json;
use uuid::Uuid;

use crate::common::{TestServer, decrypt_message, member_keys, open_with};

#[tokio::test]
async fn edits_keep_an_encrypted_history() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let base = format!("/api/groups/{group}");
    let message = server
        .group_message(&ada, &group, "Meeting at 3pm today")
        .await;
    let id = message["id"].as_str().expect("id").to_owned();
    // Rotate, so the edit lands in a later epoch than the original.
    server
        .post(
            &format!("{base}/members"),
            Some(&ada.token),
            json!({"memberIds": [cat.id]}),
        )
        .await
        .data(200);

    let edited = server
        .put(
            &format!("{base}/messages/{id}"),
            Some(&ada.token),
            json!({"content": "Meeting at 4pm today (updated)"}),
        )
        .await;
    assert_eq!(edited.body["message"], "Message edited");
    let edited = edited.data(200).clone();
    assert_eq!(edited["id"], id);
    assert_eq!(edited["keyEpoch"], 2);
    assert!(edited["editedAt"].is_string());
    let history = edited["editHistory"].as_array().expect("editHistory");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["keyEpoch"], 1);
    assert_eq!(history[0]["editedAt"], message["createdAt"]);

    // Bob decrypts both versions with keys from /keys and his own private key.
    let keys = member_keys(&server, &bob, &base).await;
    assert_eq!(
        decrypt_message(&keys, &edited),
        "Meeting at 4pm today (updated)"
    );
    let old = open_with(&keys[&1], &id, &history[0]["content"]).expect("old version decrypts");
    assert_eq!(old, "Meeting at 3pm today");

    // A second edit appends.
    let again = server
        .put(
            &format!("{base}/messages/{id}"),
            Some(&ada.token),
            json!({"content": "cancelled"}),
        )
        .await;
    let again = again.data(200).clone();
    let history = again["editHistory"].as_array().expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(
        open_with(&keys[&2], &id, &history[1]["content"]).as_deref(),
        Some("Meeting at 4pm today (updated)")
    );
    let listed = server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await;
    let item = &listed.data(200)["items"][0];
    assert_eq!(decrypt_message(&keys, item), "cancelled");
    assert_eq!(item["editHistory"].as_array().expect("history").len(), 2);

    server
        .put(
            &format!("{base}/messages/{id}"),
            Some(&bob.token),
            json!({"content": "mine now"}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .put(
            &format!("{base}/messages/{}", Uuid::new_v4()),
            Some(&ada.token),
            json!({"content": "x"}),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .put(
            &format!("{base}/messages/{id}"),
            Some(&ada.token),
            json!({"content": ""}),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .put(
            &format!("{base}/messages/{id}"),
            Some(&ada.token),
            json!({}),
        )
        .await
        .error(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn reactions_are_unique_per_member_emoji_and_message() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let eve = server.member("Eve").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let base = format!("/api/groups/{group}");
    let message = server.group_message(&ada, &group, "hello").await;
    let id = message["id"].as_str().expect("id");
    let reactions = format!("{base}/messages/{id}/reactions");

    let added = server
        .post(&reactions, Some(&bob.token), json!({"emoji": "👍"}))
        .await;
    assert_eq!(added.body["message"], "Reaction added");
    let added = added.data(201).clone();
    assert_eq!(added["emoji"], "👍");
    let reaction_id = added["reactionId"].as_str().expect("reactionId").to_owned();
    server
        .post(&reactions, Some(&bob.token), json!({"emoji": "👍"}))
        .await
        .error(409, "ALREADY_EXISTS");
    server
        .post(&reactions, Some(&bob.token), json!({"emoji": "🎉"}))
        .await
        .data(201);
    server
        .post(&reactions, Some(&ada.token), json!({"emoji": "👍"}))
        .await
        .data(201);

    let listed = server
        .get(&format!("{base}/messages"), Some(&ada.token))
        .await;
    let on_message = listed.data(200)["items"][0]["reactions"]
        .as_array()
        .expect("reactions")
        .clone();
    assert_eq!(on_message.len(), 3);
    assert_eq!(on_message[0]["reactionId"], reaction_id);
    assert_eq!(on_message[0]["memberId"], bob.id.to_string());

    for body in [
        json!({}),
        json!({"emoji": ""}),
        json!({"emoji": "a b"}),
        json!({"emoji": "x".repeat(65)}),
    ] {
        server
            .post(&reactions, Some(&bob.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .post(&reactions, Some(&eve.token), json!({"emoji": "👀"}))
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("{base}/messages/{}/reactions", Uuid::new_v4()),
            Some(&bob.token),
            json!({"emoji": "👀"}),
        )
        .await
        .error(404, "NOT_FOUND");

    server
        .delete(&format!("{reactions}/{reaction_id}"), Some(&ada.token))
        .await
        .error(403, "FORBIDDEN");
    let removed = server
        .delete(&format!("{reactions}/{reaction_id}"), Some(&bob.token))
        .await;
    assert_eq!(removed.body["message"], "Reaction removed");
    assert_eq!(removed.data(200), &json!({"removed": true}));
    server
        .delete(&format!("{reactions}/{reaction_id}"), Some(&bob.token))
        .await
        .error(404, "NOT_FOUND");
    // Once removed, the same reaction may be added again.
    server
        .post(&reactions, Some(&bob.token), json!({"emoji": "👍"}))
        .await
        .data(201);
}

#[tokio::test]
async fn pins_need_pin_messages_and_show_in_metadata() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mod_ = server.member("Mo").await;
    let group = server.group(&ada, "Alpha", &[&bob, &mod_]).await;
    server.set_role(&ada, &group, &mod_, "moderator").await;
    let base = format!("/api/groups/{group}");
    let message = server.group_message(&bob, &group, "pin me").await;
    let id = message["id"].as_str().expect("id");
    let pin = format!("{base}/messages/{id}/pin");

    server
        .post(&pin, Some(&bob.token), json!({}))
        .await
        .error(403, "FORBIDDEN");
    let pinned = server.post(&pin, Some(&mod_.token), json!({})).await;
    assert_eq!(pinned.body["message"], "Message pinned");
    assert_eq!(pinned.data(200), &json!({"pinned": true}));
    let meta = server.get(&base, Some(&bob.token)).await;
    assert_eq!(meta.data(200)["pinnedMessageIds"], json!([id]));
    let listed = server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await;
    assert_eq!(listed.data(200)["items"][0]["pinned"], true);

    server
        .delete(&pin, Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    let unpinned = server.delete(&pin, Some(&ada.token)).await;
    assert_eq!(unpinned.body["message"], "Message unpinned");
    assert_eq!(unpinned.data(200), &json!({"unpinned": true}));
    let meta = server.get(&base, Some(&bob.token)).await;
    assert_eq!(meta.data(200)["pinnedMessageIds"], json!([]));
    server
        .post(
            &format!("{base}/messages/{}/pin", Uuid::new_v4()),
            Some(&ada.token),
            json!({}),
        )
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn deletes_follow_ownership_and_rank() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let mod_ = server.member("Mo").await;
    let group = server.group(&ada, "Alpha", &[&bob, &cat, &mod_]).await;
    server.set_role(&ada, &group, &mod_, "moderator").await;
    let base = format!("/api/groups/{group}");
    let bobs = server.group_message(&bob, &group, "bob's").await;
    let owners = server.group_message(&ada, &group, "owner's").await;
    let path = |m: &serde_json::Value| format!("{base}/messages/{}", m["id"].as_str().expect("id"));

    server
        .delete(&path(&bobs), Some(&cat.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .delete(&path(&owners), Some(&mod_.token))
        .await
        .error(403, "FORBIDDEN");
    let pin = format!("{}/pin", path(&bobs));
    server
        .post(&pin, Some(&ada.token), json!({}))
        .await
        .data(200);
    let deleted = server.delete(&path(&bobs), Some(&mod_.token)).await;
    assert_eq!(deleted.data(200), &json!({"deleted": true}));
    server
        .delete(&path(&bobs), Some(&bob.token))
        .await
        .error(404, "NOT_FOUND");
    server
        .delete(&path(&owners), Some(&ada.token))
        .await
        .data(200);

    let history = server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await;
    assert_eq!(history.data(200)["items"], json!([]));
    let meta = server.get(&base, Some(&bob.token)).await;
    assert_eq!(
        meta.data(200)["pinnedMessageIds"],
        json!([]),
        "a deleted message leaves the pins"
    );
}

#[tokio::test]
async fn mutes_block_send_edit_and_react_until_they_expire() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let base = format!("/api/groups/{group}");
    let bobs = server.group_message(&bob, &group, "before").await;
    let bobs_id = bobs["id"].as_str().expect("id");
    let mute = format!("{base}/mute/{}", bob.id);

    for body in [
        json!({}),
        json!({"durationMs": 0}),
        json!({"durationMs": -5}),
        json!({"durationMs": 2_419_200_001i64}),
        json!({"durationMs": "1h"}),
        json!({"durationMs": 1.5}),
    ] {
        server
            .post(&mute, Some(&ada.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .post(
            &format!("{base}/mute/{}", ada.id),
            Some(&bob.token),
            json!({"durationMs": 1000}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("{base}/mute/{}", Uuid::new_v4()),
            Some(&ada.token),
            json!({"durationMs": 1000}),
        )
        .await
        .error(404, "NOT_FOUND");

    let muted = server
        .post(&mute, Some(&ada.token), json!({"durationMs": 3_600_000}))
        .await;
    assert_eq!(muted.body["message"], "Member muted");
    let muted = muted.data(200).clone();
    assert_eq!(muted["muted"], true);
    assert!(muted["until"].as_str().is_some_and(|t| t.ends_with('Z')));
    server
        .post(
            &format!("{base}/messages"),
            Some(&bob.token),
            json!({"content": "hi"}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .put(
            &format!("{base}/messages/{bobs_id}"),
            Some(&bob.token),
            json!({"content": "edit"}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("{base}/messages/{bobs_id}/reactions"),
            Some(&bob.token),
            json!({"emoji": "👍"}),
        )
        .await
        .error(403, "FORBIDDEN");
    // Muted members still read.
    server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await
        .data(200);
    let meta = server.get(&base, Some(&ada.token)).await;
    let entry = meta.data(200)["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["memberId"] == bob.id.to_string())
        .expect("bob")
        .clone();
    assert_eq!(entry["mutedUntil"], muted["until"]);

    let unmuted = server.delete(&mute, Some(&ada.token)).await;
    assert_eq!(unmuted.data(200), &json!({"unmuted": true}));
    server.group_message(&bob, &group, "free again").await;

    // A short mute expires by itself.
    server
        .post(&mute, Some(&ada.token), json!({"durationMs": 300}))
        .await
        .data(200);
    server
        .post(
            &format!("{base}/messages"),
            Some(&bob.token),
            json!({"content": "too soon"}),
        )
        .await
        .error(403, "FORBIDDEN");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    server.group_message(&bob, &group, "expired").await;
}
