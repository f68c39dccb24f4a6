//! `/graphql` over HTTP: the parser guard, error bodies, GET, and cost.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Gql, LEGACY, MODERN, still_serving};
use crate::common::{TestServer, gql_code, member_keys, open_with};

/// Status, content type and JSON body of a request to `/graphql`.
async fn call(request: reqwest::RequestBuilder) -> (u16, String, Value) {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("not JSON ({status}, {content_type}): {text}"));
    (status, content_type, body)
}

async fn post_raw(server: &TestServer, body: impl Into<reqwest::Body>) -> (u16, String, Value) {
    let request = server
        .client
        .post(format!("{}/graphql", server.base))
        .header("content-type", "application/json")
        .body(body);
    call(request).await
}

async fn get_query(server: &TestServer, token: &str, query: &str) -> (u16, String, Value) {
    let url =
        reqwest::Url::parse_with_params(&format!("{}/graphql", server.base), [("query", query)])
            .expect("a URL");
    let request = server.client.get(url).bearer_auth(token);
    call(request).await
}

/// One error with this code, and nothing internal in its message.
#[track_caller]
fn assert_error(body: &Value, code: &str) {
    assert_eq!(gql_code(body).as_deref(), Some(code), "{body}");
    let message = body["errors"][0]["message"].as_str().expect("a message");
    for internal in [
        "InvalidRequest",
        "Error(",
        "EOF while",
        "UnsupportedBatch",
        "serde",
    ] {
        assert!(!message.contains(internal), "internal text: {message}");
    }
}

fn nested_list(depth: usize) -> String {
    format!(
        "{{me(x:{}1{}){{id}}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn nested_object(depth: usize) -> String {
    format!(
        "{{me(x:{}1{}){{id}}}}",
        "{a:".repeat(depth),
        "}".repeat(depth)
    )
}

fn nested_default(depth: usize) -> String {
    format!(
        "query($v:[Int]={}1{}){{me{{id}}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[tokio::test]
async fn deep_nesting_is_refused_on_every_path_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    for document in [
        nested_list(1_600),
        nested_object(1_600),
        nested_default(1_600),
    ] {
        // POST, signed in or not.
        for token in [None, Some(ada.token.as_str())] {
            let answer = server.graphql(token, &document, json!({})).await;
            assert!(answer["data"].is_null(), "{answer}");
            assert_error(&answer, "VALIDATION_ERROR");
        }
        // GET ?query=.
        let (status, content_type, answer) = get_query(&server, &ada.token, &document).await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        assert_error(&answer, "VALIDATION_ERROR");
        // Both socket protocols.
        for protocol in [MODERN, LEGACY] {
            let mut socket = Gql::signed_in(&server, protocol, &ada.token).await;
            socket.subscribe("deep", &document).await;
            let reply = socket.next_for("deep").await;
            assert_error(&reply["payload"], "VALIDATION_ERROR");
        }
        still_serving(&server, &ada.token).await;
    }
    // 100,000 levels: over the body limit by POST (a URL cannot carry it), over the frame
    // limit on a socket.
    let huge = nested_list(100_000);
    let (status, _, answer) = post_raw(&server, json!({"query": huge}).to_string()).await;
    assert_eq!(status, 413, "{answer}");
    assert_error(&answer, "PAYLOAD_TOO_LARGE");
    let mut socket = Gql::signed_in(&server, MODERN, &ada.token).await;
    socket.subscribe("huge", &huge).await;
    assert_eq!(socket.closed(Duration::from_secs(5)).await.0, Some(1009));
    // Deep but within the size limits: refused by the guard.
    let deep = nested_list(20_000);
    let answer = server.graphql(None, &deep, json!({})).await;
    assert_error(&answer, "VALIDATION_ERROR");
    let (status, _, answer) = get_query(&server, &ada.token, &nested_list(10_000)).await;
    assert_eq!(status, 200, "{answer}");
    assert_error(&answer, "VALIDATION_ERROR");
    // Brackets inside strings and comments are not nesting.
    let quoted = format!("# {}\n{{ me {{ id displayName }} }}", "[".repeat(1_000));
    let answer = server.graphql(Some(&ada.token), &quoted, json!({})).await;
    assert_eq!(answer["data"]["me"]["displayName"], "Ada", "{answer}");
    still_serving(&server, &ada.token).await;
}

#[tokio::test]
async fn every_graphql_answer_is_json_with_a_code() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;

    // Broken JSON: 400, JSON, a code, no parser debug text.
    let (status, content_type, body) = post_raw(&server, "{\"query\": \"{ me { id }").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_error(&body, "VALIDATION_ERROR");
    // Not a GraphQL request (no query).
    let (status, _, body) = post_raw(&server, "{\"variables\": {}}").await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "VALIDATION_ERROR");
    // A batch: refused cleanly.
    let (status, _, body) = post_raw(&server, "[{\"query\": \"{ me { id } }\"}]").await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "VALIDATION_ERROR");
    // Over 64 KiB: 413 in JSON.
    let big = json!({"query": format!("{{ me {{ id }} }} #{}", "x".repeat(70_000))});
    let (status, content_type, body) = post_raw(&server, big.to_string()).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_error(&body, "PAYLOAD_TOO_LARGE");
    // A parse error and an unknown field carry a code.
    for document in ["{ me { id }", "{ nothing }"] {
        let answer = server.graphql(Some(&ada.token), document, json!({})).await;
        assert_error(&answer, "VALIDATION_ERROR");
    }
    // Not a WebSocket request at /graphql/ws.
    let request = server.client.get(format!("{}/graphql/ws", server.base));
    let (status, content_type, body) = call(request).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_error(&body, "VALIDATION_ERROR");

    // GET runs queries, never mutations, and without a query serves GraphiQL.
    let (status, _, body) = get_query(&server, &ada.token, "{ me { displayName } }").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["me"]["displayName"], "Ada");
    let (status, _, body) = get_query(&server, &ada.token, "mutation { logout }").await;
    assert_eq!(status, 405, "{body}");
    assert_error(&body, "METHOD_NOT_ALLOWED");
    still_serving(&server, &ada.token).await;
    let page = server
        .client
        .get(format!("{}/graphql", server.base))
        .send()
        .await
        .expect("GraphiQL");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.expect("html").contains("graphiql"));
}

