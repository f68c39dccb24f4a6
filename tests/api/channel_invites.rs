//! Invites: limits, expiry, wrong paths, and concurrent redemptions.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use crate::common::{TestMember, TestServer};

#[tokio::test]
async fn invites_carry_their_limits() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let cat = server.member("Cat").await;
    let dan = server.member("Dan").await;
    let id = server.channel(&ada, "club", "private", true).await;
    let path = format!("/api/channels/{id}/invites");

    let created = server
        .post(
            &path,
            Some(&ada.token),
            json!({"maxUses": 2, "expiresInMs": 86_400_000}),
        )
        .await;
    assert_eq!(created.body["message"], "Invite created");
    let created = created.data(201).clone();
    assert_eq!(created["channelId"], id);
    assert_eq!(created["maxUses"], 2);
    assert_eq!(created["usesRemaining"], 2);
    assert_eq!(created["createdBy"], ada.id.to_string());
    assert!(
        created["expiresAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let token = created["token"].as_str().expect("token").to_owned();
    assert!(token.len() >= 22, "at least 128 random bits");

    let unlimited = server.post(&path, Some(&ada.token), json!({})).await;
    let unlimited = unlimited.data(201).clone();
    assert_eq!(unlimited["maxUses"], serde_json::Value::Null);
    assert_eq!(unlimited["expiresAt"], serde_json::Value::Null);
    assert_ne!(unlimited["token"], created["token"]);

    for body in [
        json!({"maxUses": 0}),
        json!({"maxUses": 100_001}),
        json!({"maxUses": "ten"}),
        json!({"expiresInMs": 999}),
        json!({"expiresInMs": 31_536_000_001i64}),
    ] {
        server
            .post(&path, Some(&ada.token), body)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .post(
            &path,
            Some(&ada.token),
            json!({"maxUses": 100_000, "expiresInMs": 1000}),
        )
        .await
        .data(201);

    let redeem = |token: &str| format!("/api/channels/{id}/invites/{token}/redeem");
    let answer = server
        .post(&redeem(&token), Some(&bob.token), json!({}))
        .await;
    assert_eq!(answer.body["message"], "Invite redeemed");
    assert_eq!(answer.data(200), &json!({"redeemed": true}));
    server
        .post(&redeem(&token), Some(&bob.token), json!({}))
        .await
        .error(409, "ALREADY_EXISTS");
    server
        .post(&redeem(&token), Some(&cat.token), json!({}))
        .await
        .data(200);
    server
        .post(&redeem(&token), Some(&dan.token), json!({}))
        .await
        .error(410, "GONE");
    server
        .post(&redeem("not-a-token"), Some(&dan.token), json!({}))
        .await
        .error(404, "NOT_FOUND");

    // A token redeems only at its own channel's path.
    let other = server.channel(&ada, "other", "private", true).await;
    let foreign = server.invite(&ada, &other, json!({})).await;
    server
        .post(&redeem(&foreign), Some(&dan.token), json!({}))
        .await
        .error(404, "NOT_FOUND");
    server
        .post(
            &format!("/api/channels/{}/invites/{foreign}/redeem", Uuid::new_v4()),
            Some(&dan.token),
            json!({}),
        )
        .await
        .error(404, "NOT_FOUND");

    // Members without CREATE_INVITES cannot make invites; admins can.
    server
        .post(&path, Some(&bob.token), json!({}))
        .await
        .error(403, "FORBIDDEN");
    server
        .put(
            &format!("/api/channels/{id}/roles/{}", bob.id),
            Some(&ada.token),
            json!({"role": "admin"}),
        )
        .await
        .data(200);
    server
        .post(&path, Some(&bob.token), json!({}))
        .await
        .data(201);
}

#[tokio::test]
async fn expired_invites_are_gone() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server.channel(&ada, "club", "secret", true).await;
    let token = server.invite(&ada, &id, json!({"expiresInMs": 1000})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    server
        .post(
            &format!("/api/channels/{id}/invites/{token}/redeem"),
            Some(&bob.token),
            json!({}),
        )
        .await
        .error(410, "GONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redemptions_never_exceed_max_uses() {
    let server = Arc::new(TestServer::start().await);
    let ada = server.member("Ada").await;
    let id = server.channel(&ada, "rush", "invisible", true).await;
    let token = server.invite(&ada, &id, json!({"maxUses": 5})).await;
    let mut members: Vec<TestMember> = Vec::new();
    for i in 0..20 {
        members.push(server.member(&format!("M{i}")).await);
    }
    let tasks: Vec<_> = members
        .into_iter()
        .map(|m| {
            let server = server.clone();
            let path = format!("/api/channels/{id}/invites/{token}/redeem");
            tokio::spawn(async move { server.post(&path, Some(&m.token), json!({})).await })
        })
        .collect();
    let mut ok = 0;
    let mut gone = 0;
    for task in tasks {
        let answer = task.await.expect("task");
        match answer.status.as_u16() {
            200 => ok += 1,
            410 => gone += 1,
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    assert_eq!((ok, gone), (5, 15));
    let meta = server
        .get(&format!("/api/channels/{id}"), Some(&ada.token))
        .await;
    assert_eq!(meta.data(200)["memberCount"], 6);
}
