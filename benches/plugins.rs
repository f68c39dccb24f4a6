//! Plugin benchmark: what five loaded moderation plugins add to a channel send.
//!
//! Starts the release `brightchat` binary three times on fresh SQLite data dirs: with an
//! empty plugins folder; with five `on_message` plugins of the kinds communities run (a word
//! filter that masks with `modify`, a regex filter, a link gate for new members, a
//! mention-spam cap, a shouting filter); and with flood control, which writes a
//! `state_incr` counter to the database on every message, in place of the shouting filter.
//! It sends messages one at a time from one member and prints p50/p99 per send and what the
//! plugins add. It also times the plugin host alone (five plugins, state in memory, no HTTP
//! and no database), which is the engine's own share.
//!
//!     cargo bench --bench plugins                      # 2,000 sends each
//!     PLUGIN_BENCH_SENDS=500 cargo bench --bench plugins
//!
//! It sends traffic only to 127.0.0.1 and stops by itself.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use brightchat::plugins::{
    ContextFacts, Hook, HookCall, Limits, MemberFacts, MemoryStateStore, Registry,
};
use serde_json::{Map, json};
use support::{env_number, member, percentile, post, start_server};

/// A fifth plugin that keeps no state: a shouting filter.
const CAPS: (&str, &str, &str) = (
    "50_caps",
    r#"fn on_message(ctx) {
    let letters = regex_find("[A-Z]", ctx.params.content).len();
    if letters > ctx.config.max_capitals { return deny("Please do not shout"); }
}"#,
    "max_capitals = 40",
);

/// The plugins: (file name, script, settings); the last, flood control, writes its counter
/// to the database on every message.
const PLUGINS: [(&str, &str, &str); 5] = [
    (
        "10_words",
        r#"fn on_message(ctx) {
    let found = words_find(ctx.params.content, ctx.config.words);
    if found.len() > 0 {
        let masked = ctx.params.content;
        for w in found { masked = regex_replace(`(?i)\b${w}\b`, masked, "***"); }
        return modify(#{ content: masked });
    }
}"#,
        r#"words = ["spam", "scam", "phish*", "free money", "crypto*", "casino", "viagra", "lottery", "winner", "prize",
"click*", "unsubscribe", "bitcoin", "wallet", "giveaway", "airdrop", "nft", "forex", "loan", "debt",
"cheap", "discount", "offer", "limited", "urgent", "act now", "guarantee", "risk free", "bonus", "cash"]"#,
    ),
    (
        "20_regex",
        r#"fn on_message(ctx) {
    if regex_match(ctx.config.pattern, ctx.params.content) { return deny("That looks like a scam"); }
}"#,
        r#"pattern = "(?i)(free\\s+money|double\\s+your\\s+\\w+|send\\s+\\d+\\s*(btc|eth))""#,
    ),
    (
        "30_links",
        r#"fn on_message(ctx) {
    if ctx.params.links.len() == 0 { return; }
    let joined = ctx.actor.joined_at_ms ?? ctx.now_ms;
    if ctx.now_ms - joined < ctx.config.new_member_ms && ctx.actor.message_count < 5 {
        return deny("New members cannot post links yet");
    }
}"#,
        "new_member_ms = 600000",
    ),
    (
        "40_mentions",
        r#"fn on_message(ctx) {
    if ctx.params.mentions.len() > ctx.config.max_mentions { return deny("Too many mentions"); }
}"#,
        "max_mentions = 5",
    ),
    (
        "50_flood",
        r#"fn on_message(ctx) {
    let n = state_incr(`flood:${ctx.context.id}:${ctx.actor.id}`, 1, ctx.config.window_ms);
    if n > ctx.config.max_messages { return deny("Slow down"); }
}"#,
        "window_ms = 10000\nmax_messages = 1000000",
    ),
];

/// Writes the first four plugins and either flood control (`stateful`) or the caps filter.
fn write_plugins(dir: &std::path::Path, stateful: bool) {
    let fifth = if stateful { PLUGINS[4] } else { CAPS };
    for (name, script, settings) in PLUGINS[..4].iter().copied().chain([fifth]) {
        std::fs::write(dir.join(format!("{name}.rhai")), script).expect("write plugin");
        std::fs::write(dir.join(format!("{name}.toml")), settings).expect("write settings");
    }
}

