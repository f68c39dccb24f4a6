//! The plugin host inside a running server: state in the database (exact under
//! concurrency, kept across a restart), hot reload from the folder, the sandbox's budget
//! while the server keeps serving, and the plugin author's commands.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brightchat::plugins::{ContextFacts, Hook, HookCall, MemberFacts};
use serde_json::{Map, json};

use crate::common::TestServer;

fn message_call(content: &str) -> HookCall {
    let mut params = Map::new();
    params.insert("kind".into(), json!("send"));
    params.insert("content".into(), json!(content));
    HookCall {
        hook: Hook::Message,
        actor: Some(MemberFacts {
            id: uuid::Uuid::now_v7().to_string(),
            display_name: "ann".into(),
            ..MemberFacts::default()
        }),
        target: None,
        context: Some(ContextFacts {
            kind: "channel".into(),
            id: uuid::Uuid::now_v7().to_string(),
            name: "general".into(),
            ..ContextFacts::default()
        }),
        params,
        now_ms: brightchat::time::now_ms(),
    }
}

const COUNTER: &str = r#"
// Counts every message it is asked about, and says the count in its deny.
fn on_message(ctx) {
    let n = state_incr("seen", 1);
    deny(`seen ${n}`)
}
"#;

async fn state_value(server: &TestServer, plugin: &str, key: &str) -> Option<serde_json::Value> {
    let store = server.state.plugins.state.clone();
    let (plugin, key) = (plugin.to_owned(), key.to_owned());
    tokio::task::spawn_blocking(move || store.get(&plugin, &key, brightchat::time::now_ms()))
        .await
        .expect("join")
        .expect("state reads")
}

#[tokio::test]
async fn state_counts_exactly_under_concurrency_and_survives_a_restart() {
    let server = TestServer::start_with_plugins(&[("counter.rhai", COUNTER)], |_| {}).await;
    let plugins = &server.state.plugins;
    let calls = (0..50).map(|_| plugins.decide(message_call("hi")));
    let verdicts = futures_util::future::join_all(calls).await;
    let mut seen: Vec<i64> = verdicts
        .iter()
        .map(|v| {
            let reason = &v.denied.as_ref().expect("every call denies").reason;
            reason.trim_start_matches("seen ").parse().expect("a count")
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=50).collect::<Vec<i64>>(),
        "each call got its own count"
    );
    assert_eq!(
        state_value(&server, "counter", "seen").await,
        Some(json!(50))
    );

    let again = server.restart().await;
    assert_eq!(
        state_value(&again, "counter", "seen").await,
        Some(json!(50))
    );
    let verdict = again.state.plugins.decide(message_call("hi")).await;
    assert_eq!(verdict.denied.expect("denies").reason, "seen 51");
}

