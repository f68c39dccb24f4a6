//! Channel search over the API (CONTRACT.md "Search"), on the embedded index always and
//! on a real Meilisearch too when `BRIGHTCHAT_TEST_MEILI_URL` (and `BRIGHTCHAT_TEST_MEILI_KEY`)
//! are set. Indexing follows commits asynchronously, so tests wait (briefly) for a message
//! to become searchable, as a client would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use brightchat::Config;
use brightchat::search::{
    IndexDoc, SearchError, SearchHit, SearchIndex, SearchRequest, embedded::EmbeddedIndex,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Answer, TestMember, TestServer, decrypt_message, member_keys};

/// How a test server is set up for one backend.
type Settings = Box<dyn Fn(&mut Config) + Send>;

/// The backends to run against: (name, settings).
fn backends() -> Vec<(&'static str, Settings)> {
    let mut out: Vec<(&'static str, Settings)> = vec![("embedded", Box::new(|_: &mut Config| {}))];
    match std::env::var("BRIGHTCHAT_TEST_MEILI_URL") {
        Ok(url) if !url.is_empty() => {
            let key = std::env::var("BRIGHTCHAT_TEST_MEILI_KEY").ok();
            out.push((
                "meilisearch",
                Box::new(move |config: &mut Config| {
                    config.meili_url = Some(url.clone());
                    config.meili_key = key.clone();
                    config.meili_index = format!("bct_{}", Uuid::new_v4().simple());
                }),
            ));
        }
        _ => eprintln!(
            "meilisearch: skipped: BRIGHTCHAT_TEST_MEILI_URL is not set (the embedded index ran)"
        ),
    }
    out
}

async fn search(server: &TestServer, who: &TestMember, channel: &str, query: &str) -> Answer {
    let query: String = url_encode(query);
    server
        .get(
            &format!("/api/channels/{channel}/messages/search?query={query}"),
            Some(&who.token),
        )
        .await
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Searches until the hits number `count` (indexing is asynchronous), at most 10 s.
async fn search_until(
    server: &TestServer,
    who: &TestMember,
    channel: &str,
    query: &str,
    count: usize,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let answer = search(server, who, channel, query).await;
        let items = answer.data(200)["items"].as_array().expect("items").clone();
        if items.len() == count {
            return items;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "`{query}`: {} hits, expected {count}: {}",
            items.len(),
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Channel {
    id: String,
    ada: TestMember,
    bob: TestMember,
}

/// A public channel owned by Ada, with Bob in it.
async fn channel(server: &TestServer, history_visible: bool) -> Channel {
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let id = server
        .channel(&ada, "launchpad", "public", history_visible)
        .await;
    server.join(&bob, &id).await;
    Channel { id, ada, bob }
}

#[tokio::test]
async fn finds_by_relevance_and_shows_messages_as_history_does() {
    for (backend, adjust) in backends() {
        eprintln!("backend: {backend}");
        let server = TestServer::start_with(adjust).await;
        let c = channel(&server, true).await;
        let best = server
            .channel_message(&c.ada, &c.id, "rocket launch tonight")
            .await;
        let other = server
            .channel_message(
                &c.ada,
                &c.id,
                "the rocket is ready and after a long long wait the launch is tonight",
            )
            .await;
        server
            .channel_message(&c.bob, &c.id, "lunch plans anyone")
            .await;
        server
            .channel_message(&c.bob, &c.id, "the rocket needs fuel")
            .await;

        let items = search_until(&server, &c.bob, &c.id, "Rocket LAUNCH", 2).await;
        assert_eq!(items[0]["id"], best["id"], "{backend}: best first");
        assert_eq!(items[1]["id"], other["id"], "{backend}");
        let scores: Vec<f64> = items
            .iter()
            .map(|i| i["relevanceScore"].as_f64().expect("relevanceScore"))
            .collect();
        assert!(
            scores.iter().all(|s| (0.0..=1.0).contains(s)),
            "{backend}: {scores:?}"
        );
        assert!(scores[0] >= scores[1], "{backend}: {scores:?}");
        // Each hit is the message as history shows it, encrypted for the reader.
        let keys = member_keys(&server, &c.bob, &format!("/api/channels/{}", c.id)).await;
        assert_eq!(decrypt_message(&keys, &items[0]), "rocket launch tonight");
        for field in [
            "senderId",
            "createdAt",
            "keyEpoch",
            "channelId",
            "reactions",
        ] {
            assert!(!items[0][field].is_null(), "{backend}: {field} missing");
        }
        let answer = search(&server, &c.bob, &c.id, "launch").await;
        assert_eq!(answer.body["message"], "Search results");
        assert!(answer.data(200)["hasMore"] == false);
        // No hit: an empty page, not an error.
        assert!(
            search_until(&server, &c.bob, &c.id, "submarine", 0)
                .await
                .is_empty()
        );
    }
}

#[tokio::test]
async fn edits_are_found_by_their_new_text_only_and_deletions_vanish() {
    for (backend, adjust) in backends() {
        eprintln!("backend: {backend}");
        let server = TestServer::start_with(adjust).await;
        let c = channel(&server, true).await;
        let message = server
            .channel_message(&c.ada, &c.id, "meet at the harbour")
            .await;
        let gone = server
            .channel_message(&c.ada, &c.id, "harbour closed today")
            .await;
        search_until(&server, &c.bob, &c.id, "harbour", 2).await;

        let id = message["id"].as_str().expect("id");
        server
            .put(
                &format!("/api/channels/{}/messages/{id}", c.id),
                Some(&c.ada.token),
                json!({"content": "meet at the lighthouse"}),
            )
            .await
            .data(200);
        let hits = search_until(&server, &c.bob, &c.id, "lighthouse", 1).await;
        assert_eq!(hits[0]["id"], id, "{backend}");
        let gone_id = gone["id"].as_str().expect("id");
        server
            .delete(
                &format!("/api/channels/{}/messages/{gone_id}", c.id),
                Some(&c.ada.token),
            )
            .await
            .data(200);
        // Neither the old text of the edit nor the deleted message is found.
        search_until(&server, &c.bob, &c.id, "harbour", 0).await;
    }
}

#[tokio::test]
async fn a_newcomer_does_not_find_history_hidden_from_it() {
    for (backend, adjust) in backends() {
        eprintln!("backend: {backend}");
        let server = TestServer::start_with(adjust).await;
        let c = channel(&server, false).await;
        server
            .channel_message(&c.ada, &c.id, "secret plans before Cat")
            .await;
        search_until(&server, &c.bob, &c.id, "plans", 1).await;
        let cat = server.member("Cat").await;
        server
            .post(
                &format!("/api/channels/{}/join", c.id),
                Some(&cat.token),
                json!({}),
            )
            .await
            .data(200);
        let later = server
            .channel_message(&c.ada, &c.id, "new plans with Cat")
            .await;
        // Bob sees both; Cat only what was sent after it joined.
        search_until(&server, &c.bob, &c.id, "plans", 2).await;
        let hits = search_until(&server, &cat, &c.id, "plans", 1).await;
        assert_eq!(hits[0]["id"], later["id"], "{backend}");
    }
}

#[tokio::test]
async fn paging_25_hits_by_10_repeats_and_skips_nothing() {
    for (backend, adjust) in backends() {
        eprintln!("backend: {backend}");
        let server = TestServer::start_with(adjust).await;
        let c = channel(&server, true).await;
        for n in 0..25 {
            server
                .channel_message(&c.ada, &c.id, &format!("alpha report number {n}"))
                .await;
        }
        search_until(&server, &c.bob, &c.id, "alpha", 25).await;

        let mut seen = std::collections::HashSet::new();
        let mut cursor: Option<String> = None;
        let mut sizes = Vec::new();
        loop {
            let mut path = format!(
                "/api/channels/{}/messages/search?query=alpha&limit=10",
                c.id
            );
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let answer = server.get(&path, Some(&c.bob.token)).await;
            let page = answer.data(200).clone();
            let items = page["items"].as_array().expect("items");
            sizes.push(items.len());
            for item in items {
                assert!(
                    seen.insert(item["id"].as_str().expect("id").to_owned()),
                    "{backend}: repeated {item}"
                );
            }
            if cursor.is_none() {
                // New matching messages after the first page do not enter this result.
                server
                    .channel_message(&c.ada, &c.id, "alpha latecomer")
                    .await;
            }
            if page["hasMore"] != true {
                break;
            }
            cursor = Some(page["cursor"].as_str().expect("cursor").to_owned());
        }
        assert_eq!(sizes, vec![10, 10, 5], "{backend}");
        assert_eq!(seen.len(), 25, "{backend}");
        // A fresh search sees the latecomer.
        search_until(&server, &c.bob, &c.id, "alpha", 26).await;
    }
}

#[tokio::test]
async fn outsiders_are_refused_as_history_refuses_them() {
    let server = TestServer::start().await;
    let c = channel(&server, true).await;
    let eve = server.member("Eve").await;
    search(&server, &eve, &c.id, "anything")
        .await
        .error(403, "FORBIDDEN");
    let hidden = server.channel(&c.ada, "hideout", "invisible", true).await;
    search(&server, &eve, &hidden, "anything")
        .await
        .error(404, "NOT_FOUND");
    search(&server, &eve, &Uuid::new_v4().to_string(), "anything")
        .await
        .error(404, "NOT_FOUND");
    let anonymous = server
        .get(
            &format!("/api/channels/{}/messages/search?query=x", c.id),
            None,
        )
        .await;
    anonymous.error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn bad_queries_limits_and_cursors_are_400() {
    let server = TestServer::start().await;
    let c = channel(&server, true).await;
    server.channel_message(&c.ada, &c.id, "hello world").await;
    let base = format!("/api/channels/{}/messages/search", c.id);
    let long = "a".repeat(201);
    for query in [
        String::new(),
        "?query=".into(),
        "?query=%20%20".into(),
        format!("?query={long}"),
        "?query=hello&limit=0".into(),
        "?query=hello&limit=101".into(),
        "?query=hello&limit=x".into(),
        "?query=hello&cursor=not-a-cursor".into(),
    ] {
        server
            .get(&format!("{base}{query}"), Some(&c.bob.token))
            .await
            .error(400, "VALIDATION_ERROR");
    }
    // 200 characters is fine; so is anything a query language would choke on.
    let ok = "a".repeat(200);
    search(&server, &c.bob, &c.id, &ok).await.data(200);
    for hostile in [
        "\"",
        "hello AND (",
        "*",
        "title:x~2",
        "-",
        "ünïcødé 你好",
        "\\",
    ] {
        search(&server, &c.bob, &c.id, hostile).await.data(200);
    }
    // A cursor belongs to its search: another query's cursor is refused.
    for n in 0..3 {
        server
            .channel_message(&c.ada, &c.id, &format!("hello again {n}"))
            .await;
    }
    search_until(&server, &c.bob, &c.id, "hello", 4).await;
    let first = server
        .get(&format!("{base}?query=hello&limit=1"), Some(&c.bob.token))
        .await;
    let cursor = first.data(200)["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    server
        .get(
            &format!("{base}?query=again&limit=1&cursor={cursor}"),
            Some(&c.bob.token),
        )
        .await
        .error(400, "VALIDATION_ERROR");
    server
        .get(
            &format!("{base}?query=hello&limit=1&cursor={cursor}"),
            Some(&c.ada.token),
        )
        .await
        .error(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn graphql_search_messages_gives_what_rest_gives() {
    let server = TestServer::start().await;
    let c = channel(&server, true).await;
    server
        .channel_message(&c.ada, &c.id, "graphql parity check")
        .await;
    let rest = search_until(&server, &c.bob, &c.id, "parity", 1).await;
    let answer = server
        .graphql(
            Some(&c.bob.token),
            "query($c: UUID!) { searchMessages(channelId: $c, query: \"parity\", page: {limit: 5}) { items { id encryptedContent relevanceScore sender { displayName } } hasMore } }",
            json!({"c": c.id}),
        )
        .await;
    let items = &answer["data"]["searchMessages"]["items"];
    assert_eq!(items[0]["id"], rest[0]["id"], "{answer}");
    assert_eq!(items[0]["encryptedContent"], rest[0]["encryptedContent"]);
    assert_eq!(items[0]["sender"]["displayName"], "Ada");
    // The same rules: an outsider is refused, a blank query is a validation error.
    let eve = server.member("Eve").await;
    let refused = server
        .graphql(
            Some(&eve.token),
            "query($c: UUID!) { searchMessages(channelId: $c, query: \"parity\") { hasMore } }",
            json!({"c": c.id}),
        )
        .await;
    assert_eq!(
        crate::common::gql_code(&refused).as_deref(),
        Some("FORBIDDEN")
    );
    let blank = server
        .graphql(
            Some(&c.bob.token),
            "query($c: UUID!) { searchMessages(channelId: $c, query: \" \") { hasMore } }",
            json!({"c": c.id}),
        )
        .await;
    assert_eq!(
        crate::common::gql_code(&blank).as_deref(),
        Some("VALIDATION_ERROR")
    );
}

#[tokio::test]
async fn a_new_node_rebuilds_its_index_from_the_database() {
    let server = TestServer::start().await;
    let c = channel(&server, true).await;
    server
        .channel_message(&c.ada, &c.id, "written before the restart")
        .await;
    search_until(&server, &c.bob, &c.id, "restart", 1).await;
    // A node with an empty index of its own (as after losing the data dir's index).
    let restarted = server.restart().await;
    search_until(&restarted, &c.bob, &c.id, "restart", 1).await;
}

/// An index that can be switched off, as a backend outage.
struct Flaky {
    inner: EmbeddedIndex,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), SearchError> {
        if self.down.load(Ordering::SeqCst) {
            Err(SearchError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl SearchIndex for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    async fn upsert(&self, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        self.check()?;
        self.inner.upsert(docs).await
    }
    async fn delete_messages(&self, ids: Vec<Uuid>) -> Result<(), SearchError> {
        self.check()?;
        self.inner.delete_messages(ids).await
    }
    async fn delete_channel(&self, channel_id: Uuid) -> Result<(), SearchError> {
        self.check()?;
        self.inner.delete_channel(channel_id).await
    }
    async fn commit(&self, checkpoint: i64) -> Result<(), SearchError> {
        self.check()?;
        self.inner.commit(checkpoint).await
    }
    async fn checkpoint(&self) -> Result<Option<i64>, SearchError> {
        self.check()?;
        self.inner.checkpoint().await
    }
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
        self.check()?;
        self.inner.search(request).await
    }
    async fn clear(&self) -> Result<(), SearchError> {
        self.check()?;
        self.inner.clear().await
    }
    async fn healthy(&self) -> bool {
        !self.down.load(Ordering::SeqCst) && self.inner.healthy().await
    }
}

#[tokio::test]
async fn a_backend_outage_answers_503_loses_nothing_and_catches_up() {
    let index = Arc::new(Flaky {
        inner: EmbeddedIndex::in_memory().expect("index"),
        down: AtomicBool::new(false),
    });
    let server = TestServer::start_with_index(|_| {}, index.clone()).await;
    let c = channel(&server, true).await;
    server
        .channel_message(&c.ada, &c.id, "before the outage")
        .await;
    search_until(&server, &c.bob, &c.id, "outage", 1).await;

    index.down.store(true, Ordering::SeqCst);
    // Sending still works; search says plainly it is unavailable, quickly.
    for n in 0..5 {
        server
            .channel_message(&c.ada, &c.id, &format!("during the outage {n}"))
            .await;
    }
    let started = Instant::now();
    let answer = server
        .client
        .get(format!(
            "{}/api/channels/{}/messages/search?query=outage",
            server.base, c.id
        ))
        .bearer_auth(&c.bob.token)
        .send()
        .await
        .expect("answers");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.headers().get("retry-after").is_some());
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
    server
        .get("/readyz", None)
        .await
        .error(503, "SERVICE_UNAVAILABLE");

    // Back: everything written meanwhile is caught up from the outbox.
    index.down.store(false, Ordering::SeqCst);
    search_until(&server, &c.bob, &c.id, "outage", 6).await;
    server.get("/readyz", None).await.data(200);
}

/// Runs `brightchat reindex` (the real binary) with these settings; returns stdout.
async fn run_reindex(args: Vec<String>, envs: Vec<(&'static str, String)>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_brightchat"));
        for (name, _) in std::env::vars() {
            if name.starts_with("BRIGHTCHAT_") {
                command.env_remove(name);
            }
        }
        command.arg("reindex").args(args).envs(envs).output()
    })
    .await
    .expect("join")
    .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "reindex failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_rebuilds_from_the_database_and_works_while_the_server_runs() {
    let server = TestServer::start().await;
    let c = channel(&server, true).await;
    for text in ["first note", "second note", "third note"] {
        server.channel_message(&c.ada, &c.id, text).await;
    }
    search_until(&server, &c.bob, &c.id, "note", 3).await;
    let database = server.config.effective_database_url();

    // Another data dir: the command opens an index of its own and rebuilds it.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let stdout = run_reindex(
        Vec::new(),
        vec![
            (
                "BRIGHTCHAT_DATA_DIR",
                elsewhere.path().display().to_string(),
            ),
            ("BRIGHTCHAT_DATABASE_URL", database.clone()),
            (
                "BRIGHTCHAT_SERVER_KEY",
                hex::encode(server.state.server_key.secret_bytes()),
            ),
        ],
    )
    .await;
    assert!(stdout.contains("reindexed 3 messages"), "{stdout}");

    // The server's own data dir: the running server holds the index, rebuilds it when
    // asked, and the command reports its count. One channel only, this time.
    let stdout = run_reindex(
        vec!["--channel".into(), c.id.clone()],
        vec![
            ("BRIGHTCHAT_DATA_DIR", server.data_dir.display().to_string()),
            ("BRIGHTCHAT_DATABASE_URL", database),
        ],
    )
    .await;
    assert!(stdout.contains("reindexed 3 messages"), "{stdout}");
    search_until(&server, &c.bob, &c.id, "note", 3).await;
}

/// The shared conformance suite, on every backend this run can reach.
#[tokio::test]
async fn every_backend_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = EmbeddedIndex::open(&dir.path().join("search")).expect("embedded index");
    brightchat::search::conformance::run(&embedded).await;
    match std::env::var("BRIGHTCHAT_TEST_MEILI_URL") {
        Ok(url) if !url.is_empty() => {
            let key = std::env::var("BRIGHTCHAT_TEST_MEILI_KEY").ok();
            let uid = format!("bct_{}", Uuid::new_v4().simple());
            let meili = brightchat::search::meili::MeiliIndex::connect(&url, key.as_deref(), &uid)
                .await
                .expect("Meilisearch answers");
            brightchat::search::conformance::run(&meili).await;
        }
        _ => eprintln!("meilisearch: skipped: BRIGHTCHAT_TEST_MEILI_URL is not set"),
    }
}

/// The last member leaving deletes the channel; its messages leave the index too.
#[tokio::test]
async fn a_channel_deleted_by_its_last_departure_leaves_the_index() {
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let id = server.channel(&ada, "solo", "public", true).await;
    server.channel_message(&ada, &id, "farewell note").await;
    search_until(&server, &ada, &id, "farewell", 1).await;
    server
        .post(
            &format!("/api/channels/{id}/leave"),
            Some(&ada.token),
            json!({}),
        )
        .await
        .data(200);
    let request = SearchRequest {
        channel_id: id.parse().expect("uuid"),
        query: "farewell".into(),
        after_id: None,
        until_id: None,
        limit: 10,
    };
    let started = Instant::now();
    loop {
        let hits = server
            .state
            .search
            .index
            .search(&request)
            .await
            .expect("search");
        if hits.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the deleted channel's messages are still indexed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events lost to the index (pruned by another node while this one's backend was down)
/// make the indexer rebuild: nothing sent meanwhile stays unsearchable.
#[tokio::test]
async fn events_pruned_while_the_backend_was_down_are_recovered_by_a_rebuild() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let index = Arc::new(Flaky {
        inner: EmbeddedIndex::in_memory().expect("index"),
        down: AtomicBool::new(false),
    });
    let server = TestServer::start_with_index(|_| {}, index.clone()).await;
    let c = channel(&server, true).await;
    server.channel_message(&c.ada, &c.id, "kept before").await;
    search_until(&server, &c.bob, &c.id, "kept", 1).await;
    let indexed = server.state.search.indexed().expect("caught up once");

    index.down.store(true, Ordering::SeqCst);
    server.channel_message(&c.ada, &c.id, "kept during").await;
    server.channel_message(&c.ada, &c.id, "kept again").await;
    // Another node's pruning removes the events this node has not indexed, recording how
    // far it pruned (as `events::outbox::prune` does).
    let top = entity::event::Entity::find()
        .order_by_desc(entity::event::Column::Seq)
        .one(&server.state.db.read)
        .await
        .expect("read")
        .expect("events")
        .seq;
    entity::server_meta::Entity::insert(entity::server_meta::ActiveModel {
        name: sea_orm::Set(brightchat::events::positions::PRUNED_KEY.to_owned()),
        value: sea_orm::Set(top.to_string()),
    })
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(entity::server_meta::Column::Name)
            .update_column(entity::server_meta::Column::Value)
            .to_owned(),
    )
    .exec_without_returning(&server.state.db.write)
    .await
    .expect("mark");
    entity::event::Entity::delete_many()
        .filter(entity::event::Column::Seq.gt(indexed))
        .exec(&server.state.db.write)
        .await
        .expect("prune");
    index.down.store(false, Ordering::SeqCst);
    search_until(&server, &c.bob, &c.id, "kept", 3).await;
}
