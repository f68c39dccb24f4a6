//! Rate limits (CONTRACT.md "Operations"): `BRIGHTCHAT_RATE_AUTH` per client address over
//! registration and sign-in, `BRIGHTCHAT_RATE_WRITE` per member over every other write, on
//! REST, GraphQL and the event socket; shared across nodes through Redis.

use std::time::Duration;

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{RedisServer, TestServer, gql_code, new_keypair};

/// Status, `Retry-After` and JSON body of a request.
async fn send(request: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.expect("a JSON body");
    (status, retry_after, body)
}

/// Checks a 429 `RATE_LIMITED` envelope with a whole-second `Retry-After` of 1 to 60.
#[track_caller]
fn assert_limited(status: u16, retry_after: Option<String>, body: &Value) {
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    let secs: u64 = retry_after
        .expect("a Retry-After header")
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
}

/// `POST /api/auth/challenge` for an unknown member (always 200 within the limit).
async fn challenge(
    server: &TestServer,
    forwarded_for: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = server
        .client
        .post(format!("{}/api/auth/challenge", server.base))
        .json(&json!({"memberId": Uuid::new_v4()}));
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    send(request).await
}

async fn members(server: &TestServer) -> u64 {
    entity::member::Entity::find()
        .count(&server.state.db.read)
        .await
        .expect("count")
}

#[tokio::test]
async fn the_auth_limit_refuses_with_retry_after_and_creates_nothing() {
    let server = TestServer::start_with(|c| c.rate_auth = 3).await;
    for name in ["Ada", "Bob", "Cy"] {
        server.register_only(name).await;
    }
    let before = members(&server).await;
    let (_, public_hex) = new_keypair();
    let (status, retry_after, body) = send(
        server
            .client
            .post(format!("{}/api/members", server.base))
            .json(&json!({"displayName": "Dee", "publicKey": public_hex})),
    )
    .await;
    assert_limited(status, retry_after, &body);
    assert_eq!(
        members(&server).await,
        before,
        "the refused registration created nothing"
    );
    let (status, retry_after, body) = challenge(&server, None).await;
    assert_limited(status, retry_after, &body);
    // Other routes are not limited per address.
    assert_eq!(server.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn the_write_limit_covers_rest_writes_but_not_reads() {
    let server = TestServer::start_with(|c| c.rate_write = 3).await;
    let ada = server.member("Ada").await;
    for status in ["dnd", "idle", "online"] {
        server
            .put("/api/presence", Some(&ada.token), json!({"status": status}))
            .await
            .data(200);
    }
    let (status, retry_after, body) = send(
        server
            .client
            .patch(format!("{}/api/members/me", server.base))
            .bearer_auth(&ada.token)
            .json(&json!({"displayName": "Changed"})),
    )
    .await;
    assert_limited(status, retry_after, &body);
    let me = server.get("/api/members/me", Some(&ada.token)).await;
    assert_eq!(
        me.data(200)["displayName"],
        "Ada",
        "the refused write changed nothing"
    );
    // Another member has a budget of their own.
    let bob = server.member("Bob").await;
    server
        .put("/api/presence", Some(&bob.token), json!({"status": "dnd"}))
        .await
        .data(200);
}

#[tokio::test]
async fn graphql_spends_one_per_mutation_field_and_refuses_a_request_over_budget_whole() {
    let server = TestServer::start_with(|c| c.rate_write = 5).await;
    let ada = server.member("Ada").await;
    let aliases = |n: usize| {
        let fields: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "m{i}: updateProfile(input: {{displayName: \"Name {i}\"}}) {{ displayName }}"
                )
            })
            .collect();
        format!("mutation {{ {} }}", fields.join(" "))
    };
    let request = |query: String| {
        server
            .client
            .post(format!("{}/graphql", server.base))
            .bearer_auth(&ada.token)
            .json(&json!({"query": query}))
    };
    let (status, retry_after, body) = send(request(aliases(6))).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert_eq!(gql_code(&body).as_deref(), Some("RATE_LIMITED"), "{body}");
    assert!(
        body["errors"][0]["extensions"]["retryAfter"]
            .as_u64()
            .is_some_and(|s| s >= 1)
    );
    assert!(body["data"].is_null(), "{body}");
    let me = server.get("/api/members/me", Some(&ada.token)).await;
    assert_eq!(
        me.data(200)["displayName"],
        "Ada",
        "no field of the refused request ran"
    );
    // Nothing was spent: five fields fit, and then the budget is gone.
    let (status, _, body) = send(request(aliases(5))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["m4"]["displayName"], "Name 4", "{body}");
    let (status, _, body) = send(request(aliases(1))).await;
    assert_eq!(status, 429, "{body}");
    // Queries are not writes.
    let answer = server
        .graphql(Some(&ada.token), "{ me { displayName } }", json!({}))
        .await;
    assert_eq!(answer["data"]["me"]["displayName"], "Name 4", "{answer}");
}

