//! Supervised background tasks: one that dies shows in `/readyz` (503 naming it) and is
//! restarted, and the node works again afterwards.

use std::time::Duration;

use crate::common::TestServer;

/// Waits (up to 10 s) for `/readyz` to answer 200 again.
async fn ready_again(server: &TestServer) {
    for _ in 0..200 {
        if server.get("/readyz", None).await.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz stayed 503");
}

#[tokio::test]
async fn a_dead_task_shows_in_readyz_and_is_restarted() {
    let server = TestServer::start().await;
    server.get("/readyz", None).await.data(200);
    let names = server.state.tasks.names();
    for task in [
        "event relay",
        "event router",
        "janitor",
        "idle sweep",
        "search indexer",
    ] {
        assert!(names.contains(&task), "{task} is supervised: {names:?}");
    }

    for task in ["event relay", "event router"] {
        assert!(server.state.tasks.kill(task));
        let answer = server.get("/readyz", None).await;
        answer.error(503, "SERVICE_UNAVAILABLE");
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(task)),
            "{}",
            answer.body
        );
        ready_again(&server).await;
        assert_eq!(server.state.tasks.restarts(task), 1);
    }

    // Events flow again through the restarted relay and router.
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mut socket = server.ws(&bob).await;
    server.dm(&ada, &bob, "still here").await;
    let event = socket.expect("communication:message_sent").await;
    assert!(event["seq"].as_i64().is_some_and(|seq| seq > 0), "{event}");
    assert!(!server.state.tasks.kill("no such task"));
}

#[tokio::test]
async fn a_dead_cluster_listener_is_restarted_and_subscribes_again() {
    use crate::common::RedisServer;
    use serde_json::json;
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let url = redis.url();
    let a = TestServer::start_with(|c| c.redis_url = Some(url)).await;
    let b = a.peer().await;
    a.until_cluster_healthy().await;
    b.until_cluster_healthy().await;

    assert!(b.state.tasks.kill("cluster listener"));
    let answer = b.get("/readyz", None).await;
    answer.error(503, "SERVICE_UNAVAILABLE");
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cluster listener")),
        "{}",
        answer.body
    );
    ready_again(&b).await;
    b.until_cluster_healthy().await;
    assert_eq!(b.state.tasks.restarts("cluster listener"), 1);

    // Typing, which only Redis carries, reaches B again.
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
}
