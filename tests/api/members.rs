//! Registration, lookup, blocking and presence.

use serde_json::json;

use crate::common::{TestServer, new_keypair};

#[tokio::test]
async fn registration_returns_the_member_with_a_compressed_key() {
    let server = TestServer::start().await;
    let (secret, compressed) = new_keypair();
    let key = k256::ecdsa::SigningKey::from_slice(&secret).expect("key");
    let uncompressed = hex::encode(key.verifying_key().to_sec1_point(false).as_bytes());
    assert_eq!(uncompressed.len(), 130);

    let answer = server
        .post(
            "/api/members",
            None,
            json!({"displayName": "  Ada  ", "publicKey": uncompressed}),
        )
        .await;
    let data = answer.data(201);
    assert_eq!(answer.body["message"], "Member registered");
    assert_eq!(data["displayName"], "Ada");
    assert_eq!(data["publicKey"], compressed);
    assert!(
        data["id"]
            .as_str()
            .is_some_and(|id| id.parse::<uuid::Uuid>().is_ok())
    );
    let created = data["createdAt"].as_str().expect("createdAt");
    assert_eq!(created.len(), "2026-03-13T10:00:00.000Z".len(), "{created}");
    assert!(created.ends_with('Z'));
}

#[tokio::test]
async fn invalid_registrations_are_400() {
    let server = TestServer::start().await;
    let (_, key) = new_keypair();
    let mut off_curve = String::from("02");
    off_curve.push_str(&"ff".repeat(32));
    for body in [
        json!({"displayName": "Ada"}),
        json!({"publicKey": key}),
        json!({"displayName": "Ada", "publicKey": "not hex"}),
        json!({"displayName": "Ada", "publicKey": "02abcd"}),
        json!({"displayName": "Ada", "publicKey": off_curve}),
        json!({"displayName": "   ", "publicKey": key}),
        json!({"displayName": "x".repeat(65), "publicKey": key}),
        json!({"displayName": "a\u{0007}b", "publicKey": key}),
        json!({"displayName": 5, "publicKey": key}),
    ] {
        server
            .post("/api/members", None, body.clone())
            .await
            .error(400, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn the_same_public_key_registers_once() {
    let server = TestServer::start().await;
    let (_, key) = new_keypair();
    server
        .post(
            "/api/members",
            None,
            json!({"displayName": "Ada", "publicKey": key}),
        )
        .await
        .data(201);
    server
        .post(
            "/api/members",
            None,
            json!({"displayName": "Eve", "publicKey": key}),
        )
        .await
        .error(409, "ALREADY_EXISTS");
}

#[tokio::test]
async fn closed_registration_is_403() {
    let server =
        TestServer::start_with(|c| c.registration = brightchat::config::Registration::Closed).await;
    let (_, key) = new_keypair();
    server
        .post(
            "/api/members",
            None,
            json!({"displayName": "Ada", "publicKey": key}),
        )
        .await
        .error(403, "FORBIDDEN");
}

#[tokio::test]
async fn me_and_lookup() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;

    let me = server.get("/api/members/me", Some(&ada.token)).await;
    let me = me.data(200);
    assert_eq!(me["id"], ada.id.to_string());
    assert_eq!(me["displayName"], "Ada");
    assert_eq!(me["publicKey"], ada.public_hex);

    let other = server
        .get(&format!("/api/members/{}", bob.id), Some(&ada.token))
        .await;
    assert_eq!(other.data(200)["displayName"], "Bob");

    server
        .get(
            &format!("/api/members/{}", uuid::Uuid::new_v4()),
            Some(&ada.token),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .get("/api/members/not-a-uuid", Some(&ada.token))
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .get("/api/members/me", None)
        .await
        .error(401, "UNAUTHORIZED");
    server
        .get(&format!("/api/members/{}", bob.id), None)
        .await
        .error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn blocking_and_unblocking() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let path = format!("/api/members/{}/block", bob.id);

    let blocked = server.post(&path, Some(&ada.token), json!({})).await;
    assert_eq!(blocked.data(200), &json!({"blocked": true}));
    // Blocking twice is harmless.
    server
        .post(&path, Some(&ada.token), json!({}))
        .await
        .data(200);

    let unblocked = server.delete(&path, Some(&ada.token)).await;
    assert_eq!(unblocked.data(200), &json!({"unblocked": true}));
    server.delete(&path, Some(&ada.token)).await.data(200);

    server
        .post(
            &format!("/api/members/{}/block", ada.id),
            Some(&ada.token),
            json!({}),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .post(
            &format!("/api/members/{}/block", uuid::Uuid::new_v4()),
            Some(&ada.token),
            json!({}),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .delete(
            &format!("/api/members/{}/block", uuid::Uuid::new_v4()),
            Some(&ada.token),
        )
        .await
        .error(404, "NOT_FOUND");
    server
        .post(&path, None, json!({}))
        .await
        .error(401, "UNAUTHORIZED");
    server
        .post("/api/members/xyz/block", Some(&ada.token), json!({}))
        .await
        .error(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn presence_accepts_the_four_statuses() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    for status in ["online", "idle", "dnd", "offline"] {
        let answer = server
            .put("/api/presence", Some(&ada.token), json!({"status": status}))
            .await;
        assert_eq!(answer.data(200), &json!({"status": status}));
    }
    for bad in [json!({"status": "away"}), json!({"status": 1}), json!({})] {
        server
            .put("/api/presence", Some(&ada.token), bad)
            .await
            .error(400, "VALIDATION_ERROR");
    }
    server
        .put("/api/presence", None, json!({"status": "online"}))
        .await
        .error(401, "UNAUTHORIZED");
}
