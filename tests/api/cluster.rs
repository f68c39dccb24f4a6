//! Several nodes on one database and one Redis: wake-ups, ephemeral events, presence and
//! sign-out cross nodes; a Redis outage slows delivery but breaks nothing.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use crate::common::{RedisServer, TestServer, WsClient};

/// Two nodes on one Redis, both subscribed.
async fn two_nodes(
    redis: &RedisServer,
    adjust: impl FnOnce(&mut brightchat::Config),
) -> (TestServer, TestServer) {
    let url = redis.url();
    let a = TestServer::start_with(|c| {
        c.redis_url = Some(url);
        adjust(c);
    })
    .await;
    let b = a.peer().await;
    a.until_cluster_healthy().await;
    b.until_cluster_healthy().await;
    (a, b)
}

/// The next presence status `ws` is told for `member`.
async fn status_of(ws: &mut WsClient, member: Uuid) -> String {
    let id = member.to_string();
    loop {
        let frame = ws.expect("communication:presence_changed").await;
        if frame["data"]["memberId"] == id {
            return frame["data"]["status"].as_str().expect("status").to_owned();
        }
    }
}

/// Presence statuses `ws` is told for `member` within `wait`.
async fn statuses_within(ws: &mut WsClient, member: Uuid, wait: Duration) -> Vec<String> {
    let id = member.to_string();
    ws.drain(wait)
        .await
        .into_iter()
        .filter(|f| f["type"] == "communication:presence_changed" && f["data"]["memberId"] == id)
        .map(|f| f["data"]["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn typing_and_messages_cross_nodes() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis, |_| {}).await;
    let ada = a.member("Ada").await;
    let bob = a.member("Bob").await;
    let group = a.group(&ada, "Pair", &[&bob]).await;
    let mut ada_ws = a.ws(&ada).await;
    let mut bob_ws = b.ws(&bob).await;

    ada_ws
        .send(json!({"type": "typing_start", "contextType": "group", "contextId": group}))
        .await;
    let typing = bob_ws.expect("communication:typing_start").await;
    assert_eq!(typing["data"], json!({"memberId": ada.id}));

    // A message sent on A reaches B woken by Redis, well before the relay's poll.
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let started = Instant::now();
        a.group_message(&ada, &group, &format!("hello {i}")).await;
        bob_ws.expect("communication:message_sent").await;
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("slowest send-to-delivery across nodes: {slowest:?}");
}

#[tokio::test]
async fn presence_counts_connections_on_every_node() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis, |_| {}).await;
    let ada = a.member("Ada").await;
    let bob = a.member("Bob").await;
    a.group(&ada, "Pair", &[&bob]).await;
    let mut bob_ws = b.ws(&bob).await;

    let on_a = a.ws(&ada).await;
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "online");
    let on_b = b.ws(&ada).await;
    // One socket closes: Ada is still connected on the other node.
    drop(on_a);
    assert_eq!(
        statuses_within(&mut bob_ws, ada.id, Duration::from_millis(800)).await,
        Vec::<String>::new()
    );
    drop(on_b);
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "offline");

    // dnd chosen on A sticks when Ada comes back on B; online clears it.
    let on_a = a.ws(&ada).await;
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "online");
    a.put("/api/presence", Some(&ada.token), json!({"status": "dnd"}))
        .await
        .data(200);
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "dnd");
    drop(on_a);
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "offline");
    let mut on_b = b.ws(&ada).await;
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "dnd");
    on_b.send(json!({"type": "presence", "status": "online"}))
        .await;
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "online");
}

#[tokio::test]
async fn idle_needs_quiet_connections_on_every_node() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis, |c| c.idle_after = Duration::from_millis(1500)).await;
    let ada = a.member("Ada").await;
    let bob = a.member("Bob").await;
    a.group(&ada, "Pair", &[&bob]).await;
    let mut bob_ws = b.ws(&bob).await;
    let _on_a = a.ws(&ada).await;
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "online");
    let mut on_b = b.ws(&ada).await;
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "idle");
    on_b.send(json!({"type": "ping"})).await;
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "online");
}