const TEXT: &str =
    "hello everyone, the meeting moved to three o'clock; bring the notes from last week";

/// Sends `sends` messages one at a time; returns each send's latency, sorted.
async fn sends(env: &[(&str, String)], sends: usize) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let server = start_server(&client, env).await;
    let base = server.base.clone();
    let token = member(&client, &base, "bench".into()).await;
    let channel = post(
        &client,
        format!("{base}/api/channels"),
        Some(&token),
        json!({"name": "bench", "visibility": "public"}),
    )
    .await;
    let channel = channel["data"]["id"]
        .as_str()
        .expect("channel id")
        .to_owned();
    let url = format!("{base}/api/channels/{channel}/messages");
    // Warm up connections, caches and the plugins' regexes.
    for _ in 0..50 {
        post(&client, url.clone(), Some(&token), json!({"content": TEXT})).await;
    }
    let mut times = Vec::with_capacity(sends);
    for i in 0..sends {
        let started = Instant::now();
        let answer = client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"content": format!("{TEXT} #{i}")}))
            .send()
            .await
            .expect("send");
        let status = answer.status();
        let _ = answer.bytes().await;
        times.push(started.elapsed());
        assert_eq!(status.as_u16(), 201, "a send failed");
    }
    times.sort_unstable();
    times
}

fn host_alone(calls: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("tempdir");
    write_plugins(dir.path(), false);
    let registry = Registry::new(dir.path(), Limits::default());
    let report = registry.reload();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let state: Arc<dyn brightchat::plugins::StateStore> = Arc::new(MemoryStateStore::default());
    let mut params = Map::new();
    params.insert("kind".into(), json!("send"));
    params.insert("content".into(), json!(TEXT));
    params.insert("links".into(), json!([]));
    params.insert("mentions".into(), json!([]));
    let call = HookCall {
        hook: Hook::Message,
        actor: Some(MemberFacts {
            id: uuid::Uuid::now_v7().to_string(),
            display_name: "bench".into(),
            role: Some("member".into()),
            joined_at_ms: Some(0),
            message_count: 10,
            ..MemberFacts::default()
        }),
        target: None,
        context: Some(ContextFacts {
            kind: "channel".into(),
            id: uuid::Uuid::now_v7().to_string(),
            name: "bench".into(),
            visibility: Some("public".into()),
            member_count: 10,
            joins_last_minute: 0,
        }),
        params,
        now_ms: brightchat::time::now_ms(),
    };
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let verdict = registry.decide(&call, state.clone());
        times.push(started.elapsed());
        assert!(verdict.denied.is_none());
    }
    times.sort_unstable();
    times
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let count = env_number("PLUGIN_BENCH_SENDS", 2_000);
    let host = host_alone(count * 5);
    println!(
        "plugin host alone, 5 plugins, no database: p50 {:.0} µs, p99 {:.0} µs",
        micros(percentile(&host, 0.5)),
        micros(percentile(&host, 0.99))
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let dir_of =
        |d: &tempfile::TempDir| [("BRIGHTCHAT_PLUGINS_DIR", d.path().display().to_string())];
    let none = sends(&dir_of(&empty), count).await;
    let pure = tempfile::tempdir().expect("tempdir");
    write_plugins(pure.path(), false);
    let five = sends(&dir_of(&pure), count).await;
    let stateful = tempfile::tempdir().expect("tempdir");
    write_plugins(stateful.path(), true);
    let five_state = sends(&dir_of(&stateful), count).await;
    println!("channel send, {count} sends one at a time, SQLite, release build:");
    println!(
        "{:<36} {:>8} {:>8} {:>12}",
        "plugins", "p50 µs", "p99 µs", "added p50"
    );
    let base = micros(percentile(&none, 0.5));
    for (label, times) in [
        ("none", &none),
        ("5 (filters, gates, caps)", &five),
        ("5 (4 + flood counter in the database)", &five_state),
    ] {
        let p50 = micros(percentile(times, 0.5));
        println!(
            "{:<36} {:>8.0} {:>8.0} {:>+12.0}",
            label,
            p50,
            micros(percentile(times, 0.99)),
            p50 - base
        );
    }
    println!("target: < 200 µs added at p50");
}
