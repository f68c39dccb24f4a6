//! Wire conventions: envelopes for axum's own rejections, unknown routes, body limits,
//! probes and the OpenAPI document.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestServer;

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    server
        .get("/api/nothing-here", Some(&ada.token))
        .await
        .error(404, "NOT_FOUND");
    server.get("/nothing", None).await.error(404, "NOT_FOUND");
    let answer = server
        .call(Method::PATCH, "/api/conversations", Some(&ada.token), None)
        .await;
    answer.error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn malformed_bodies_are_400_and_large_ones_413() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let token = Some(ada.token.as_str());

    server
        .raw(
            Method::POST,
            "/api/conversations",
            token,
            "application/json",
            b"{\"recipientId\": ".to_vec(),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .raw(
            Method::POST,
            "/api/conversations",
            token,
            "text/plain",
            b"{}".to_vec(),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .raw(
            Method::POST,
            "/api/members",
            None,
            "application/json",
            b"not json".to_vec(),
        )
        .await
        .error(400, "VALIDATION_ERROR");

    let huge = json!({"recipientId": bob.id, "content": "a".repeat(70 * 1024)});
    server
        .raw(
            Method::POST,
            "/api/conversations",
            token,
            "application/json",
            serde_json::to_vec(&huge).expect("json"),
        )
        .await
        .error(413, "PAYLOAD_TOO_LARGE");
    // The server keeps serving.
    server.dm(&ada, &bob, "still here").await;
}

#[tokio::test]
async fn probes_answer() {
    let server = TestServer::start().await;
    assert_eq!(server.get("/healthz", None).await.data(200)["status"], "ok");
    assert_eq!(server.get("/readyz", None).await.data(200)["status"], "ok");
}

#[tokio::test]
async fn openapi_documents_every_route_with_schemas() {
    let server = TestServer::start().await;
    let response = server
        .client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    let expected = [
        ("post", "/api/members", true),
        ("get", "/api/members/me", false),
        ("patch", "/api/members/me", true),
        ("get", "/api/members/{id}", false),
        ("post", "/api/members/{id}/block", false),
        ("delete", "/api/members/{id}/block", false),
        ("post", "/api/auth/challenge", true),
        ("post", "/api/auth/login", true),
        ("delete", "/api/auth/token", false),
        ("put", "/api/presence", true),
        ("post", "/api/conversations", true),
        ("get", "/api/conversations", false),
        ("get", "/api/conversations/{conversationId}/messages", false),
        (
            "delete",
            "/api/conversations/{conversationId}/messages/{messageId}",
            false,
        ),
        ("post", "/api/conversations/{conversationId}/promote", true),
        ("post", "/api/groups", true),
        ("get", "/api/groups", false),
        ("get", "/api/groups/{groupId}", false),
        ("post", "/api/groups/{groupId}/messages", true),
        ("get", "/api/groups/{groupId}/messages", false),
        ("put", "/api/groups/{groupId}/messages/{messageId}", true),
        (
            "delete",
            "/api/groups/{groupId}/messages/{messageId}",
            false,
        ),
        ("post", "/api/groups/{groupId}/members", true),
        ("get", "/api/groups/{groupId}/members", false),
        ("delete", "/api/groups/{groupId}/members/{memberId}", false),
        ("post", "/api/groups/{groupId}/leave", false),
        ("put", "/api/groups/{groupId}/roles/{memberId}", true),
        (
            "post",
            "/api/groups/{groupId}/messages/{messageId}/reactions",
            true,
        ),
        (
            "delete",
            "/api/groups/{groupId}/messages/{messageId}/reactions/{reactionId}",
            false,
        ),
        (
            "post",
            "/api/groups/{groupId}/messages/{messageId}/pin",
            false,
        ),
        (
            "delete",
            "/api/groups/{groupId}/messages/{messageId}/pin",
            false,
        ),
        ("post", "/api/groups/{groupId}/mute/{memberId}", true),
        ("delete", "/api/groups/{groupId}/mute/{memberId}", false),
        ("get", "/api/groups/{groupId}/keys", false),
        ("post", "/api/channels", true),
        ("get", "/api/channels", false),
        ("get", "/api/channels/{channelId}", false),
        ("put", "/api/channels/{channelId}", true),
        ("delete", "/api/channels/{channelId}", false),
        ("get", "/api/channels/{channelId}/members", false),
        ("post", "/api/channels/{channelId}/join", false),
        ("post", "/api/channels/{channelId}/leave", false),
        ("post", "/api/channels/{channelId}/kick/{memberId}", false),
        ("post", "/api/channels/{channelId}/invites", true),
        (
            "post",
            "/api/channels/{channelId}/invites/{token}/redeem",
            false,
        ),
        ("post", "/api/channels/{channelId}/messages", true),
        ("get", "/api/channels/{channelId}/messages", false),
        ("get", "/api/channels/{channelId}/messages/search", false),
        ("get", "/api/channels/{channelId}/audit", false),
        ("get", "/api/groups/{groupId}/audit", false),
        ("delete", "/api/channels/{channelId}/lock", false),
        ("delete", "/api/groups/{groupId}/lock", false),
        (
            "put",
            "/api/channels/{channelId}/messages/{messageId}",
            true,
        ),
        (
            "delete",
            "/api/channels/{channelId}/messages/{messageId}",
            false,
        ),
        ("put", "/api/channels/{channelId}/roles/{memberId}", true),
        (
            "post",
            "/api/channels/{channelId}/messages/{messageId}/reactions",
            true,
        ),
        (
            "delete",
            "/api/channels/{channelId}/messages/{messageId}/reactions/{reactionId}",
            false,
        ),
        (
            "post",
            "/api/channels/{channelId}/messages/{messageId}/pin",
            false,
        ),
        (
            "delete",
            "/api/channels/{channelId}/messages/{messageId}/pin",
            false,
        ),
        ("post", "/api/channels/{channelId}/mute/{memberId}", true),
        ("delete", "/api/channels/{channelId}/mute/{memberId}", false),
        ("get", "/api/channels/{channelId}/keys", false),
        ("get", "/api/events", false),
        ("get", "/healthz", false),
        ("get", "/readyz", false),
        ("get", "/openapi.json", false),
    ];
    for (method, path, has_body) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        if has_body {
            assert!(
                operation["requestBody"]["content"]["application/json"]["schema"].is_object(),
                "{method} {path} has no request schema"
            );
        }
        if path.starts_with("/api") && path != "/api/events" {
            let responses = operation["responses"].as_object().expect("responses");
            let success = responses
                .iter()
                .find(|(code, _)| code.starts_with('2'))
                .unwrap_or_else(|| panic!("{method} {path} has no success response"));
            assert!(
                success.1["content"]["application/json"]["schema"].is_object(),
                "{method} {path} has no response schema"
            );
        }
    }
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |ops| ops.len()))
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "an undocumented or unexpected operation"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
