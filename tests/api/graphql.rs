//! The GraphQL facade: operations over HTTP, subscriptions over both WebSocket protocols,
//! parity with REST, limits, batching and the committed schema.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{TestMember, TestServer, gql_code};

#[test]
fn schema_graphql_is_up_to_date() {
    let committed = include_str!("../../schema.graphql");
    assert!(
        committed == brightchat::graphql::sdl(),
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}

#[tokio::test]
async fn queries_and_mutations_use_the_service_layer() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;

    let me = server
        .graphql(
            Some(&ada.token),
            "{ me { id displayName publicKey } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["me"]["id"], ada.id.to_string(), "{me}");
    assert_eq!(me["data"]["me"]["publicKey"], ada.public_hex);

    let created = server
        .graphql(
            Some(&ada.token),
            "mutation($m: [UUID!]!) { createGroup(input: {name: \"Alpha\", memberIds: $m}) { id name keyEpoch members { role member { displayName } } } }",
            json!({"m": [bob.id]}),
        )
        .await;
    let group = created["data"]["createGroup"].clone();
    assert_eq!(group["name"], "Alpha", "{created}");
    let owner = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["role"] == "OWNER")
        .expect("an owner")
        .clone();
    assert_eq!(owner["member"]["displayName"], "Ada");
    let group_id = group["id"].as_str().expect("id").to_owned();

    let sent = server
        .graphql(
            Some(&bob.token),
            "mutation($g: UUID!) { sendMessage(kind: GROUP, contextId: $g, content: \"hello\") { id keyEpoch sender { displayName } } }",
            json!({"g": group_id}),
        )
        .await;
    assert_eq!(
        sent["data"]["sendMessage"]["sender"]["displayName"], "Bob",
        "{sent}"
    );
    // The REST history shows the same message.
    let history = server
        .get(
            &format!("/api/groups/{group_id}/messages"),
            Some(&ada.token),
        )
        .await;
    assert_eq!(
        history.data(200)["items"][0]["id"],
        sent["data"]["sendMessage"]["id"]
    );

    let listed = server
        .graphql(
            Some(&ada.token),
            "{ groups { items { id } hasMore } conversations { items { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["data"]["groups"]["items"][0]["id"],
        group_id.as_str(),
        "{listed}"
    );

    // Errors carry the contract's code.
    let anonymous = server.graphql(None, "{ me { id } }", json!({})).await;
    assert_eq!(
        gql_code(&anonymous).as_deref(),
        Some("UNAUTHORIZED"),
        "{anonymous}"
    );
    let bad_token = server
        .graphql(Some("bct_nope"), "{ me { id } }", json!({}))
        .await;
    assert_eq!(
        gql_code(&bad_token).as_deref(),
        Some("UNAUTHORIZED"),
        "{bad_token}"
    );
    let blank = server
        .graphql(Some(&bob.token), "mutation($g: UUID!) { sendMessage(kind: GROUP, contextId: $g, content: \"  \") { id } }", json!({"g": group_id}))
        .await;
    assert_eq!(
        gql_code(&blank).as_deref(),
        Some("VALIDATION_ERROR"),
        "{blank}"
    );
    // GraphiQL is served on GET.
    let page = server
        .client
        .get(format!("{}/graphql", server.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("body").contains("graphiql"));
}

/// One action both ways: (GraphQL mutation, REST method, REST path, REST body).
fn parity_cases(
    group: &str,
    message: &str,
    owner: &str,
    channel: &str,
    conversation: &str,
    dm: &str,
) -> Vec<(String, &'static str, String, Value)> {
    let nobody = uuid::Uuid::new_v4();
    vec![
        (
            format!(
                "mutation {{ sendDirectMessage(input: {{recipientId: \"{nobody}\", content: \"x\"}}) {{ id }} }}"
            ),
            "POST",
            "/api/conversations".to_owned(),
            json!({"recipientId": nobody, "content": "x"}),
        ),
        (
            format!(
                "mutation {{ deleteDirectMessage(conversationId: \"{conversation}\", messageId: \"{dm}\") }}"
            ),
            "DELETE",
            format!("/api/conversations/{conversation}/messages/{dm}"),
            Value::Null,
        ),
        (
            format!(
                "mutation {{ promoteConversation(conversationId: \"{conversation}\", input: {{newMemberIds: [\"{owner}\"]}}) {{ groupId }} }}"
            ),
            "POST",
            format!("/api/conversations/{conversation}/promote"),
            json!({"newMemberIds": [owner]}),
        ),
        (
            format!(
                "mutation {{ sendMessage(kind: GROUP, contextId: \"{group}\", content: \"x\") {{ id }} }}"
            ),
            "POST",
            format!("/api/groups/{group}/messages"),
            json!({"content": "x"}),
        ),
        (
            format!(
                "mutation {{ editMessage(kind: GROUP, contextId: \"{group}\", messageId: \"{message}\", content: \"x\") {{ id }} }}"
            ),
            "PUT",
            format!("/api/groups/{group}/messages/{message}"),
            json!({"content": "x"}),
        ),
        (
            format!(
                "mutation {{ deleteMessage(kind: GROUP, contextId: \"{group}\", messageId: \"{message}\") }}"
            ),
            "DELETE",
            format!("/api/groups/{group}/messages/{message}"),
            Value::Null,
        ),
        (
            format!(
                "mutation {{ pinMessage(kind: GROUP, contextId: \"{group}\", messageId: \"{message}\") }}"
            ),
            "POST",
            format!("/api/groups/{group}/messages/{message}/pin"),
            json!({}),
        ),
        (
            format!(
                "mutation {{ addReaction(kind: GROUP, contextId: \"{group}\", messageId: \"{message}\", emoji: \"👍\") {{ reactionId }} }}"
            ),
            "POST",
            format!("/api/groups/{group}/messages/{message}/reactions"),
            json!({"emoji": "👍"}),
        ),
        (
            format!(
                "mutation {{ muteMember(kind: GROUP, contextId: \"{group}\", memberId: \"{owner}\", durationMs: 1000) {{ until }} }}"
            ),
            "POST",
            format!("/api/groups/{group}/mute/{owner}"),
            json!({"durationMs": 1000}),
        ),
        (
            format!(
                "mutation {{ assignRole(kind: GROUP, contextId: \"{group}\", memberId: \"{owner}\", role: MEMBER) {{ role }} }}"
            ),
            "PUT",
            format!("/api/groups/{group}/roles/{owner}"),
            json!({"role": "member"}),
        ),
        (
            format!(
                "mutation {{ addGroupMembers(groupId: \"{group}\", memberIds: [\"{owner}\"]) }}"
            ),
            "POST",
            format!("/api/groups/{group}/members"),
            json!({"memberIds": [owner]}),
        ),
        (
            format!(
                "mutation {{ removeGroupMember(groupId: \"{group}\", memberId: \"{owner}\") }}"
            ),
            "DELETE",
            format!("/api/groups/{group}/members/{owner}"),
            Value::Null,
        ),
        (
            format!("mutation {{ leaveGroup(groupId: \"{group}\") }}"),
            "POST",
            format!("/api/groups/{group}/leave"),
            json!({}),
        ),
        (
            format!(
                "mutation {{ updateChannel(channelId: \"{channel}\", input: {{topic: \"x\"}}) {{ id }} }}"
            ),
            "PUT",
            format!("/api/channels/{channel}"),
            json!({"topic": "x"}),
        ),
        (
            format!("mutation {{ deleteChannel(channelId: \"{channel}\") }}"),
            "DELETE",
            format!("/api/channels/{channel}"),
            Value::Null,
        ),
        (
            format!("mutation {{ createInvite(channelId: \"{channel}\") {{ token }} }}"),
            "POST",
            format!("/api/channels/{channel}/invites"),
            json!({}),
        ),
        (
            format!("mutation {{ kickMember(channelId: \"{channel}\", memberId: \"{owner}\") }}"),
            "POST",
            format!("/api/channels/{channel}/kick/{owner}"),
            json!({}),
        ),
        (
            format!("mutation {{ joinChannel(channelId: \"{channel}\") }}"),
            "POST",
            format!("/api/channels/{channel}/join"),
            json!({}),
        ),
        (
            format!("mutation {{ redeemInvite(channelId: \"{channel}\", token: \"nope\") }}"),
            "POST",
            format!("/api/channels/{channel}/invites/nope/redeem"),
            json!({}),
        ),
    ]
}

#[tokio::test]
async fn permission_failures_match_rest() {
    let server = TestServer::start().await;
    let owner = server.member("Owner").await;
    let member = server.member("Member").await;
    let outsider = server.member("Outsider").await;
    let group = server.group(&owner, "Alpha", &[&member]).await;
    let message = server.group_message(&owner, &group, "hi").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let channel = server.channel(&owner, "secret-room", "secret", true).await;

    let third = server.member("Third").await;
    let dm = server.dm(&owner, &third, "private").await;
    let conversation = dm["conversationId"].as_str().expect("id").to_owned();
    let dm = dm["id"].as_str().expect("id").to_owned();

    for who in [&member, &outsider] {
        for (mutation, method, path, body) in parity_cases(
            &group,
            &message,
            &owner.id.to_string(),
            &channel,
            &conversation,
            &dm,
        ) {
            // A plain member may send, react and leave: those succeed both ways (and are
            // covered elsewhere); every other case must fail the same way.
            let allowed = ["sendMessage", "addReaction", "leaveGroup"];
            if who.id == member.id && allowed.iter().any(|a| mutation.contains(a)) {
                continue;
            }
            let graphql = server.graphql(Some(&who.token), &mutation, json!({})).await;
            let rest = server
                .call(
                    method.parse().expect("method"),
                    &path,
                    Some(&who.token),
                    (!body.is_null()).then_some(body),
                )
                .await;
            let rest_code = rest.body["error"]["code"].as_str().map(str::to_owned);
            assert!(
                rest.status.as_u16() >= 400,
                "{method} {path} should fail for this member: {}",
                rest.body
            );
            assert_eq!(
                gql_code(&graphql),
                rest_code,
                "{mutation}\nGraphQL: {graphql}\nREST: {}",
                rest.body
            );
        }
    }
}

#[tokio::test]
async fn hostile_queries_are_refused() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let mut deep = String::from("{ __schema { types { fields { type ");
    for _ in 0..15 {
        deep.push_str("{ ofType ");
    }
    deep.push_str("{ name }");
    for _ in 0..15 {
        deep.push('}');
    }
    deep.push_str(" } } } }");
    let answer = server.graphql(Some(&ada.token), &deep, json!({})).await;
    assert!(answer["data"].is_null(), "{answer}");
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nested too deep")),
        "{answer}"
    );

    let wide: String = (0..2_500).map(|i| format!("a{i}: me {{ id }} ")).collect();
    let answer = server
        .graphql(Some(&ada.token), &format!("{{ {wide} }}"), json!({}))
        .await;
    assert!(
        answer["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too complex")),
        "{}",
        &answer.to_string()[..200.min(answer.to_string().len())]
    );
}