#[tokio::test]
async fn state_values_round_trip_and_expire() {
    let plugin = r#"
fn on_message(ctx) {
    if ctx.params.content == "set" {
        state_set("profile", #{ strikes: [1, 2], name: "ann", ok: true });
        state_set("short", 1, 50);
        return allow();
    }
    let p = state_get("profile");
    deny(`${p.name} ${p.strikes.len()} ${p.ok} ${state_get("short")} ${state_get("missing")}`)
}
"#;
    let server = TestServer::start_with_plugins(&[("values.rhai", plugin)], |_| {}).await;
    let plugins = &server.state.plugins;
    assert!(plugins.decide(message_call("set")).await.denied.is_none());
    tokio::time::sleep(Duration::from_millis(120)).await;
    let verdict = plugins.decide(message_call("read")).await;
    assert_eq!(verdict.denied.expect("denies").reason, "ann 2 true  ");
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

async fn reason(server: &TestServer) -> Option<String> {
    server
        .state
        .plugins
        .decide(message_call("hi"))
        .await
        .denied
        .map(|d| d.reason)
}

#[tokio::test]
async fn the_folder_is_watched_new_files_load_broken_edits_keep_the_old_version() {
    let server = TestServer::start_with_plugins(&[], |_| {}).await;
    assert!(!server.state.plugins.wants(Hook::Message));
    let file = server.plugins_dir().join("10_words.rhai");
    std::fs::write(&file, "fn on_message(ctx) { deny(\"v1\") }").expect("write");
    eventually("a new plugin loads", async || {
        reason(&server).await.as_deref() == Some("v1")
    })
    .await;

    std::fs::write(&file, "fn on_message(ctx) { deny(\"v2\") }").expect("write");
    eventually("an edit loads", async || {
        reason(&server).await.as_deref() == Some("v2")
    })
    .await;

    // A broken edit is reported and the previous version stays in force.
    std::fs::write(&file, "fn on_message(ctx) { deny(\"v3\" }").expect("write");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let report = server.state.plugins.registry.check(&server.plugins_dir());
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(reason(&server).await.as_deref(), Some("v2"));

    // Settings reload with their script.
    std::fs::write(&file, "fn on_message(ctx) { deny(ctx.config.word) }").expect("write");
    std::fs::write(
        server.plugins_dir().join("10_words.toml"),
        "word = \"from settings\"",
    )
    .expect("write");
    eventually("settings load", async || {
        reason(&server).await.as_deref() == Some("from settings")
    })
    .await;

    // Only `*.rhai` directly in the folder load.
    std::fs::create_dir_all(server.plugins_dir().join("examples")).expect("mkdir");
    std::fs::write(
        server.plugins_dir().join("examples/20_other.rhai"),
        "fn on_kick(ctx) { deny() }",
    )
    .expect("write");
    std::fs::remove_file(&file).expect("remove");
    eventually("a removed plugin stops", async || {
        !server.state.plugins.wants(Hook::Message)
    })
    .await;
    assert!(!server.state.plugins.wants(Hook::Kick));
}

#[tokio::test]
async fn an_endless_plugin_is_stopped_within_its_budget_while_the_server_keeps_serving() {
    let endless = "fn on_message(ctx) { let n = 0; loop { n += 1; } }";
    let server = TestServer::start_with_plugins(&[("loop.rhai", endless)], |config| {
        config.plugin_budget = Duration::from_millis(300);
    })
    .await;
    let plugins = Arc::new(server.state.clone());
    // Twenty endless calls at once, more than this machine has cores.
    let started = Instant::now();
    let stuck: Vec<_> = (0..20)
        .map(|_| {
            let state = plugins.clone();
            tokio::spawn(async move { state.plugins.decide(message_call("hi")).await })
        })
        .collect();
    // Meanwhile the server answers.
    let ann = server.member("ann").await;
    let answered = Instant::now();
    server
        .get("/api/members/me", Some(&ann.token))
        .await
        .data(200);
    assert!(
        answered.elapsed() < Duration::from_secs(2),
        "a request waited {:?} behind endless plugins",
        answered.elapsed()
    );
    // A client's send through the same endless plugin is refused once the budget is spent.
    let channel = server.channel(&ann, "endless", "public", true).await;
    let sent = Instant::now();
    let refused = server
        .post(
            &format!("/api/channels/{channel}/messages"),
            Some(&ann.token),
            json!({"content": "hello"}),
        )
        .await;
    refused.error(403, "FORBIDDEN");
    assert_eq!(refused.body["error"]["details"]["plugin"], "loop");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "the send took {:?}",
        sent.elapsed()
    );
    for call in stuck {
        let verdict = call.await.expect("join");
        let denial = verdict.denied.expect("an overrun fails closed");
        assert_eq!(denial.plugin, "loop");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
}

fn brightchat() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brightchat"));
    for (name, _) in std::env::vars() {
        if name.starts_with("BRIGHTCHAT_") {
            command.env_remove(name);
        }
    }
    command
}

#[test]
fn plugins_check_reports_file_line_column_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("10_ok.rhai"), "fn on_kick(ctx) { allow() }").expect("write");
    let output = brightchat()
        .args(["plugins", "check"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("10_ok"));

    std::fs::write(
        dir.path().join("20_bad.rhai"),
        "fn on_kick(ctx) {\n    let x = ;\n}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("30_bad.toml"), "mode = \"loud\"").expect("write");
    std::fs::write(dir.path().join("30_bad.rhai"), "fn on_mute(ctx) { }").expect("write");
    let output = brightchat()
        .args(["plugins", "check"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("20_bad.rhai:2:"), "{stderr}");
    assert!(
        stderr.contains("30_bad.toml") && stderr.contains("mode"),
        "{stderr}"
    );
}

#[test]
fn plugins_run_prints_decision_actions_and_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("flood.rhai");
    std::fs::write(
        &plugin,
        r#"fn on_message(ctx) {
    let n = state_incr(`strikes:${ctx.actor.id}`, 1);
    log("info", `strike ${n}`);
    if n >= ctx.config.strikes {
        mute_member(ctx.actor.id, 3600000, "flooding");
        notify_moderators("muted a flooder", ctx.actor.id);
        return deny("Slow down");
    }
}"#,
    )
    .expect("write");
    std::fs::write(dir.path().join("flood.toml"), "strikes = 3").expect("write");
    let actor = "0192f0c0-0000-7000-8000-00000000000a";
    let ctx = dir.path().join("ctx.json");
    std::fs::write(
        &ctx,
        json!({
            "actor": {"id": actor, "display_name": "ann"},
            "context": {"type": "channel", "id": "0192f0c0-0000-7000-8000-000000000001"},
            "params": {"kind": "send", "content": "hi"}
        })
        .to_string(),
    )
    .expect("write");
    let state = dir.path().join("state.json");
    std::fs::write(&state, json!({ format!("strikes:{actor}"): 2 }).to_string()).expect("write");
    let output = brightchat()
        .args(["plugins", "run"])
        .arg(&plugin)
        .arg("on_message")
        .arg("--ctx")
        .arg(&ctx)
        .arg("--state")
        .arg(&state)
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("decision deny: Slow down"), "{stdout}");
    assert!(
        stdout.contains("mute_member") && stdout.contains("3600000"),
        "{stdout}"
    );
    assert!(stdout.contains("notify_moderators"), "{stdout}");
    assert!(stdout.contains(&format!("strikes:{actor} = 3")), "{stdout}");
    assert!(stdout.contains("strike 3"), "{stdout}");

    let output = brightchat()
        .args(["plugins", "run"])
        .arg(&plugin)
        .arg("message")
        .arg("--ctx")
        .arg(&ctx)
        .arg("--json")
        .output()
        .expect("run");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["result"]["decision"], "allow");
    assert_eq!(report["state_changes"][0]["value"], 1);
}

