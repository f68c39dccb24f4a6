//! The example plugins an admin can copy (plugins/examples): every one compiles, each does
//! what its comments promise, the samples give the results docs/plugins.md shows, and the
//! shipped plugins folder runs nothing until an example is copied into it.
//!
//! Examples are driven through `brightchat::plugins::Registry` directly, loaded from a copy
//! in a temporary folder as an admin would copy them one level up; state lives in memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use brightchat::plugins::cli::SampleCtx;
use brightchat::plugins::{
    ContextFacts, Hook, HookCall, Limits, MemberFacts, MemoryStateStore, PlannedAction, Registry,
    StateStore, Verdict,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::TestServer;

/// The shipped examples, in the order they load once copied.
const EXAMPLES: [&str; 9] = [
    "10_cap_mute_length",
    "20_lock_kicks",
    "30_new_account_gate",
    "40_raid_lock",
    "50_invite_quota",
    "60_flood_control",
    "70_link_gate",
    "80_word_filter",
    "90_slow_mode",
];

/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The channel the lock-kicks example's settings switch the lock on in.
const LOCKED_CHANNEL: &str = "0192f0c0-0000-7000-8000-000000000001";
const OTHER_CHANNEL: &str = "0192f0c0-0000-7000-8000-000000000002";
const ANN: &str = "0192f0c0-0000-7000-8000-00000000000a";
const BOB: &str = "0192f0c0-0000-7000-8000-00000000000b";
const CAL: &str = "0192f0c0-0000-7000-8000-00000000000c";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn examples_dir() -> PathBuf {
    repo().join("plugins/examples")
}

/// One or more examples copied into a fresh plugins folder and loaded, with their state.
struct Loaded {
    dir: tempfile::TempDir,
    registry: Registry,
    state: Arc<dyn StateStore>,
}

impl Loaded {
    fn decide(&self, call: &HookCall) -> Verdict {
        self.registry.decide(call, self.state.clone())
    }
}

/// Copies the named examples (`NAME.rhai` and `NAME.toml`) and loads them.
fn load(names: &[&str]) -> Loaded {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in names {
        for ext in ["rhai", "toml"] {
            let file = format!("{name}.{ext}");
            std::fs::copy(examples_dir().join(&file), dir.path().join(&file)).expect("copy");
        }
    }
    let registry = Registry::new(dir.path(), Limits::default());
    let report = registry.reload();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.plugins, names);
    Loaded {
        dir,
        registry,
        state: Arc::new(MemoryStateStore::default()),
    }
}

/// One example, with extra settings appended to its shipped `NAME.toml`.
fn load_with_settings(name: &str, extra: &str) -> Loaded {
    let loaded = load(&[name]);
    let path = loaded.dir.path().join(format!("{name}.toml"));
    let mut text = std::fs::read_to_string(&path).expect("read settings");
    text.push('\n');
    text.push_str(extra);
    std::fs::write(&path, text).expect("write settings");
    let report = loaded.registry.reload();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    loaded
}

fn person(id: &str, name: &str, role: Option<&str>) -> MemberFacts {
    MemberFacts {
        id: id.into(),
        display_name: name.into(),
        role: role.map(Into::into),
        joined_at_ms: Some(NOW - 30 * DAY),
        registered_at_ms: NOW - 90 * DAY,
        message_count: 42,
        last_message_at_ms: Some(NOW - MINUTE),
    }
}

fn moderator() -> MemberFacts {
    person(ANN, "Ann", Some("moderator"))
}

fn member() -> MemberFacts {
    person(BOB, "Bob", Some("member"))
}

fn channel(id: &str) -> ContextFacts {
    ContextFacts {
        kind: "channel".into(),
        id: id.into(),
        name: "general".into(),
        visibility: Some("public".into()),
        member_count: 250,
        joins_last_minute: 0,
    }
}