#[tokio::test]
async fn list_fields_cost_their_page_size() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let group = server.group(&ada, "Costly", &[&bob]).await;
    let message = server.group_message(&ada, &group, "first").await;
    let vars = json!({"g": group});

    // Fifty 100-message pages in one document: refused before anything runs.
    let aliases: String = (0..50)
        .map(|i| {
            format!(
                "m{i}: messages(kind: GROUP, contextId: $g, page: {{limit: 100}}) {{ items {{ encryptedContent }} }} "
            )
        })
        .collect();
    let answer = server
        .graphql(
            Some(&ada.token),
            &format!("query($g: UUID!) {{ {aliases} }}"),
            vars.clone(),
        )
        .await;
    assert!(answer["data"].is_null(), "{answer}");
    assert_error(&answer, "VALIDATION_ERROR");
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too complex")),
        "{answer}"
    );

    // One page of 100 with every field fits.
    let full = "query($g: UUID!) { messages(kind: GROUP, contextId: $g, page: {limit: 100}) { items { id groupId channelId senderId encryptedContent keyEpoch createdAt editedAt pinned reactions { reactionId emoji memberId createdAt } editHistory { content keyEpoch editedAt } sender { id displayName } } cursor hasMore } }";
    let answer = server.graphql(Some(&ada.token), full, vars.clone()).await;
    assert!(answer["errors"].is_null(), "{answer}");
    assert_eq!(answer["data"]["messages"]["items"][0]["id"], message["id"]);

    // Mutations weigh more than reads: 400 of them in one document are refused.
    let writes: String = (0..400)
        .map(|i| format!("p{i}: setPresence(input: {{status: ONLINE}}) {{ status }} "))
        .collect();
    let answer = server
        .graphql(
            Some(&ada.token),
            &format!("mutation {{ {writes} }}"),
            json!({}),
        )
        .await;
    assert!(answer["data"].is_null(), "{answer}");
    assert_error(&answer, "VALIDATION_ERROR");
    still_serving(&server, &ada.token).await;
}

#[tokio::test]
async fn edit_history_is_capped_to_the_newest_versions() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let group = server.group(&ada, "Edits", &[]).await;
    let message = server.group_message(&ada, &group, "v0").await;
    let id = message["id"].as_str().expect("id").to_owned();
    for n in 1..=12 {
        server
            .put(
                &format!("/api/groups/{group}/messages/{id}"),
                Some(&ada.token),
                json!({"content": format!("v{n}")}),
            )
            .await
            .data(200);
    }
    let history = server
        .get(&format!("/api/groups/{group}/messages"), Some(&ada.token))
        .await;
    let rest_edits = history.data(200)["items"][0]["editHistory"].clone();
    assert_eq!(
        rest_edits.as_array().map(Vec::len),
        Some(10),
        "{rest_edits}"
    );
    let answer = server
        .graphql(
            Some(&ada.token),
            "query($g: UUID!) { messages(kind: GROUP, contextId: $g) { items { editHistory { content editedAt } } } }",
            json!({"g": group}),
        )
        .await;
    let gql_edits = &answer["data"]["messages"]["items"][0]["editHistory"];
    assert_eq!(gql_edits.as_array().map(Vec::len), Some(10), "{answer}");
    // The newest ten, oldest first: the same on both APIs.
    for (rest, gql) in rest_edits
        .as_array()
        .into_iter()
        .flatten()
        .zip(gql_edits.as_array().into_iter().flatten())
    {
        assert_eq!(rest["content"], gql["content"]);
    }
    // The newest ten versions (v2 … v11), oldest first.
    let keys = member_keys(&server, &ada, &format!("/api/groups/{group}")).await;
    let texts: Vec<String> = rest_edits
        .as_array()
        .into_iter()
        .flatten()
        .map(|edit| {
            let key = keys[&edit["keyEpoch"].as_i64().expect("epoch")];
            open_with(&key, &id, &edit["content"]).expect("decrypts")
        })
        .collect();
    let expected: Vec<String> = (2..=11).map(|n| format!("v{n}")).collect();
    assert_eq!(texts, expected);
}