#[tokio::test]
async fn nested_members_are_batched() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let mut others = Vec::new();
    for i in 0..12 {
        others.push(server.member(&format!("M{i}")).await);
    }
    let refs: Vec<&TestMember> = others.iter().collect();
    let group = server.group(&ada, "Crowd", &refs).await;
    for m in &others {
        server.group_message(m, &group, "hi").await;
    }
    let query = "query($g: UUID!) { messages(kind: GROUP, contextId: $g, page: {limit: 100}) { items { id sender { displayName } } } group(id: $g) { members { member { id displayName } } } }";
    // Warm up (token cache, key cache), then count.
    server
        .graphql(Some(&ada.token), query, json!({"g": group}))
        .await;
    // The counter also sees the server's background work (event relay and search indexer
    // poll a few times a second), so the fewest statements over a few runs is the query's.
    let mut statements = u64::MAX;
    let mut answer = json!(null);
    for _ in 0..5 {
        let before = server.state.db.statement_count();
        answer = server
            .graphql(Some(&ada.token), query, json!({"g": group}))
            .await;
        statements = statements.min(server.state.db.statement_count() - before);
    }
    assert_eq!(
        answer["data"]["messages"]["items"]
            .as_array()
            .expect("items")
            .len(),
        12,
        "{answer}"
    );
    assert!(
        answer["data"]["messages"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|m| m["sender"]["displayName"].is_string())
    );
    assert_eq!(
        answer["data"]["group"]["members"]
            .as_array()
            .expect("members")
            .len(),
        13
    );
    // 25 nested member fields; a query per field would be 25+. Batched: a handful.
    assert!(
        statements <= 12,
        "{statements} statements for one nested query"
    );
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn graphql_ws(server: &TestServer, protocol: &str, init: Value) -> Ws {
    let mut request = format!("{}/graphql/ws", server.base.replacen("http://", "ws://", 1))
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    ws.send(Message::Text(
        json!({"type": "connection_init", "payload": init})
            .to_string()
            .into(),
    ))
    .await
    .expect("init");
    ws
}

