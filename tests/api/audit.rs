//! The moderation audit log: what is recorded, who may read it, and its paging.

use serde_json::{Value, json};

use crate::common::TestServer;

fn entries(answer: &Value) -> Vec<Value> {
    answer["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn moderation_actions_are_audited_and_only_owners_and_admins_read_them() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let dan = server.member("Dan").await;
    let id = server.channel(&ada, "moderated", "public", true).await;
    let base = format!("/api/channels/{id}");
    for m in [&bob, &cat, &dan] {
        server
            .post(&format!("{base}/join"), Some(&m.token), json!({}))
            .await
            .data(200);
    }
    server
        .put(
            &format!("{base}/roles/{}", bob.id),
            Some(&ada.token),
            json!({"role": "admin"}),
        )
        .await
        .data(200);
    server
        .put(
            &format!("{base}/roles/{}", cat.id),
            Some(&ada.token),
            json!({"role": "moderator"}),
        )
        .await
        .data(200);
    server
        .post(
            &format!("{base}/mute/{}", dan.id),
            Some(&cat.token),
            json!({"durationMs": 60_000}),
        )
        .await
        .data(200);
    server
        .delete(&format!("{base}/mute/{}", dan.id), Some(&cat.token))
        .await
        .data(200);
    let message = server.channel_message(&dan, &id, "spam spam").await;
    server
        .delete(
            &format!("{base}/messages/{}", message["id"].as_str().expect("id")),
            Some(&cat.token),
        )
        .await
        .data(200);
    // A member deleting its own message is not a moderation action.
    let own = server.channel_message(&dan, &id, "oops").await;
    server
        .delete(
            &format!("{base}/messages/{}", own["id"].as_str().expect("id")),
            Some(&dan.token),
        )
        .await
        .data(200);
    let token = server.invite(&bob, &id, json!({"maxUses": 2})).await;
    server
        .put(&base, Some(&ada.token), json!({"topic": "Moderated talk"}))
        .await
        .data(200);
    // An update that changes nothing is no moderation action.
    server
        .put(&base, Some(&ada.token), json!({}))
        .await
        .data(200);
    server
        .post(
            &format!("{base}/kick/{}", dan.id),
            Some(&cat.token),
            json!({}),
        )
        .await
        .data(200);
    server
        .post(
            &format!("{base}/invites/{token}/redeem"),
            Some(&dan.token),
            json!({}),
        )
        .await
        .data(200);

    let log = server.get(&format!("{base}/audit"), Some(&bob.token)).await;
    let items = entries(log.data(200));
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    // Newest first.
    assert_eq!(
        actions,
        vec![
            "invite_redeem",
            "kick",
            "settings_change",
            "invite_create",
            "message_delete",
            "unmute",
            "mute",
            "role_change",
            "role_change"
        ]
    );
    let mute = &items[6];
    assert_eq!(mute["actorId"], cat.id.to_string());
    assert_eq!(mute["targetId"], dan.id.to_string());
    assert_eq!(mute["contextType"], "channel");
    assert_eq!(mute["contextId"], id);
    assert_eq!(mute["outcome"], "allowed");
    assert!(mute["plugin"].is_null());
    assert!(mute["createdAt"].is_string());
    assert_eq!(items[4]["targetId"], dan.id.to_string());

    // Owners and admins read it; a moderator or member does not, an outsider neither.
    server
        .get(&format!("{base}/audit"), Some(&ada.token))
        .await
        .data(200);
    server
        .get(&format!("{base}/audit"), Some(&cat.token))
        .await
        .error(403, "FORBIDDEN");
    let eve = server.member("Eve").await;
    server
        .get(&format!("{base}/audit"), Some(&eve.token))
        .await
        .error(403, "FORBIDDEN");
    let hidden = server.channel(&ada, "hidden", "invisible", true).await;
    server
        .get(&format!("/api/channels/{hidden}/audit"), Some(&eve.token))
        .await
        .error(404, "NOT_FOUND");

    // Paged like every list, without repeats.
    let first = server
        .get(&format!("{base}/audit?limit=4"), Some(&bob.token))
        .await;
    let first = first.data(200).clone();
    assert_eq!(entries(&first).len(), 4);
    assert_eq!(first["hasMore"], true);
    let cursor = first["cursor"].as_str().expect("cursor");
    let next = server
        .get(
            &format!("{base}/audit?limit=4&cursor={cursor}"),
            Some(&bob.token),
        )
        .await;
    let next = entries(next.data(200));
    assert_eq!(next[0]["id"], items[4]["id"]);

    // GraphQL gives the same.
    let answer = server
        .graphql(
            Some(&ada.token),
            "query($c: UUID!) { auditLog(kind: CHANNEL, contextId: $c, page: {limit: 2}) { items { action outcome } } }",
            json!({"c": id}),
        )
        .await;
    assert_eq!(
        answer["data"]["auditLog"]["items"][0]["action"], "invite_redeem",
        "{answer}"
    );
}

#[tokio::test]
async fn group_removals_are_audited() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let group = server.group(&ada, "Team", &[&bob, &cat]).await;
    server
        .delete(
            &format!("/api/groups/{group}/members/{}", cat.id),
            Some(&ada.token),
        )
        .await
        .data(200);
    let log = server
        .get(&format!("/api/groups/{group}/audit"), Some(&ada.token))
        .await;
    let items = entries(log.data(200));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["action"], "remove");
    assert_eq!(items[0]["targetId"], cat.id.to_string());
    assert_eq!(items[0]["contextType"], "group");
    server
        .get(&format!("/api/groups/{group}/audit"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
}