fn call(
    hook: Hook,
    actor: Option<MemberFacts>,
    target: Option<MemberFacts>,
    context: ContextFacts,
    params: Value,
) -> HookCall {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    HookCall {
        hook,
        actor,
        target,
        context: Some(context),
        params,
        now_ms: NOW,
    }
}

fn message(actor: MemberFacts, content: &str) -> HookCall {
    call(
        Hook::Message,
        Some(actor),
        None,
        channel(LOCKED_CHANNEL),
        json!({"kind": "send", "content": content, "links": [], "mentions": []}),
    )
}

fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).expect("uuid")
}

fn actions(verdict: &Verdict) -> Vec<PlannedAction> {
    verdict.actions.iter().map(|a| a.action.clone()).collect()
}

fn denial(verdict: &Verdict) -> String {
    verdict
        .denied
        .as_ref()
        .map(|d| d.reason.clone())
        .unwrap_or_else(|| panic!("expected a deny, got {verdict:?}"))
}

fn allowed_untouched(verdict: &Verdict) -> bool {
    verdict.denied.is_none() && verdict.modified.is_empty() && verdict.decisions.is_empty()
}

#[test]
fn every_shipped_example_compiles_and_none_runs_until_copied() {
    let dir = examples_dir();
    let registry = Registry::new(&dir, Limits::default());
    let report = registry.check(&dir);
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(report.plugins, EXAMPLES);

    // Only plugins/*.rhai load: the repository's plugins folder itself holds no plugin.
    let top = repo().join("plugins");
    let report = Registry::new(&top, Limits::default()).check(&top);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.plugins.is_empty(), "{:?}", report.plugins);
}

#[test]
fn the_check_command_passes_on_the_examples() {
    let output = Command::new(env!("CARGO_BIN_EXE_brightchat"))
        .args(["plugins", "check"])
        .arg(examples_dir())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("9 plugin(s)"), "{stdout}");
}