pub(crate) async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()?? {
            Ok(Message::Text(text)) => {
                let value: Value = serde_json::from_str(text.as_str()).expect("json");
                if value["type"] == "ka" || value["type"] == "ping" {
                    continue;
                }
                return Some(value);
            }
            Ok(Message::Close(frame)) => {
                return Some(json!({"type": "closed", "frame": format!("{frame:?}")}));
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

pub(crate) async fn subscribe(ws: &mut Ws, protocol: &str, query: &str) {
    let kind = if protocol == "graphql-transport-ws" {
        "subscribe"
    } else {
        "start"
    };
    ws.send(Message::Text(
        json!({"type": kind, "id": "1", "payload": {"query": query}})
            .to_string()
            .into(),
    ))
    .await
    .expect("subscribe");
}

/// The next event payload of subscription "1".
async fn next_event(ws: &mut Ws) -> Option<Value> {
    loop {
        let frame = next_json(ws, Duration::from_secs(3)).await?;
        if frame["type"] == "next" || frame["type"] == "data" {
            return Some(frame["payload"]["data"]["events"].clone());
        }
    }
}

#[tokio::test]
async fn subscriptions_over_both_protocols_see_rest_events_and_outsiders_nothing() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let eve = server.member("Eve").await;
    let group = server.group(&ada, "Alpha", &[&bob]).await;
    let query = "subscription { events(types: [\"communication:message_sent\"]) { type contextType contextId seq messageId data payload { __typename ... on Message { id keyEpoch sender { displayName } } } } }";

    let mut modern = graphql_ws(&server, "graphql-transport-ws", json!({"token": bob.token})).await;
    assert_eq!(
        next_json(&mut modern, Duration::from_secs(5))
            .await
            .expect("ack")["type"],
        "connection_ack"
    );
    subscribe(&mut modern, "graphql-transport-ws", query).await;
    let mut legacy = graphql_ws(
        &server,
        "graphql-ws",
        json!({"Authorization": format!("Bearer {}", bob.token)}),
    )
    .await;
    assert_eq!(
        next_json(&mut legacy, Duration::from_secs(5))
            .await
            .expect("ack")["type"],
        "connection_ack"
    );
    subscribe(&mut legacy, "graphql-ws", query).await;
    let mut outsider =
        graphql_ws(&server, "graphql-transport-ws", json!({"token": eve.token})).await;
    next_json(&mut outsider, Duration::from_secs(5))
        .await
        .expect("ack");
    subscribe(&mut outsider, "graphql-transport-ws", query).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A message sent over REST reaches both subscriptions.
    let sent = server.group_message(&ada, &group, "over REST").await;
    for ws in [&mut modern, &mut legacy] {
        let event = next_event(ws).await.expect("an event");
        assert_eq!(event["type"], "communication:message_sent");
        assert_eq!(event["contextType"], "group");
        assert_eq!(event["data"]["id"], sent["id"]);
        assert_eq!(event["messageId"], sent["id"]);
        assert_eq!(event["payload"]["__typename"], "Message");
        assert_eq!(event["payload"]["id"], sent["id"]);
        assert_eq!(event["payload"]["sender"]["displayName"], "Ada");
    }
    assert!(
        next_event(&mut outsider).await.is_none(),
        "an outsider received an event"
    );

    // A GraphQL mutation reaches the REST WebSocket.
    let mut rest_ws = server.ws(&bob).await;
    let answer = server
        .graphql(Some(&ada.token), "mutation($g: UUID!) { sendMessage(kind: GROUP, contextId: $g, content: \"over GraphQL\") { id } }", json!({"g": group}))
        .await;
    let id = answer["data"]["sendMessage"]["id"].clone();
    let frame = rest_ws.expect("communication:message_sent").await;
    assert_eq!(frame["data"]["id"], id);

    // Without a valid token the subscription socket is refused.
    let mut anonymous = graphql_ws(
        &server,
        "graphql-transport-ws",
        json!({"token": "bct_nope"}),
    )
    .await;
    let refused = next_json(&mut anonymous, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_ne!(refused["type"], "connection_ack", "{refused}");
}