/// The contract's example, end to end with the shipped flood-control policy: the third
/// refused message in ten minutes mutes the sender for an hour, deletes what it just sent
/// and alerts the moderators (and no one else); everything is in the audit log.
#[tokio::test]
async fn flood_control_mutes_purges_and_alerts_moderators_over_rest() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/examples");
    let read = |name: &str| std::fs::read_to_string(examples.join(name)).expect("example");
    let (rhai, toml) = (read("60_flood_control.rhai"), read("60_flood_control.toml"));
    let server = TestServer::start_with_plugins(
        &[
            ("60_flood_control.rhai", &rhai),
            ("60_flood_control.toml", &toml),
        ],
        |_| {},
    )
    .await;
    let ada = server.member("ada").await;
    let mo = server.member("mo").await;
    let bob = server.member("bob").await;
    let id = server.channel(&ada, "busy", "public", true).await;
    for m in [&mo, &bob] {
        server.join(m, &id).await;
    }
    server
        .put(
            &format!("/api/channels/{id}/roles/{}", mo.id),
            Some(&ada.token),
            json!({"role": "moderator"}),
        )
        .await
        .data(200);
    let mut mo_ws = server.ws(&mo).await;
    let mut bob_ws = server.ws(&bob).await;
    let send = async |text: &str| {
        server
            .post(
                &format!("/api/channels/{id}/messages"),
                Some(&bob.token),
                json!({"content": text}),
            )
            .await
    };
    for n in 0..5 {
        send(&format!("message {n}")).await.data(201);
    }
    for n in 0..3 {
        let refused = send(&format!("too fast {n}")).await;
        refused.error(403, "FORBIDDEN");
        assert_eq!(
            refused.body["error"]["details"]["plugin"],
            "60_flood_control"
        );
    }

    // Muted for an hour: reacting (which no plugin watches) is refused as muted.
    let members = server
        .get(&format!("/api/channels/{id}"), Some(&ada.token))
        .await;
    let bob_entry = members.data(200)["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["memberId"] == bob.id.to_string())
        .cloned()
        .expect("bob");
    let until =
        chrono::DateTime::parse_from_rfc3339(bob_entry["mutedUntil"].as_str().expect("muted"))
            .expect("time")
            .timestamp_millis();
    let hour_from_now = brightchat::time::now_ms() + 3_600_000;
    assert!(
        (hour_from_now - 60_000..=hour_from_now).contains(&until),
        "{bob_entry}"
    );
    // What bob sent in the last minute is gone.
    let history = server
        .get(
            &format!("/api/channels/{id}/messages?limit=100"),
            Some(&ada.token),
        )
        .await;
    assert!(
        history.data(200)["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|m| m["senderId"] != bob.id.to_string()),
        "bob's messages were purged"
    );
    // The moderator is alerted; bob is not.
    let alert = mo_ws.expect("communication:moderation_alert").await;
    assert_eq!(alert["data"]["plugin"], "60_flood_control");
    assert_eq!(alert["data"]["memberId"], bob.id.to_string());
    let bob_frames = bob_ws.drain(Duration::from_millis(500)).await;
    assert!(
        bob_frames
            .iter()
            .all(|f| f["type"] != "communication:moderation_alert"),
        "{bob_frames:?}"
    );
    // The owner reads it all in the audit log; bob may not.
    let audit = server
        .get(
            &format!("/api/channels/{id}/audit?limit=100"),
            Some(&ada.token),
        )
        .await;
    let entries = audit.data(200)["items"].as_array().expect("items").clone();
    let of = |action: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| {
                e["plugin"] == "60_flood_control"
                    && e["action"] == action
                    && e["outcome"] == outcome
            })
            .count()
    };
    assert_eq!(of("message", "denied"), 3, "{entries:?}");
    assert_eq!(of("mute", "allowed"), 1, "{entries:?}");
    assert_eq!(of("purge", "allowed"), 1, "{entries:?}");
    assert_eq!(of("alert", "allowed"), 1, "{entries:?}");
    server
        .get(&format!("/api/channels/{id}/audit"), Some(&bob.token))
        .await
        .error(403, "FORBIDDEN");
}