/// Each sample ctx in plugins/examples/samples, run with `plugins run --json`, gives the
/// decision the guide shows.
#[test]
fn samples_give_the_results_the_guide_shows() {
    // (example, sample, hook, decision, actions queued)
    let cases = [
        (
            "10_cap_mute_length",
            "10_cap_mute_length",
            "on_mute",
            "modify",
            0,
        ),
        ("20_lock_kicks", "20_lock_kicks", "on_kick", "deny", 0),
        (
            "30_new_account_gate",
            "30_new_account_gate",
            "on_invite_redeem",
            "deny",
            0,
        ),
        ("40_raid_lock", "40_raid_lock", "on_join", "deny", 2),
        ("40_raid_lock", "40_raid_lock.event", "on_event", "allow", 2),
        (
            "50_invite_quota",
            "50_invite_quota",
            "on_invite_create",
            "deny",
            0,
        ),
        (
            "60_flood_control",
            "60_flood_control",
            "on_message",
            "deny",
            3,
        ),
        ("70_link_gate", "70_link_gate", "on_message", "deny", 0),
        (
            "80_word_filter",
            "80_word_filter",
            "on_message",
            "modify",
            0,
        ),
        ("90_slow_mode", "90_slow_mode", "on_message", "allow", 2),
    ];
    let samples = examples_dir().join("samples");
    let mut seen = Vec::new();
    for (name, sample_name, hook, expected, queued) in cases {
        let ctx = samples.join(format!("{sample_name}.json"));
        seen.push(ctx.clone());
        let text = std::fs::read_to_string(&ctx).expect("sample");
        let sample: SampleCtx = serde_json::from_str(&text).expect("a valid sample ctx");
        assert!(sample.now_ms.is_some(), "{sample_name}: samples pin now_ms");
        let mut command = Command::new(env!("CARGO_BIN_EXE_brightchat"));
        command
            .args(["plugins", "run"])
            .arg(examples_dir().join(format!("{name}.rhai")))
            .arg(hook)
            .arg("--ctx")
            .arg(&ctx)
            .arg("--json");
        let state = samples.join(format!("{sample_name}.state.json"));
        if state.exists() {
            seen.push(state.clone());
            command.arg("--state").arg(state);
        }
        let output = command.output().expect("run");
        assert!(
            output.status.success(),
            "{sample_name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).expect("json");
        assert_eq!(
            report["result"]["decision"], expected,
            "{sample_name}: {report:#}"
        );
        let actions = report["actions"].as_array().expect("actions");
        assert_eq!(actions.len(), queued, "{sample_name}: {report:#}");
        assert!(actions.iter().all(|a| a["simulated"] == false));
    }
    // Every sample file is covered above.
    for entry in std::fs::read_dir(&samples).expect("samples") {
        let path = entry.expect("entry").path();
        assert!(seen.contains(&path), "{} is not tested", path.display());
    }
}

#[test]
fn cap_mute_length_shortens_long_mutes_to_the_configured_maximum() {
    let loaded = load(&["10_cap_mute_length"]);
    let mute = |actor: MemberFacts, duration_ms: i64| {
        call(
            Hook::Mute,
            Some(actor),
            Some(member()),
            channel(LOCKED_CHANNEL),
            json!({"duration_ms": duration_ms}),
        )
    };

    let verdict = loaded.decide(&mute(moderator(), 7 * DAY));
    assert!(verdict.denied.is_none());
    assert_eq!(verdict.int("duration_ms"), Some(DAY));
    assert_eq!(verdict.decisions.len(), 1);
    assert_eq!(verdict.decisions[0].outcome, "modified");
    assert_eq!(
        verdict.decisions[0].reason.as_deref(),
        Some("duration_ms changed")
    );

    assert!(allowed_untouched(&loaded.decide(&mute(moderator(), HOUR))));
    assert!(allowed_untouched(&loaded.decide(&mute(moderator(), DAY))));
    let owner = person(ANN, "Ann", Some("owner"));
    assert!(allowed_untouched(&loaded.decide(&mute(owner, 20 * DAY))));

    // A stricter cap in one channel.
    let loaded = load_with_settings(
        "10_cap_mute_length",
        &format!("[context.\"{OTHER_CHANNEL}\"]\nmax_hours = 1\n"),
    );
    let mut here = mute(moderator(), 2 * HOUR);
    here.context = Some(channel(OTHER_CHANNEL));
    assert_eq!(loaded.decide(&here).int("duration_ms"), Some(HOUR));
    assert!(allowed_untouched(
        &loaded.decide(&mute(moderator(), 2 * HOUR))
    ));
}

#[test]
fn lock_kicks_refuses_kicks_only_where_switched_on() {
    let loaded = load(&["20_lock_kicks"]);
    let kick = |actor: MemberFacts, context: &str| {
        call(
            Hook::Kick,
            Some(actor),
            Some(member()),
            channel(context),
            json!({}),
        )
    };

    let verdict = loaded.decide(&kick(moderator(), LOCKED_CHANNEL));
    assert_eq!(
        denial(&verdict),
        "Kicks are locked in this channel; ask the owner"
    );
    assert_eq!(
        verdict.denied.as_ref().map(|d| d.plugin.as_str()),
        Some("20_lock_kicks")
    );
    assert_eq!(verdict.decisions[0].outcome, "denied");
    assert_eq!(verdict.decisions[0].action, "kick");

    let admin = person(ANN, "Ann", Some("admin"));
    assert!(loaded.decide(&kick(admin, LOCKED_CHANNEL)).denied.is_some());
    let owner = person(ANN, "Ann", Some("owner"));
    assert!(allowed_untouched(
        &loaded.decide(&kick(owner, LOCKED_CHANNEL))
    ));
    // Switched off everywhere else.
    assert!(allowed_untouched(
        &loaded.decide(&kick(moderator(), OTHER_CHANNEL))
    ));
}

#[test]
fn new_account_gate_keeps_young_accounts_out_with_a_clear_reason() {
    let loaded = load(&["30_new_account_gate"]);
    let mut young = person(CAL, "Cal", None);
    young.joined_at_ms = None;
    young.registered_at_ms = NOW - 2 * HOUR - 20 * MINUTE;

    let redeem = |who: MemberFacts| {
        call(
            Hook::InviteRedeem,
            Some(who),
            None,
            channel(LOCKED_CHANNEL),
            json!({"invite_id": "ab".repeat(32), "invite_creator_id": BOB}),
        )
    };
    assert_eq!(
        denial(&loaded.decide(&redeem(young.clone()))),
        "Accounts younger than 24 hours cannot join general yet; try again in 22 hours"
    );
    assert!(allowed_untouched(&loaded.decide(&redeem(member()))));

    // A public join: the joiner is the actor.
    let join = call(
        Hook::Join,
        Some(young.clone()),
        None,
        channel(LOCKED_CHANNEL),
        json!({}),
    );
    assert!(loaded.decide(&join).denied.is_some());

    // Added to a group by an old hand: the added member is the target.
    let added = call(
        Hook::Join,
        Some(moderator()),
        Some(young.clone()),
        channel(LOCKED_CHANNEL),
        json!({}),
    );
    assert!(loaded.decide(&added).denied.is_some());
    let added = call(
        Hook::Join,
        Some(young.clone()),
        Some(member()),
        channel(LOCKED_CHANNEL),
        json!({}),
    );
    assert!(allowed_untouched(&loaded.decide(&added)));

    // One hour short: "1 hour", rounded up.
    young.registered_at_ms = NOW - 23 * HOUR - 30 * MINUTE;
    assert!(denial(&loaded.decide(&redeem(young))).ends_with("try again in 1 hour"));
}

#[test]
fn raid_lock_locks_once_on_a_join_wave_and_alerts_moderators() {
    let loaded = load(&["40_raid_lock"]);
    let join = |joins_last_minute: i64, now_ms: i64| {
        let mut context = channel(LOCKED_CHANNEL);
        context.joins_last_minute = joins_last_minute;
        let mut c = call(
            Hook::Join,
            Some(person(CAL, "Cal", None)),
            None,
            context,
            json!({}),
        );
        c.now_ms = now_ms;
        c
    };

    // Ten joins in a minute is the limit: the tenth is let in.
    let verdict = loaded.decide(&join(9, NOW));
    assert!(allowed_untouched(&verdict));
    assert!(verdict.actions.is_empty());

    // The eleventh is refused, and the channel locked for ten minutes.
    let verdict = loaded.decide(&join(10, NOW));
    assert_eq!(
        denial(&verdict),
        "general is not taking new members for a few minutes; try again later"
    );
    assert_eq!(
        actions(&verdict),
        vec![
            PlannedAction::LockContext {
                until_ms: NOW + 10 * MINUTE,
                reason: "Join wave: 11 joins in a minute".into(),
            },
            PlannedAction::NotifyModerators {
                text: "Raid lock: 11 joins to general within a minute; joins are locked for 10 minutes. An owner can lift the lock.".into(),
                member_id: None,
            },
        ]
    );

    // The same wave locks once.
    let verdict = loaded.decide(&join(11, NOW + 1_000));
    assert!(verdict.denied.is_some());
    assert!(verdict.actions.is_empty());

    // After the lock, a new wave locks again.
    let verdict = loaded.decide(&join(15, NOW + 10 * MINUTE + 1));
    assert!(verdict.denied.is_some());
    assert_eq!(verdict.actions.len(), 2);
}

#[test]
fn raid_lock_also_locks_from_member_joined_events() {
    let loaded = load(&["40_raid_lock"]);
    let event = |kind: &str, joins_last_minute: i64| {
        let mut context = channel(OTHER_CHANNEL);
        context.joins_last_minute = joins_last_minute;
        call(
            Hook::Event,
            Some(person(CAL, "Cal", Some("member"))),
            Some(person(CAL, "Cal", Some("member"))),
            context,
            json!({"type": kind, "data": {"memberId": CAL}, "seq": 7}),
        )
    };
    assert!(
        loaded
            .decide(&event("communication:member_joined", 10))
            .actions
            .is_empty()
    );
    assert!(
        loaded
            .decide(&event("communication:message_sent", 50))
            .actions
            .is_empty()
    );
    let verdict = loaded.decide(&event("communication:member_joined", 11));
    assert!(verdict.denied.is_none(), "events cannot be refused");
    assert!(matches!(
        actions(&verdict).as_slice(),
        [
            PlannedAction::LockContext { until_ms, .. },
            PlannedAction::NotifyModerators { .. },
        ] if *until_ms == NOW + 10 * MINUTE
    ));
    assert!(
        loaded
            .decide(&event("communication:member_joined", 12))
            .actions
            .is_empty(),
        "one lock per wave"
    );
}

#[test]
fn invite_quota_counts_per_member_per_day() {
    let loaded = load(&["50_invite_quota"]);
    let create = |actor: MemberFacts, now_ms: i64| {
        let mut c = call(
            Hook::InviteCreate,
            Some(actor),
            None,
            channel(LOCKED_CHANNEL),
            json!({"max_uses": 5, "expires_in_ms": DAY}),
        );
        c.now_ms = now_ms;
        c
    };
    for i in 0..10 {
        let verdict = loaded.decide(&create(member(), NOW + i * HOUR));
        assert!(allowed_untouched(&verdict), "invite {}", i + 1);
    }
    assert_eq!(
        denial(&loaded.decide(&create(member(), NOW + 10 * HOUR))),
        "You can create at most 10 invites a day; try again tomorrow"
    );
    // Another member has a quota of their own; admins have none.
    let other = person(CAL, "Cal", Some("member"));
    assert!(allowed_untouched(
        &loaded.decide(&create(other, NOW + 11 * HOUR))
    ));
    let admin = person(ANN, "Ann", Some("admin"));
    for _ in 0..12 {
        assert!(allowed_untouched(
            &loaded.decide(&create(admin.clone(), NOW))
        ));
    }
    // The next day starts again.
    assert!(allowed_untouched(
        &loaded.decide(&create(member(), NOW + DAY))
    ));
}

#[test]
fn flood_control_mutes_purges_and_alerts_on_the_third_strike() {
    let loaded = load(&["60_flood_control"]);
    let at = |now_ms: i64| {
        let mut c = message(member(), "hello");
        c.now_ms = now_ms;
        c
    };

    for i in 0..5 {
        assert!(
            allowed_untouched(&loaded.decide(&at(NOW + i))),
            "message {}",
            i + 1
        );
    }
    // The sixth and seventh within ten seconds are refused: strikes one and two.
    for i in 5..7 {
        let verdict = loaded.decide(&at(NOW + i));
        assert_eq!(
            denial(&verdict),
            "You are sending messages too fast; wait 10 seconds"
        );
        assert!(verdict.actions.is_empty());
    }
    // The third refused message in ten minutes: an hour's mute, the last minute purged,
    // moderators alerted.
    let verdict = loaded.decide(&at(NOW + 7));
    assert!(verdict.denied.is_some());
    assert_eq!(
        actions(&verdict),
        vec![
            PlannedAction::MuteMember {
                member_id: uuid(BOB),
                duration_ms: 3_600_000,
                reason: "Flooding".into(),
            },
            PlannedAction::PurgeMemberMessages {
                member_id: uuid(BOB),
                within_ms: 60_000,
                reason: "Flooding".into(),
            },
            PlannedAction::NotifyModerators {
                text: "Bob was muted for 60 minutes for flooding general; what they sent in the last 1 minute(s) was deleted".into(),
                member_id: Some(uuid(BOB)),
            },
        ]
    );
    assert!(
        verdict
            .actions
            .iter()
            .all(|a| a.plugin == "60_flood_control" && !a.simulated)
    );

    // The window is over ten seconds after its first message.
    assert!(allowed_untouched(&loaded.decide(&at(NOW + 10_001))));
}

#[test]
fn flood_control_strikes_add_up_across_windows_and_spare_moderators() {
    let loaded = load(&["60_flood_control"]);
    let at = |actor: MemberFacts, now_ms: i64| {
        let mut c = message(actor, "hello");
        c.now_ms = now_ms;
        c
    };
    // One strike in each of three windows, all within ten minutes.
    let mut last = Verdict::default();
    for window in 0..3 {
        let start = NOW + window * 2 * MINUTE;
        for i in 0..6 {
            last = loaded.decide(&at(member(), start + i));
        }
        assert!(last.denied.is_some());
        if window < 2 {
            assert!(last.actions.is_empty(), "window {window}");
        }
    }
    assert_eq!(last.actions.len(), 3);

    for i in 0..20 {
        assert!(allowed_untouched(&loaded.decide(&at(moderator(), NOW + i))));
    }
    // Edits are not counted unless count_edits is set.
    let mut edit = at(person(CAL, "Cal", Some("member")), NOW);
    edit.params.insert("kind".into(), json!("edit"));
    edit.params.insert("message_id".into(), json!(CAL));
    for _ in 0..20 {
        assert!(allowed_untouched(&loaded.decide(&edit)));
    }
}

#[test]
fn link_gate_refuses_new_members_links_except_to_allowed_hosts() {
    let loaded = load(&["70_link_gate"]);
    let post = |actor: MemberFacts, hosts: &[&str]| {
        let links: Vec<Value> = hosts
            .iter()
            .map(|h| json!({"url": format!("https://{h}/page"), "host": h}))
            .collect();
        let mut c = message(actor, "look at this");
        c.params.insert("links".into(), Value::Array(links));
        c
    };
    let mut newcomer = person(CAL, "Cal", Some("member"));
    newcomer.joined_at_ms = Some(NOW - 2 * MINUTE);
    newcomer.message_count = 5;

    assert_eq!(
        denial(&loaded.decide(&post(
            newcomer.clone(),
            &["github.com", "cheap-pills.example"]
        ))),
        "New members cannot post links to cheap-pills.example yet; say hello first and try again in a while"
    );
    // Allow-listed hosts and their subdomains pass.
    assert!(allowed_untouched(&loaded.decide(&post(
        newcomer.clone(),
        &["github.com", "doc.rust-lang.org", "EN.Wikipedia.org"]
    ))));
    // A look-alike is not a subdomain.
    assert!(
        loaded
            .decide(&post(newcomer.clone(), &["notgithub.com"]))
            .denied
            .is_some()
    );
    // No links, no gate.
    assert!(allowed_untouched(
        &loaded.decide(&post(newcomer.clone(), &[]))
    ));

    // Joined long ago but has hardly spoken: still new.
    let mut quiet = member();
    quiet.message_count = 2;
    assert!(
        loaded
            .decide(&post(quiet, &["example.com"]))
            .denied
            .is_some()
    );
    // An old hand, and staff, link anywhere.
    assert!(allowed_untouched(
        &loaded.decide(&post(member(), &["example.com"]))
    ));
    let mut new_moderator = moderator();
    new_moderator.joined_at_ms = Some(NOW - MINUTE);
    new_moderator.message_count = 0;
    assert!(allowed_untouched(
        &loaded.decide(&post(new_moderator, &["example.com"]))
    ));

    // Direct conversations are left alone unless in_conversations is set.
    let mut dm = post(newcomer, &["example.com"]);
    dm.context = Some(ContextFacts {
        kind: "conversation".into(),
        id: OTHER_CHANNEL.into(),
        member_count: 2,
        ..ContextFacts::default()
    });
    assert!(allowed_untouched(&loaded.decide(&dm)));
    let strict = load_with_settings(
        "70_link_gate",
        &format!("[context.\"{OTHER_CHANNEL}\"]\nin_conversations = true\n"),
    );
    assert!(strict.decide(&dm).denied.is_some());
}

#[test]
fn word_filter_masks_listed_words_and_patterns_and_refuses_many() {
    let loaded = load(&["80_word_filter"]);
    let masked = |content: &str| {
        let verdict = loaded.decide(&message(member(), content));
        assert!(verdict.denied.is_none(), "{content}: {verdict:?}");
        assert_eq!(verdict.decisions.len(), 1);
        assert_eq!(verdict.decisions[0].outcome, "modified");
        assert_eq!(verdict.decisions[0].action, "message");
        verdict.string("content").map(str::to_owned)
    };
    assert_eq!(
        masked("That shop is a SCAMMER's paradise").as_deref(),
        Some("That shop is a *** paradise")
    );
    assert_eq!(
        masked("Get FREE   Nitro here").as_deref(),
        Some("Get *** here")
    );
    assert_eq!(
        masked("join discord.gg/abc123 instead").as_deref(),
        Some("join *** instead")
    );
    assert_eq!(
        masked("scam alert: free nitro").as_deref(),
        Some("*** alert: ***")
    );

    // Three hits: refused.
    let verdict = loaded.decide(&message(
        member(),
        "free nitro crypto giveaway, no scam: t.me/freebies",
    ));
    assert_eq!(
        denial(&verdict),
        "Your message contains words or links this community does not allow"
    );
    assert!(verdict.modified.is_empty());

    // Clean messages, and words that merely contain a listed one, pass untouched.
    assert!(allowed_untouched(
        &loaded.decide(&message(member(), "Good morning"))
    ));
    assert!(allowed_untouched(
        &loaded.decide(&message(member(), "the antiscam team"))
    ));
}

#[test]
fn slow_mode_switches_on_once_when_a_channel_gets_busy() {
    let loaded = load(&["90_slow_mode"]);
    let at = |now_ms: i64| {
        let mut c = message(member(), "+1");
        c.now_ms = now_ms;
        c
    };
    for i in 0..30 {
        let verdict = loaded.decide(&at(NOW + i * 1_000));
        assert!(allowed_untouched(&verdict) && verdict.actions.is_empty());
    }
    let verdict = loaded.decide(&at(NOW + 30_000));
    assert!(allowed_untouched(&verdict), "slow mode never refuses");
    assert_eq!(
        actions(&verdict),
        vec![
            PlannedAction::SetSlowMode {
                seconds: 10,
                until_ms: NOW + 30_000 + 15 * MINUTE,
            },
            PlannedAction::NotifyModerators {
                text: "general is busy (31 messages in 60 s): slow mode of 10 s for 15 minutes"
                    .into(),
                member_id: None,
            },
        ]
    );
    // Set once while it lasts.
    assert!(loaded.decide(&at(NOW + 31_000)).actions.is_empty());
    assert!(loaded.decide(&at(NOW + 70_000)).actions.is_empty());

    // Conversations and edits are not counted.
    let quiet = load(&["90_slow_mode"]);
    let mut dm = message(member(), "hi");
    dm.context = Some(ContextFacts {
        kind: "conversation".into(),
        id: OTHER_CHANNEL.into(),
        member_count: 2,
        ..ContextFacts::default()
    });
    let mut edit = message(member(), "hi");
    edit.params.insert("kind".into(), json!("edit"));
    for _ in 0..40 {
        assert!(quiet.decide(&dm).actions.is_empty());
        assert!(quiet.decide(&edit).actions.is_empty());
    }
}

/// All examples copied one level up: they load in file-name order, the first deny wins and
/// stops the rest, and modifications reach the plugins after.
#[test]
fn copied_together_the_examples_chain_in_file_name_order() {
    let loaded = load(&EXAMPLES);
    assert_eq!(loaded.registry.names(), EXAMPLES);

    // A new member's link is refused by the link gate; the word filter never runs.
    let mut newcomer = person(CAL, "Cal", Some("member"));
    newcomer.joined_at_ms = Some(NOW - MINUTE);
    let mut spam = message(newcomer, "scam here: https://cheap.example");
    spam.params.insert(
        "links".into(),
        json!([{"url": "https://cheap.example", "host": "cheap.example"}]),
    );
    let verdict = loaded.decide(&spam);
    assert_eq!(
        verdict.denied.as_ref().map(|d| d.plugin.as_str()),
        Some("70_link_gate")
    );
    assert_eq!(verdict.decisions.len(), 1);

    // A member's message is masked by the word filter and counted by slow mode.
    let verdict = loaded.decide(&message(member(), "what a scam"));
    assert_eq!(verdict.string("content"), Some("what a ***"));
    assert_eq!(verdict.decisions.len(), 1);
    assert_eq!(verdict.decisions[0].plugin, "80_word_filter");
    let busy = loaded
        .state
        .get("90_slow_mode", &format!("busy:{LOCKED_CHANNEL}"), NOW)
        .expect("state");
    assert_eq!(busy, Some(json!(1)), "the refused message was not counted");

    // Joins: the new-account gate refuses before the raid lock counts.
    let mut young = person(CAL, "Cal", None);
    young.registered_at_ms = NOW - HOUR;
    let mut context = channel(LOCKED_CHANNEL);
    context.joins_last_minute = 50;
    let join = call(Hook::Join, Some(young), None, context, json!({}));
    let verdict = loaded.decide(&join);
    assert_eq!(
        verdict.denied.as_ref().map(|d| d.plugin.as_str()),
        Some("30_new_account_gate")
    );
    assert!(verdict.actions.is_empty());
}

fn example_file(name: &str) -> String {
    std::fs::read_to_string(examples_dir().join(name)).expect("example")
}

/// Enabling an example is copying it into the server's plugins folder: at start, or while it
/// runs (hot reload). Its state then lives in the server's database.
#[tokio::test]
async fn examples_copied_into_a_servers_plugins_folder_run_with_state_in_its_database() {
    let rhai = example_file("50_invite_quota.rhai");
    let toml = example_file("50_invite_quota.toml");
    let server = TestServer::start_with_plugins(
        &[
            ("50_invite_quota.rhai", &rhai),
            ("50_invite_quota.toml", &toml),
        ],
        |_| {},
    )
    .await;
    let plugins = &server.state.plugins;
    assert_eq!(plugins.registry.names(), ["50_invite_quota"]);

    let create = || {
        let mut c = call(
            Hook::InviteCreate,
            Some(member()),
            None,
            channel(LOCKED_CHANNEL),
            json!({"max_uses": (), "expires_in_ms": ()}),
        );
        c.now_ms = brightchat::time::now_ms();
        c
    };
    for i in 0..10 {
        let verdict = plugins.decide(create()).await;
        assert!(allowed_untouched(&verdict), "invite {}: {verdict:?}", i + 1);
    }
    let verdict = plugins.decide(create()).await;
    assert_eq!(
        denial(&verdict),
        "You can create at most 10 invites a day; try again tomorrow"
    );

    // Copied in while the server runs: loaded without a restart.
    let dir = server.plugins_dir();
    for file in ["60_flood_control.toml", "60_flood_control.rhai"] {
        std::fs::copy(examples_dir().join(file), dir.join(file)).expect("copy");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while plugins.registry.names() != ["50_invite_quota", "60_flood_control"] {
        assert!(
            std::time::Instant::now() < deadline,
            "not reloaded: {:?}",
            plugins.registry.names()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let now = brightchat::time::now_ms();
    let mut last = Verdict::default();
    for i in 0..8 {
        let mut c = message(member(), "hello");
        c.now_ms = now + i;
        last = plugins.decide(c).await;
        assert_eq!(last.denied.is_some(), i >= 5, "message {}", i + 1);
    }
    assert_eq!(last.actions.len(), 3, "{last:?}");
    assert!(matches!(
        last.actions[0].action,
        PlannedAction::MuteMember {
            duration_ms: 3_600_000,
            ..
        }
    ));
}
