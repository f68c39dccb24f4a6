//! `/metrics` (CONTRACT.md "Operations"): Prometheus series on their own listener, never on
//! the public one.

use std::time::Duration;

use crate::common::TestServer;

/// The value of the first series named `name` whose labels contain every one of `labels`.
fn value(scrape: &str, name: &str, labels: &[&str]) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let series = line.split(' ').next().unwrap_or("");
            (series == name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|label| series.contains(label))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("the metrics listener answers");
    assert_eq!(response.status(), 200);
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    response.text().await.expect("body")
}

#[tokio::test]
async fn metrics_are_served_apart_and_count_what_happened() {
    let server = TestServer::start_with_plugins(
        &[("10_allow.rhai", "fn on_message(ctx) { allow() }")],
        |_| {},
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let metrics = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(brightchat::metrics::serve(
        listener,
        server.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mut socket = server.ws(&bob).await;
    let channel = server.channel(&ada, "metrics", "public", true).await;
    for n in 0..3 {
        server
            .channel_message(&ada, &channel, &format!("hello {n}"))
            .await;
    }
    server.dm(&ada, &bob, "psst").await;
    socket.expect("communication:message_sent").await;
    server
        .get(
            "/api/channels/00000000-0000-0000-0000-000000000000",
            Some(&ada.token),
        )
        .await
        .error(404, "NOT_FOUND");

    // Made-up methods on a real route (answered 405) add no series: a client cannot grow
    // the series without bound (405s match no route; any other method is labelled OTHER).
    for n in 0..20 {
        let method = reqwest::Method::from_bytes(format!("BREW{n}").as_bytes()).expect("token");
        let answer = server
            .raw(
                method,
                "/api/members/me",
                Some(&ada.token),
                "application/json",
                Vec::new(),
            )
            .await;
        assert_eq!(answer.status, 405);
    }

    // The public listener has no /metrics.
    let public = server.get("/metrics", None).await;
    assert_eq!(public.status, 404);

    let client = reqwest::Client::new();
    // The relay and indexer catch up within moments; the request counters are immediate.
    let mut text = scrape(&client, &metrics).await;
    for _ in 0..50 {
        if value(&text, "brightchat_events_relayed_total", &[]).unwrap_or(0.0) >= 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = scrape(&client, &metrics).await;
    }

    let sent = value(
        &text,
        "brightchat_http_requests_total",
        &[
            "method=\"POST\"",
            "route=\"/api/channels/{channelId}/messages\"",
            "status=\"2xx\"",
        ],
    );
    assert_eq!(sent, Some(3.0), "{text}");
    // A route template, not the raw URL; and the status class.
    assert_eq!(
        value(
            &text,
            "brightchat_http_requests_total",
            &["route=\"/api/channels/{channelId}\"", "status=\"4xx\""],
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("00000000-0000-0000-0000-000000000000"));
    assert!(!text.contains("BREW"), "{text}");
    let timed = value(
        &text,
        "brightchat_http_request_duration_seconds_count",
        &[
            "route=\"/api/channels/{channelId}/messages\"",
            "status=\"2xx\"",
        ],
    );
    assert_eq!(timed, Some(3.0), "{text}");
    let seconds = value(
        &text,
        "brightchat_http_request_duration_seconds_sum",
        &["route=\"/api/channels/{channelId}/messages\""],
    )
    .expect("a latency sum");
    assert!(seconds > 0.0 && seconds < 30.0, "{seconds}");

    assert_eq!(
        value(
            &text,
            "brightchat_websocket_connections",
            &["socket=\"events\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "brightchat_websocket_connections",
            &["socket=\"graphql\""]
        ),
        Some(0.0),
        "{text}"
    );
    let relayed = value(&text, "brightchat_events_relayed_total", &[]).expect("relayed");
    assert!(relayed >= 4.0, "{text}");
    let lag = value(&text, "brightchat_outbox_lag_events", &[]).expect("outbox lag");
    assert!((0.0..1000.0).contains(&lag), "{lag}");
    let search_lag = value(&text, "brightchat_search_lag_events", &[]).expect("search lag");
    assert!((0.0..1000.0).contains(&search_lag), "{search_lag}");
    let idle = value(
        &text,
        "brightchat_db_pool_connections",
        &["pool=\"read\"", "state=\"idle\""],
    )
    .expect("pool use");
    assert!((0.0..=1000.0).contains(&idle), "{idle}");
    assert!(
        value(
            &text,
            "brightchat_plugin_calls_total",
            &["hook=\"on_message\""]
        )
        .is_some_and(|calls| calls >= 4.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "brightchat_plugin_call_duration_seconds_count",
            &["hook=\"on_message\""]
        )
        .is_some_and(|calls| calls >= 4.0),
        "{text}"
    );

    // Closing the socket is seen.
    drop(socket);
    let mut open = Some(1.0);
    for _ in 0..50 {
        let text = scrape(&client, &metrics).await;
        open = value(
            &text,
            "brightchat_websocket_connections",
            &["socket=\"events\""],
        );
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, Some(0.0));
    let _ = stop.send(());
}