#[tokio::test]
async fn sign_out_on_one_node_is_refused_on_the_other_at_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis, |_| {}).await;
    let ada = a.member("Ada").await;
    // B has the token cached.
    b.get("/api/members/me", Some(&ada.token)).await.data(200);
    b.get("/api/members/me", Some(&ada.token)).await.data(200);
    a.delete("/api/auth/token", Some(&ada.token))
        .await
        .data(200);
    b.get("/api/members/me", Some(&ada.token))
        .await
        .error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn a_dead_nodes_members_go_offline_within_the_bound() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let ttl = Duration::from_millis(1500);
    let (a, b) = two_nodes(&redis, |c| c.redis_node_ttl = ttl).await;
    let ada = a.member("Ada").await;
    let bob = a.member("Bob").await;
    a.group(&ada, "Pair", &[&bob]).await;
    let mut bob_ws = b.ws(&bob).await;
    let _on_a = a.ws(&ada).await;
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "online");

    // A stops its heartbeat without closing anything, as a node that died.
    a.state.cluster.as_ref().expect("cluster").halt();
    let halted = Instant::now();
    assert_eq!(status_of(&mut bob_ws, ada.id).await, "offline");
    let took = halted.elapsed();
    eprintln!("a dead node's member went offline after {took:?}");
    // The bound: the heartbeat's TTL and one sweep (a third of it), plus slack.
    assert!(took < ttl + ttl / 3 + Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn a_redis_outage_slows_delivery_and_then_heals() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis, |_| {}).await;
    let ada = a.member("Ada").await;
    let bob = a.member("Bob").await;
    let cat = a.member("Cat").await;
    let group = a.group(&ada, "Trio", &[&bob, &cat]).await;
    let mut bob_ws = b.ws(&bob).await;
    a.get("/readyz", None).await.data(200);

    redis.stop();
    let answer = a.get("/readyz", None).await;
    answer.error(503, "SERVICE_UNAVAILABLE");
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Redis")),
        "{}",
        answer.body
    );
    // Writes still succeed and reach B by the relay's poll.
    a.group_message(&ada, &group, "during the outage").await;
    let frame = bob_ws.expect("communication:message_sent").await;
    assert_eq!(frame["data"]["senderId"], ada.id.to_string());
    // Unsubscribed, B trusts no cached token: a sign-out on A still holds on B.
    let cluster_b = b.state.cluster.as_ref().expect("cluster");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster_b.healthy() {
        assert!(Instant::now() < deadline, "B did not notice the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = a.sign_in(cat.id, &cat.secret).await;
    b.get("/api/members/me", Some(&second)).await.data(200);
    a.delete("/api/auth/token", Some(&second)).await.data(200);
    b.get("/api/members/me", Some(&second))
        .await
        .error(401, "UNAUTHORIZED");

    redis.restart().await;
    a.until_cluster_healthy().await;
    b.until_cluster_healthy().await;
    a.get("/readyz", None).await.data(200);
    b.get("/readyz", None).await.data(200);

    // Presence works again (Bob's connection on B was registered again).
    let _cat_ws = a.ws(&cat).await;
    assert_eq!(status_of(&mut bob_ws, cat.id).await, "online");
    // So does sign-out across nodes.
    b.get("/api/members/me", Some(&ada.token)).await.data(200);
    a.delete("/api/auth/token", Some(&ada.token))
        .await
        .data(200);
    b.get("/api/members/me", Some(&ada.token))
        .await
        .error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn an_unreachable_redis_fails_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = brightchat::Config::with_data_dir(dir.path().join("data"));
    config.plugins_dir = dir.path().join("plugins");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    config.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    let err = match brightchat::build(config).await {
        Ok(_) => panic!("the start succeeded without Redis"),
        Err(err) => err.to_string(),
    };
    assert!(err.starts_with("BRIGHTCHAT_REDIS_URL: "), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

/// A Redis that stops answering without closing its connections (a vanished host) is
/// noticed by a ping of the quiet subscription: the node stops trusting cached tokens,
/// and subscribes again once Redis answers.
#[tokio::test]
async fn a_redis_that_stops_answering_is_noticed_and_rejoined() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (a, b) = two_nodes(&redis, |_| {}).await;
    let cluster = a.state.cluster.as_ref().expect("cluster");
    redis.freeze();
    let frozen = Instant::now();
    while cluster.healthy() {
        assert!(
            frozen.elapsed() < Duration::from_secs(15),
            "a silent Redis went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("a silent Redis was noticed after {:?}", frozen.elapsed());
    redis.thaw();
    a.until_cluster_healthy().await;
    b.until_cluster_healthy().await;
    let ada = a.member("Ada").await;
    b.get("/api/members/me", Some(&ada.token)).await.data(200);
    a.delete("/api/auth/token", Some(&ada.token))
        .await
        .data(200);
    b.get("/api/members/me", Some(&ada.token))
        .await
        .error(401, "UNAUTHORIZED");
}
