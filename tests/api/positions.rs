//! Event positions on PostgreSQL come from a sequence, not a locked counter: writes on
//! every node commit in parallel, and the relay still delivers in position order, waiting
//! for a lower position only while the transaction holding it runs.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::json;

use crate::common::*;

/// Skips (saying so) on SQLite, whose one writer keeps the counter.
fn postgres_only() -> bool {
    if test_database_url().is_none() {
        eprintln!(
            "skipped: event positions from a sequence are PostgreSQL's (set BRIGHTCHAT_TEST_DATABASE_URL)"
        );
        return false;
    }
    true
}

#[tokio::test]
async fn a_held_position_holds_later_events_until_it_commits_then_both_arrive_in_order() {
    if !postgres_only() {
        return;
    }
    let server = TestServer::start().await;
    let ada = server.member("ada").await;
    let bob = server.member("bob").await;
    let group = server.group(&ada, "positions", &[&bob]).await;
    let mut bob_ws = server.ws(&bob).await;

    // A transaction takes a position and keeps running (as a slow writer would).
    let db = &server.state.db.write;
    let txn = db.begin().await.expect("begin");
    let held: i64 = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT nextval('event_positions') AS seq WHERE pg_current_xact_id() IS NOT NULL",
        ))
        .await
        .expect("nextval")
        .expect("row")
        .try_get("", "seq")
        .expect("seq");

    // No global lock: a send commits while that transaction is open.
    let sent = tokio::time::timeout(
        Duration::from_secs(5),
        server.group_message(&ada, &group, "after the held position"),
    )
    .await
    .expect("a send does not wait for another transaction's events");
    let sent_seq_row = server
        .state
        .db
        .read
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT seq FROM events WHERE payload LIKE $1",
            [format!("%{}%", sent["id"].as_str().expect("id")).into()],
        ))
        .await
        .expect("read")
        .expect("the send's event");
    let sent_seq: i64 = sent_seq_row.try_get("", "seq").expect("seq");
    assert!(sent_seq > held);

    // Its event is committed but must wait: the lower position may still commit.
    let early: Vec<_> = bob_ws
        .drain(Duration::from_millis(400))
        .await
        .into_iter()
        .filter(|f| f["type"] != "communication:presence_changed")
        .collect();
    assert!(
        early.is_empty(),
        "delivered past a position still held: {early:?}"
    );

    // The held position commits an event of its own.
    let event = brightchat::events::Event::for_context(
        brightchat::events::EventType::ChannelUpdated,
        brightchat::events::ContextType::Group,
        uuid::Uuid::parse_str(&group).expect("uuid"),
        json!({"id": group, "name": "renamed while held"}),
    );
    let mut payload = serde_json::to_value(&event).expect("payload");
    payload["seq"] = json!(held);
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO events (seq, created_at, payload) VALUES ($1, $2, $3)",
        [
            held.into(),
            event.timestamp.into(),
            payload.to_string().into(),
        ],
    ))
    .await
    .expect("insert");
    txn.commit().await.expect("commit");
    server.state.events.wake();

    let first = bob_ws.expect("communication:channel_updated").await;
    assert_eq!(first["seq"], held, "{first}");
    assert_eq!(first["data"]["name"], "renamed while held");
    let second = bob_ws.expect("communication:message_sent").await;
    assert_eq!(second["seq"], sent_seq, "nothing came between them");
    assert_eq!(second["data"]["id"], sent["id"]);
}

#[tokio::test]
async fn a_rolled_back_position_leaves_a_hole_that_delivery_passes_at_once() {
    if !postgres_only() {
        return;
    }
    let server = TestServer::start().await;
    let ada = server.member("ada").await;
    let bob = server.member("bob").await;
    let group = server.group(&ada, "holes", &[&bob]).await;
    let mut bob_ws = server.ws(&bob).await;

    let db = &server.state.db.write;
    let txn = db.begin().await.expect("begin");
    txn.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT nextval('event_positions') AS seq WHERE pg_current_xact_id() IS NOT NULL",
    ))
    .await
    .expect("nextval");
    txn.rollback().await.expect("rollback");

    let started = std::time::Instant::now();
    let sent = server.group_message(&ada, &group, "past the hole").await;
    let frame = bob_ws.expect("communication:message_sent").await;
    assert_eq!(frame["data"]["id"], sent["id"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a rolled-back position held delivery for {:?}",
        started.elapsed()
    );

    // A client that resumes from before the hole gets the event, once, without a resync.
    let before = frame["seq"].as_i64().expect("seq") - 2;
    let mut resumed = server
        .ws_query(&format!("?token={}&resume={before}", bob.token))
        .await;
    let frames = resumed.drain(Duration::from_millis(500)).await;
    let sends: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "communication:message_sent")
        .collect();
    assert_eq!(sends.len(), 1, "{frames:?}");
    assert!(frames.iter().all(|f| f["type"] != "resync_required"));
}
