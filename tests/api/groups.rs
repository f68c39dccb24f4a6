//! Groups: creation, metadata, lists, encryption with key epochs, membership changes.

use serde_json::json;
use uuid::Uuid;

use crate::common::{TestServer, decrypt_message, member_keys, open_with};

#[tokio::test]
async fn create_and_read_a_group() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let eve = server.member("Eve").await;

    let answer = server
        .post(
            "/api/groups",
            Some(&ada.token),
            json!({"name": "Project Alpha", "memberIds": [bob.id, cat.id, bob.id, ada.id]}),
        )
        .await;
    assert_eq!(answer.body["message"], "Group created");
    let group = answer.data(201).clone();
    assert_eq!(group["name"], "Project Alpha");
    assert_eq!(group["creatorId"], ada.id.to_string());
    assert_eq!(group["keyEpoch"], 1);
    let members = group["members"].as_array().expect("members");
    assert_eq!(
        members.len(),
        3,
        "duplicates and the creator are not added twice"
    );
    let role_of = |id: Uuid| {
        members
            .iter()
            .find(|m| m["memberId"] == id.to_string())
            .map(|m| m["role"].as_str().expect("role").to_owned())
    };
    assert_eq!(role_of(ada.id).as_deref(), Some("owner"));
    assert_eq!(role_of(bob.id).as_deref(), Some("member"));
    assert!(
        members
            .iter()
            .all(|m| m["joinedAt"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    let id = group["id"].as_str().expect("id");

    let got = server
        .get(&format!("/api/groups/{id}"), Some(&bob.token))
        .await;
    let got = got.data(200);
    assert_eq!(got["name"], "Project Alpha");
    assert_eq!(got["pinnedMessageIds"], json!([]));
    assert_eq!(got["lastMessageAt"], serde_json::Value::Null);

    server
        .get(&format!("/api/groups/{id}"), Some(&eve.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .get(&format!("/api/groups/{}", Uuid::new_v4()), Some(&ada.token))
        .await
        .error(404, "NOT_FOUND");
    server
        .get("/api/groups/xyz", Some(&ada.token))
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .get(&format!("/api/groups/{id}"), None)
        .await
        .error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn invalid_groups_are_refused() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    for body in [
        json!({"memberIds": []}),
        json!({"name": "x"}),
        json!({"name": "  ", "memberIds": []}),
        json!({"name": "x".repeat(101), "memberIds": []}),
        json!({"name": "x", "memberIds": ["nope"]}),
        json!({"name": "x", "memberIds": "nope"}),
    ] {
        server
            .post("/api/groups", Some(&ada.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .post(
            "/api/groups",
            Some(&ada.token),
            json!({"name": "x", "memberIds": [Uuid::new_v4()]}),
        )
        .await
        .error(404, "NOT_FOUND");
    let list = server.get("/api/groups", Some(&ada.token)).await;
    assert_eq!(list.data(200)["items"], json!([]), "nothing was created");
}

#[tokio::test]
async fn members_decrypt_messages_with_their_own_keys() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let eve = server.member("Eve").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let base = format!("/api/groups/{group}");

    let sent = server
        .post(
            &format!("{base}/messages"),
            Some(&ada.token),
            json!({"content": "Meeting at 3pm today"}),
        )
        .await;
    assert_eq!(sent.body["message"], "Message sent");
    let sent = sent.data(201).clone();
    assert_eq!(sent["groupId"], group);
    assert_eq!(sent["senderId"], ada.id.to_string());
    assert_eq!(sent["keyEpoch"], 1);

    let keys = member_keys(&server, &bob, &base).await;
    assert_eq!(keys.len(), 1);
    let history = server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await;
    let items = history.data(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    assert_eq!(items.len(), 1);
    assert_eq!(decrypt_message(&keys, &items[0]), "Meeting at 3pm today");
    assert_eq!(items[0]["pinned"], false);
    assert_eq!(items[0]["reactions"], json!([]));
    assert_eq!(items[0]["editedAt"], serde_json::Value::Null);
    // The AAD binds the ciphertext to its message id.
    let key = keys[&1];
    assert!(
        open_with(
            &key,
            &Uuid::new_v4().to_string(),
            &items[0]["encryptedContent"]
        )
        .is_none()
    );

    server
        .get(&format!("{base}/messages"), Some(&eve.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .get(&format!("{base}/keys"), Some(&eve.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("{base}/messages"),
            Some(&eve.token),
            json!({"content": "hi"}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("/api/groups/{}/messages", Uuid::new_v4()),
            Some(&ada.token),
            json!({"content": "hi"}),
        )
        .await
        .error(404, "NOT_FOUND");
    for body in [
        json!({}),
        json!({"content": ""}),
        json!({"content": "   "}),
        json!({"content": 3}),
    ] {
        server
            .post(&format!("{base}/messages"), Some(&ada.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn adding_members_rotates_and_shares_history() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let dan = server.member("Dan").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let base = format!("/api/groups/{group}");
    server.group_message(&ada, &group, "before Cat").await;

    let added = server
        .post(
            &format!("{base}/members"),
            Some(&ada.token),
            json!({"memberIds": [cat.id]}),
        )
        .await;
    assert_eq!(added.data(200), &json!({"added": [cat.id]}));
    let meta = server.get(&base, Some(&cat.token)).await;
    assert_eq!(meta.data(200)["keyEpoch"], 2, "adding rotates the key");
    server.group_message(&bob, &group, "after Cat").await;

    // The newcomer reads everything, old epochs included.
    let keys = member_keys(&server, &cat, &base).await;
    assert_eq!(keys.len(), 2);
    let history = server
        .get(&format!("{base}/messages"), Some(&cat.token))
        .await;
    let texts: Vec<String> = history.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| decrypt_message(&keys, m))
        .collect();
    assert_eq!(texts, ["before Cat", "after Cat"]);
    let epochs: Vec<i64> = history.body["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["keyEpoch"].as_i64().expect("epoch"))
        .collect();
    assert_eq!(epochs, [1, 2]);

    // All or nothing: one already there makes the whole request 409.
    let answer = server
        .post(
            &format!("{base}/members"),
            Some(&ada.token),
            json!({"memberIds": [dan.id, bob.id]}),
        )
        .await;
    answer.error(409, "ALREADY_EXISTS");
    let answer = server
        .post(
            &format!("{base}/members"),
            Some(&ada.token),
            json!({"memberIds": [dan.id, Uuid::new_v4()]}),
        )
        .await;
    answer.error(404, "NOT_FOUND");
    server
        .get(&base, Some(&dan.token))
        .await
        .error(403, "FORBIDDEN");
    let meta = server.get(&base, Some(&ada.token)).await;
    assert_eq!(
        meta.data(200)["members"].as_array().expect("members").len(),
        3
    );
    assert_eq!(
        meta.body["data"]["keyEpoch"], 2,
        "a refused add does not rotate"
    );

    for body in [
        json!({}),
        json!({"memberIds": []}),
        json!({"memberIds": [1]}),
    ] {
        server
            .post(&format!("{base}/members"), Some(&ada.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    // A plain member lacks MANAGE_MEMBERS.
    server
        .post(
            &format!("{base}/members"),
            Some(&bob.token),
            json!({"memberIds": [dan.id]}),
        )
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("/api/groups/{}/members", Uuid::new_v4()),
            Some(&ada.token),
            json!({"memberIds": [dan.id]}),
        )
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn a_removed_member_loses_access_and_future_keys() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let group = server.group(&ada, "Alpha", &[&bob, &cat]).await;
    let base = format!("/api/groups/{group}");
    server
        .group_message(&ada, &group, "everyone sees this")
        .await;
    let bobs_old_keys = member_keys(&server, &bob, &base).await;

    let removed = server
        .delete(&format!("{base}/members/{}", bob.id), Some(&ada.token))
        .await;
    assert_eq!(removed.body["message"], "Member removed");
    assert_eq!(removed.data(200), &json!({"removed": bob.id}));

    let after = server
        .group_message(&ada, &group, "Bob must not read this")
        .await;
    assert_eq!(after["keyEpoch"], 2);
    for key in bobs_old_keys.values() {
        assert!(
            open_with(
                key,
                after["id"].as_str().expect("id"),
                &after["encryptedContent"]
            )
            .is_none()
        );
    }
    server
        .get(&format!("{base}/messages"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .get(&format!("{base}/keys"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    server
        .get(&base, Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
    {
        use sea_orm::{ConnectionTrait, Statement};
        let rows = server
            .state
            .db
            .read
            .query_all_raw(Statement::from_sql_and_values(
                server.state.db.backend(),
                "SELECT epoch FROM member_keys WHERE member_id = $1",
                [bob.id.into()],
            ))
            .await
            .expect("query");
        assert!(
            rows.is_empty(),
            "the removed member's wrapped keys are deleted"
        );
    }
    // Cat holds both epochs and reads both messages.
    let keys = member_keys(&server, &cat, &base).await;
    assert_eq!(keys.len(), 2);
    let history = server
        .get(&format!("{base}/messages"), Some(&cat.token))
        .await;
    let texts: Vec<String> = history.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| decrypt_message(&keys, m))
        .collect();
    assert_eq!(texts, ["everyone sees this", "Bob must not read this"]);

    // Removing a non-member is 404; a member cannot remove.
    server
        .delete(&format!("{base}/members/{}", bob.id), Some(&ada.token))
        .await
        .error(404, "NOT_FOUND");
    server
        .delete(&format!("{base}/members/{}", ada.id), Some(&cat.token))
        .await
        .error(403, "FORBIDDEN");
}

#[tokio::test]
async fn leaving_hands_over_ownership_and_the_last_one_out_deletes() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let dan = server.member("Dan").await;
    let group = server.group(&ada, "Alpha", &[&bob, &cat, &dan]).await;
    let base = format!("/api/groups/{group}");
    // Cat (moderator) outranks Bob (member) though Bob joined at the same time.
    server.set_role(&ada, &group, &cat, "moderator").await;

    let left = server
        .post(&format!("{base}/leave"), Some(&ada.token), json!({}))
        .await;
    assert_eq!(left.body["message"], "Left group");
    assert_eq!(left.data(200), &json!({"left": true}));
    let meta = server.get(&base, Some(&bob.token)).await;
    let members = meta.data(200)["members"]
        .as_array()
        .expect("members")
        .clone();
    let owners: Vec<&serde_json::Value> = members.iter().filter(|m| m["role"] == "owner").collect();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["memberId"], cat.id.to_string());
    assert_eq!(meta.body["data"]["keyEpoch"], 2);

    server
        .post(&format!("{base}/leave"), Some(&ada.token), json!({}))
        .await
        .error(403, "FORBIDDEN");
    for m in [&bob, &cat] {
        server
            .post(&format!("{base}/leave"), Some(&m.token), json!({}))
            .await
            .data(200);
    }
    let meta = server.get(&base, Some(&dan.token)).await;
    assert_eq!(meta.data(200)["members"][0]["role"], "owner");
    server
        .post(&format!("{base}/leave"), Some(&dan.token), json!({}))
        .await
        .data(200);
    server
        .get(&base, Some(&dan.token))
        .await
        .error(404, "NOT_FOUND");
    server
        .post(
            &format!("/api/groups/{}/leave", Uuid::new_v4()),
            Some(&dan.token),
            json!({}),
        )
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn groups_list_newest_activity_first() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let first = server.group(&ada, "First", &[&bob]).await;
    let second = server.group(&bob, "Second", &[&ada]).await;
    let third = server.group(&ada, "Third", &[]).await;
    server.group_message(&bob, &first, "activity").await;

    let list = server.get("/api/groups", Some(&ada.token)).await;
    assert_eq!(list.body["message"], "Groups listed");
    let ids: Vec<String> = list.data(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|g| g["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, [first.clone(), third.clone(), second.clone()]);
    assert!(list.body["data"]["items"][0]["lastMessageAt"].is_string());
    assert_eq!(
        list.body["data"]["items"][0]["members"]
            .as_array()
            .expect("members")
            .len(),
        2
    );

    let page = server.get("/api/groups?limit=2", Some(&ada.token)).await;
    let page = page.data(200).clone();
    assert_eq!(page["hasMore"], true);
    let next = server
        .get(
            &format!(
                "/api/groups?limit=2&cursor={}",
                page["cursor"].as_str().expect("cursor")
            ),
            Some(&ada.token),
        )
        .await;
    assert_eq!(next.data(200)["items"][0]["id"], second);
    assert_eq!(next.body["data"]["hasMore"], false);

    let bobs = server.get("/api/groups", Some(&bob.token)).await;
    assert_eq!(bobs.data(200)["items"].as_array().expect("items").len(), 2);
}

#[tokio::test]
async fn promotion_turns_a_conversation_into_a_readable_group() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let eve = server.member("Eve").await;
    let first = server.dm(&ada, &bob, "Hey, are you free for a call?").await;
    server.dm(&bob, &ada, "Yes, let's add Cat").await;
    let conversation = first["conversationId"].as_str().expect("id");
    let path = format!("/api/conversations/{conversation}/promote");

    let answer = server
        .post(&path, Some(&bob.token), json!({"newMemberIds": [cat.id]}))
        .await;
    assert_eq!(answer.body["message"], "Conversation promoted to group");
    let promoted = answer.data(200).clone();
    assert_eq!(promoted["name"], "Group Chat");
    assert_eq!(promoted["promotedFromConversation"], conversation);
    let mut members: Vec<String> = promoted["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m.as_str().expect("id").to_owned())
        .collect();
    members.sort();
    let mut expected = vec![ada.id.to_string(), bob.id.to_string(), cat.id.to_string()];
    expected.sort();
    assert_eq!(members, expected);

    let group = promoted["groupId"].as_str().expect("id");
    let base = format!("/api/groups/{group}");
    // Cat, who never saw the DM, reads the whole history with the group's key.
    let keys = member_keys(&server, &cat, &base).await;
    let history = server
        .get(&format!("{base}/messages"), Some(&cat.token))
        .await;
    let items = history.data(200)["items"]
        .as_array()
        .expect("items")
        .clone();
    let texts: Vec<String> = items.iter().map(|m| decrypt_message(&keys, m)).collect();
    assert_eq!(
        texts,
        ["Hey, are you free for a call?", "Yes, let's add Cat"]
    );
    assert_eq!(items[0]["senderId"], ada.id.to_string());
    assert_eq!(items[0]["createdAt"], first["createdAt"]);
    let meta = server.get(&base, Some(&ada.token)).await;
    assert_eq!(meta.data(200)["promotedFromConversation"], conversation);
    assert_eq!(
        meta.body["data"]["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["role"] == "owner")
            .expect("owner")["memberId"],
        bob.id.to_string()
    );
    // The group continues after the history.
    let next = server.group_message(&cat, group, "hello both").await;
    assert_eq!(decrypt_message(&keys, &next), "hello both");

    for body in [
        json!({}),
        json!({"newMemberIds": []}),
        json!({"newMemberIds": "x"}),
    ] {
        server
            .post(&path, Some(&ada.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .post(&path, Some(&eve.token), json!({"newMemberIds": [cat.id]}))
        .await
        .error(403, "FORBIDDEN");
    server
        .post(
            &format!("/api/conversations/{}/promote", Uuid::new_v4()),
            Some(&ada.token),
            json!({"newMemberIds": [cat.id]}),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .post(
            &path,
            Some(&ada.token),
            json!({"newMemberIds": [Uuid::new_v4()]}),
        )
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn keys_are_paginated_by_epoch() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let base = format!("/api/groups/{group}");
    server
        .post(
            &format!("{base}/members"),
            Some(&ada.token),
            json!({"memberIds": [cat.id]}),
        )
        .await
        .data(200);
    server
        .delete(&format!("{base}/members/{}", cat.id), Some(&ada.token))
        .await
        .data(200);

    let first = server
        .get(&format!("{base}/keys?limit=2"), Some(&bob.token))
        .await;
    let first = first.data(200).clone();
    let epochs: Vec<i64> = first["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|k| k["epoch"].as_i64().expect("epoch"))
        .collect();
    assert_eq!(epochs, [1, 2]);
    assert_eq!(first["hasMore"], true);
    assert!(first["items"][0]["createdAt"].is_string());
    let rest = server
        .get(
            &format!(
                "{base}/keys?limit=2&cursor={}",
                first["cursor"].as_str().expect("cursor")
            ),
            Some(&bob.token),
        )
        .await;
    assert_eq!(rest.data(200)["items"][0]["epoch"], 3);
    assert_eq!(rest.body["data"]["hasMore"], false);
}
