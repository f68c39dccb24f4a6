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

/// The document at `GET /openapi.json`.
async fn fetch_document(server: &TestServer) -> Value {
    let response = server
        .client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// Every `$ref` string in `value`.
fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => refs.push(target),
                    _ => collect_refs(inner, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

/// `(method, path, operation)` of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            out.push((method.clone(), path.clone(), operation));
        }
    }
    out
}

/// What generators need: every reference resolves, operation ids are unique and stable,
/// every authenticated operation documents 401, every API write (what rate limits and
/// slow mode apply to) 429 with `Retry-After` and no read 429, and every documented
/// operation is served.
#[tokio::test]
async fn openapi_document_is_complete_and_consistent() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for target in &refs {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target} is not a local reference"));
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }

    let operations = operations(&doc);
    let mut ids: Vec<&str> = operations
        .iter()
        .map(|(method, path, operation)| {
            operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
        })
        .collect();
    for (method, path, operation) in &operations {
        let tag = operation["tags"][0].as_str().expect("tag");
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            id.starts_with(&format!("{tag}_")),
            "{method} {path}: {id} is not named after its tag {tag}"
        );
    }
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "operation ids repeat");
    // Generated clients name their functions after these: a change here breaks them.
    assert_eq!(ids, STABLE_OPERATION_IDS);

    for (method, path, operation) in &operations {
        let responses = &operation["responses"];
        let secured = operation["security"]
            .as_array()
            .is_some_and(|requirements| !requirements.is_empty());
        if secured || path == "/api/events" {
            assert_eq!(
                responses["401"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorEnvelope",
                "{method} {path} does not document 401"
            );
        }
        let write = matches!(method.as_str(), "post" | "put" | "patch" | "delete");
        if path.starts_with("/api/") && !write {
            assert!(
                responses["429"].is_null(),
                "{method} {path}: a read documents 429, which it never answers"
            );
        }
        if path.starts_with("/api/") && write {
            let limited = &responses["429"];
            assert_eq!(
                limited["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorEnvelope",
                "{method} {path} does not document 429"
            );
            assert_eq!(
                limited["headers"]["Retry-After"]["schema"]["type"], "integer",
                "{method} {path}: 429 without Retry-After"
            );
        }
        // A malformed id, parameter or body is 400; a body over 64 KiB is 413; anything
        // under /api can find the server busy (503 with Retry-After).
        let takes_parameters = operation["parameters"]
            .as_array()
            .is_some_and(|parameters| !parameters.is_empty());
        let takes_body = !operation["requestBody"].is_null();
        if takes_parameters || takes_body {
            assert!(
                !responses["400"].is_null(),
                "{method} {path} does not document 400"
            );
        }
        if takes_body {
            assert!(
                !responses["413"].is_null(),
                "{method} {path} does not document 413"
            );
        }
        if path.starts_with("/api/") {
            assert_eq!(
                responses["503"]["headers"]["Retry-After"]["schema"]["type"], "integer",
                "{method} {path} does not document 503 with Retry-After"
            );
        }
    }

    // Every documented operation is routed: the router's own 404 ("No such route") and 405
    // never answer it. Path parameters get a placeholder; no token, so nothing is written.
    let unrouted = |status: u16, body: &str| {
        status == 405 || (status == 404 && body.contains("No such route"))
    };
    let probe = |method: &str, path: &str| {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let url = format!("{}{path}", server.base);
        let request = server.client.request(method, url);
        async move {
            let response = request.send().await.expect("the server answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };
    let (status, body) = probe("get", "/api/no-such-thing").await;
    assert!(
        unrouted(status, &body),
        "the probe cannot tell: {status} {body}"
    );
    let (status, body) = probe("patch", "/api/presence").await;
    assert!(
        unrouted(status, &body),
        "the probe cannot tell: {status} {body}"
    );
    for (method, path, _) in &operations {
        let concrete: String = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "00000000-0000-0000-0000-000000000000"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let (status, body) = probe(method, &concrete).await;
        assert!(
            !unrouted(status, &body),
            "{method} {path} is documented but not served: {status} {body}"
        );
    }
}

/// The operation ids, sorted.
const STABLE_OPERATION_IDS: [&str; 66] = [
    "auth_challenge",
    "auth_login",
    "auth_logout",
    "channels_assign_role",
    "channels_audit_log",
    "channels_create",
    "channels_create_invite",
    "channels_delete",
    "channels_delete_message",
    "channels_edit",
    "channels_get",
    "channels_history",
    "channels_join",
    "channels_keys",
    "channels_kick",
    "channels_leave",
    "channels_list",
    "channels_members",
    "channels_mute",
    "channels_pin",
    "channels_react",
    "channels_redeem",
    "channels_search",
    "channels_send",
    "channels_unlock",
    "channels_unmute",
    "channels_unpin",
    "channels_unreact",
    "channels_update",
    "conversations_delete_message",
    "conversations_list",
    "conversations_messages",
    "conversations_promote",
    "conversations_send",
    "events_subscribe",
    "groups_add_members",
    "groups_assign_role",
    "groups_audit_log",
    "groups_create",
    "groups_delete_message",
    "groups_edit",
    "groups_get",
    "groups_history",
    "groups_keys",
    "groups_leave",
    "groups_list",
    "groups_members",
    "groups_mute",
    "groups_pin",
    "groups_react",
    "groups_remove_member",
    "groups_send",
    "groups_unlock",
    "groups_unmute",
    "groups_unpin",
    "groups_unreact",
    "members_block",
    "members_get",
    "members_me",
    "members_register",
    "members_set_presence",
    "members_unblock",
    "members_update_me",
    "operations_healthz",
    "operations_openapi",
    "operations_readyz",
];