#[tokio::test]
async fn graphql_sign_in_mutations_spend_the_auth_limit() {
    let server = TestServer::start_with(|c| c.rate_auth = 2).await;
    let query = "mutation($id: UUID!) { a: authChallenge(memberId: $id) { challenge } \
                 b: authChallenge(memberId: $id) { challenge } \
                 c: authChallenge(memberId: $id) { challenge } }";
    let body = server
        .graphql(None, query, json!({"id": Uuid::new_v4()}))
        .await;
    assert_eq!(gql_code(&body).as_deref(), Some("RATE_LIMITED"), "{body}");
    let (status, _, body) = challenge(&server, None).await;
    assert_eq!(status, 200, "the refused operation spent nothing: {body}");
}

#[tokio::test]
async fn websocket_frames_over_the_limit_get_an_error_frame_and_the_socket_stays_open() {
    let server = TestServer::start_with(|c| c.rate_write = 2).await;
    let ada = server.member("Ada").await;
    let mut ws = server.ws(&ada).await;
    let mut error = None;
    for status in ["dnd", "idle", "online"] {
        ws.send(json!({"type": "presence", "status": status})).await;
    }
    for frame in ws.drain(Duration::from_millis(700)).await {
        if frame["type"] == "error" {
            assert!(error.is_none(), "one refusal: {frame}");
            error = Some(frame);
        }
    }
    let error = error.expect("an error frame");
    assert_eq!(error["error"]["code"], "RATE_LIMITED", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        error["error"]["retryAfter"]
            .as_u64()
            .is_some_and(|s| s >= 1),
        "{error}"
    );
    // Still open, and pings are free.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.expect("pong").await["type"], "pong");
    ws.send(json!({"type": "typing_start", "contextType": "group", "contextId": Uuid::new_v4()}))
        .await;
    assert_eq!(ws.expect("error").await["error"]["code"], "RATE_LIMITED");
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let server = TestServer::start_with(|c| c.rate_auth = 2).await;
    assert_eq!(challenge(&server, Some("198.51.100.1")).await.0, 200);
    assert_eq!(challenge(&server, Some("198.51.100.2")).await.0, 200);
    let (status, retry_after, body) = challenge(&server, Some("198.51.100.3")).await;
    assert_limited(status, retry_after, &body);

    let proxied = TestServer::start_with(|c| {
        c.rate_auth = 2;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().expect("net")];
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            challenge(&proxied, Some("10.9.9.9, 198.51.100.1")).await.0,
            200
        );
    }
    let (status, retry_after, body) = challenge(&proxied, Some("198.51.100.1")).await;
    assert_limited(status, retry_after, &body);
    // The right-most untrusted entry is the client; what it claims before it is ignored.
    assert_eq!(
        challenge(&proxied, Some("198.51.100.1, 198.51.100.2"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn zero_turns_the_limits_off() {
    let server = TestServer::start_with(|c| {
        c.rate_auth = 0;
        c.rate_write = 0;
    })
    .await;
    for _ in 0..40 {
        assert_eq!(challenge(&server, None).await.0, 200);
    }
    let ada = server.member("Ada").await;
    for _ in 0..40 {
        server
            .put("/api/presence", Some(&ada.token), json!({"status": "dnd"}))
            .await
            .data(200);
    }
}

#[tokio::test]
async fn two_nodes_on_one_redis_share_the_budget() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    let a = TestServer::start_with(|c| {
        c.redis_url = Some(url);
        c.rate_write = 4;
    })
    .await;
    let b = a.peer().await;
    let ada = a.member("Ada").await;
    for node in [&a, &b, &a, &b] {
        node.put("/api/presence", Some(&ada.token), json!({"status": "dnd"}))
            .await
            .data(200);
    }
    for node in [&a, &b] {
        node.put("/api/presence", Some(&ada.token), json!({"status": "dnd"}))
            .await
            .error(429, "RATE_LIMITED");
    }
}

#[test]
fn the_api_document_lists_429_on_writes() {
    let doc = serde_json::to_value(brightchat::rest::openapi()).expect("json");
    for (method, path) in [
        ("post", "/api/members"),
        ("post", "/api/auth/login"),
        ("patch", "/api/members/me"),
        ("delete", "/api/members/{id}/block"),
    ] {
        let answer = &doc["paths"][path][method]["responses"]["429"];
        assert!(
            answer["headers"]["Retry-After"].is_object(),
            "{method} {path}: {answer}"
        );
    }
    assert!(doc["paths"]["/api/members/me"]["get"]["responses"]["429"].is_null());
}