const NAMES: &str = r#"
// Names may not pretend to be staff; a listed word is masked.
fn on_profile_change(ctx) {
    if regex_match("(?i)\\b(admin|moderator)\\b", ctx.params.display_name) {
        return deny("Names may not pretend to be staff");
    }
    let masked = regex_replace("(?i)badword", ctx.params.display_name, "***");
    if masked != ctx.params.display_name {
        return modify(#{ display_name: masked });
    }
    if ctx.params.kind == "update" && ctx.params.previous_display_name == "frozen" {
        return deny(`${ctx.actor.display_name} keeps that name`);
    }
}
"#;

#[tokio::test]
async fn display_names_are_refused_and_rewritten_at_registration_and_on_change() {
    let server = TestServer::start_with_plugins(&[("10_names.rhai", NAMES)], |_| {}).await;
    // Registration: refused with the plugin named, or rewritten.
    let (_, public) = crate::common::new_keypair();
    let refused = server
        .post(
            "/api/members",
            None,
            json!({"displayName": "The Admin", "publicKey": public}),
        )
        .await;
    refused.error(403, "FORBIDDEN");
    assert_eq!(
        refused.body["error"]["message"],
        "Names may not pretend to be staff"
    );
    assert_eq!(refused.body["error"]["details"]["plugin"], "10_names");
    let (_, public) = crate::common::new_keypair();
    let registered = server
        .post(
            "/api/members",
            None,
            json!({"displayName": "Mr Badword", "publicKey": public}),
        )
        .await;
    assert_eq!(registered.data(201)["displayName"], "Mr ***");

    // A change: PATCH /api/members/me and the GraphQL mutation.
    let ann = server.member("ann").await;
    let changed = server
        .call(
            reqwest::Method::PATCH,
            "/api/members/me",
            Some(&ann.token),
            Some(json!({"displayName": "ann badword"})),
        )
        .await;
    assert_eq!(changed.data(200)["displayName"], "ann ***");
    let me = server.get("/api/members/me", Some(&ann.token)).await;
    assert_eq!(me.data(200)["displayName"], "ann ***");
    let refused = server
        .call(
            reqwest::Method::PATCH,
            "/api/members/me",
            Some(&ann.token),
            Some(json!({"displayName": "moderator ann"})),
        )
        .await;
    refused.error(403, "FORBIDDEN");
    assert_eq!(refused.body["error"]["details"]["plugin"], "10_names");
    let answer = server
        .graphql(
            Some(&ann.token),
            "mutation($n: String!) { updateProfile(input: {displayName: $n}) { displayName } }",
            json!({"n": "frozen"}),
        )
        .await;
    assert_eq!(
        answer["data"]["updateProfile"]["displayName"], "frozen",
        "{answer}"
    );
    // The plugin sees the previous name (and the actor's current one).
    let answer = server
        .graphql(
            Some(&ann.token),
            "mutation($n: String!) { updateProfile(input: {displayName: $n}) { displayName } }",
            json!({"n": "thawed"}),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["message"], "frozen keeps that name",
        "{answer}"
    );
    assert_eq!(
        answer["errors"][0]["extensions"]["details"]["plugin"], "10_names",
        "{answer}"
    );
    // Bad input is refused before any plugin.
    server
        .call(
            reqwest::Method::PATCH,
            "/api/members/me",
            Some(&ann.token),
            Some(json!({"displayName": "   "})),
        )
        .await
        .error(400, "VALIDATION_ERROR");
}
