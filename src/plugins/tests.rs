//! The plugin host on its own: decisions, chaining, monitor mode, errors, limits, state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::*;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

fn call(hook: Hook, params: Value) -> HookCall {
    let Value::Object(params) = params else {
        panic!("params must be an object")
    };
    HookCall {
        hook,
        actor: Some(MemberFacts {
            id: "0192f0c0-0000-7000-8000-00000000000a".into(),
            display_name: "ann".into(),
            role: Some("moderator".into()),
            ..MemberFacts::default()
        }),
        target: Some(MemberFacts {
            id: "0192f0c0-0000-7000-8000-00000000000b".into(),
            display_name: "bob".into(),
            role: Some("member".into()),
            ..MemberFacts::default()
        }),
        context: Some(ContextFacts {
            kind: "channel".into(),
            id: "0192f0c0-0000-7000-8000-000000000001".into(),
            name: "general".into(),
            ..ContextFacts::default()
        }),
        params,
        now_ms: 1_000_000,
    }
}

fn registry(dir: &tempfile::TempDir, budget_ms: u64) -> Registry {
    let registry = Registry::new(
        dir.path(),
        Limits {
            budget: Duration::from_millis(budget_ms),
            ..Limits::default()
        },
    );
    let report = registry.reload();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    registry
}

fn memory() -> Arc<dyn StateStore> {
    Arc::new(MemoryStateStore::default())
}

#[test]
fn first_deny_wins_and_modifications_chain() {
    let dir = dir_with(&[
        (
            "10_cap.rhai",
            "fn on_mute(ctx) { if ctx.params.duration_ms > ctx.config.max_ms { return modify(#{ duration_ms: ctx.config.max_ms }); } allow() }",
        ),
        ("10_cap.toml", "max_ms = 3600000"),
        (
            "20_half.rhai",
            "fn on_mute(ctx) { modify(#{ duration_ms: ctx.params.duration_ms / 2 }) }",
        ),
        (
            "30_no_bob.rhai",
            "fn on_kick(ctx) { if ctx.target.display_name == \"bob\" { deny(\"Bob stays\") } }",
        ),
        ("40_never.rhai", "fn on_kick(ctx) { deny(\"not reached\") }"),
    ]);
    let registry = registry(&dir, 1_000);
    let verdict = registry.decide(
        &call(Hook::Mute, json!({"duration_ms": 86_400_000})),
        memory(),
    );
    assert!(verdict.denied.is_none());
    assert_eq!(verdict.int("duration_ms"), Some(1_800_000));
    assert_eq!(verdict.decisions.len(), 2);
    assert!(verdict.decisions.iter().all(|d| d.outcome == "modified"));

    let verdict = registry.decide(&call(Hook::Kick, json!({})), memory());
    let denial = verdict.denied.expect("denied");
    assert_eq!(denial.plugin, "30_no_bob");
    assert_eq!(denial.reason, "Bob stays");
    assert_eq!(verdict.decisions.len(), 1, "the second deny never ran");
}

#[test]
fn monitor_mode_only_records() {
    let dir = dir_with(&[
        (
            "a.rhai",
            "fn on_message(ctx) { notify_moderators(\"seen\"); deny(\"no\") }",
        ),
        ("a.toml", "mode = \"monitor\""),
    ]);
    let registry = registry(&dir, 1_000);
    let verdict = registry.decide(&call(Hook::Message, json!({"content": "hi"})), memory());
    assert!(verdict.denied.is_none());
    assert_eq!(verdict.decisions[0].outcome, "simulated");
    assert!(verdict.actions[0].simulated);
}

#[test]
fn errors_fail_closed_unless_opted_out() {
    let dir = dir_with(&[
        ("a.rhai", "fn on_message(ctx) { let x = ctx.nope.deeper; }"),
        ("b.rhai", "fn on_message(ctx) { throw \"broken\" }"),
        ("b.toml", "on_error = \"allow\""),
    ]);
    let registry = registry(&dir, 1_000);
    let verdict = registry.decide(&call(Hook::Message, json!({"content": "hi"})), memory());
    assert_eq!(verdict.denied.expect("fails closed").plugin, "a");

    let dir = dir_with(&[
        (
            "b.rhai",
            "fn on_message(ctx) { notify_moderators(\"x\"); throw \"broken\"; }",
        ),
        ("b.toml", "on_error = \"allow\""),
    ]);
    let registry = super::tests::registry(&dir, 1_000);
    let verdict = registry.decide(&call(Hook::Message, json!({"content": "hi"})), memory());
    assert!(verdict.denied.is_none());
    assert!(
        verdict.actions.is_empty(),
        "a failed run's actions are dropped"
    );
}

#[test]
fn a_stray_return_value_is_allow_and_top_level_variables_are_refused() {
    let dir = dir_with(&[("a.rhai", "fn on_message(ctx) { state_incr(\"n\", 1) }")]);
    let registry = registry(&dir, 1_000);
    let verdict = registry.decide(&call(Hook::Message, json!({"content": "hi"})), memory());
    assert!(verdict.denied.is_none());

    let dir = dir_with(&[(
        "a.rhai",
        "const LIMIT = 3;\nfn on_message(ctx) { if ctx.params.content.len() > LIMIT { deny() } }",
    )]);
    let registry = Registry::new(dir.path(), Limits::default());
    let errors = registry.check(dir.path()).errors;
    assert!(
        errors.iter().any(|e| e.message.contains("LIMIT")),
        "{errors:?}"
    );
}

#[test]
fn modify_outside_the_whitelist_is_an_error() {
    let dir = dir_with(&[(
        "a.rhai",
        "fn on_mute(ctx) { modify(#{ target: \"someone else\" }) }",
    )]);
    let registry = registry(&dir, 1_000);
    let verdict = registry.decide(&call(Hook::Mute, json!({"duration_ms": 5})), memory());
    assert!(verdict.denied.is_some());
    assert!(verdict.modified.is_empty());
}

#[test]
fn an_endless_loop_stops_within_its_budget() {
    let dir = dir_with(&[(
        "a.rhai",
        "fn on_message(ctx) { let n = 0; loop { n += 1; } }",
    )]);
    let registry = Registry::new(
        dir.path(),
        Limits {
            budget: Duration::from_millis(50),
            max_operations: u64::MAX / 2,
            ..Limits::default()
        },
    );
    registry.reload();
    let started = Instant::now();
    let verdict = registry.decide(&call(Hook::Message, json!({"content": "hi"})), memory());
    assert!(verdict.denied.is_some());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "stopped after {:?}",
        started.elapsed()
    );
}

#[test]
fn sandbox_refuses_eval_and_huge_values() {
    let dir = dir_with(&[("a.rhai", "fn on_message(ctx) { eval(\"1\") }")]);
    let registry = Registry::new(dir.path(), Limits::default());
    assert!(
        !registry.reload().errors.is_empty(),
        "eval does not compile"
    );

    let dir = dir_with(&[(
        "a.rhai",
        "fn on_message(ctx) { let s = \"x\"; loop { s += s; } }",
    )]);
    let registry = super::tests::registry(&dir, 1_000);
    let verdict = registry.decide(&call(Hook::Message, json!({"content": "hi"})), memory());
    assert!(verdict.denied.is_some(), "string size limit stops it");

    let dir = dir_with(&[("a.rhai", "fn f(n) { f(n + 1) } fn on_message(ctx) { f(0) }")]);
    let registry = super::tests::registry(&dir, 1_000);
    let verdict = registry.decide(&call(Hook::Message, json!({"content": "hi"})), memory());
    assert!(verdict.denied.is_some(), "call depth stops it");
}

#[test]
fn state_counts_and_expires() {
    let dir = dir_with(&[(
        "a.rhai",
        "fn on_message(ctx) { let n = state_incr(\"k\", 1, 1000); if n >= 3 { deny(`strike ${n}`) } }",
    )]);
    let registry = registry(&dir, 1_000);
    let store = memory();
    let mut c = call(Hook::Message, json!({"content": "hi"}));
    for _ in 0..2 {
        assert!(registry.decide(&c, store.clone()).denied.is_none());
    }
    assert_eq!(
        registry
            .decide(&c, store.clone())
            .denied
            .expect("third")
            .reason,
        "strike 3"
    );
    c.now_ms += 1_001;
    assert!(
        registry.decide(&c, store.clone()).denied.is_none(),
        "expired, counts from 1"
    );
}

#[test]
fn helpers_and_actions() {
    let dir = dir_with(&[(
        "a.rhai",
        r#"fn on_message(ctx) {
            let bad = words_find(ctx.params.content, ["spam*", "scam"]);
            if regex_match("(?i)free\\s+money", ctx.params.content) {
                mute_member(ctx.actor.id, 999999999999, "money");
                lock_context(ctx.now_ms + 999999999999, "raid");
                return deny("No free money");
            }
            if bad.len() > 0 { return modify(#{ content: regex_replace("(?i)spam\\w*", ctx.params.content, "***") }); }
        }"#,
    )]);
    let registry = registry(&dir, 1_000);
    let verdict = registry.decide(
        &call(Hook::Message, json!({"content": "Spammers everywhere"})),
        memory(),
    );
    assert_eq!(verdict.string("content"), Some("*** everywhere"));
    let verdict = registry.decide(
        &call(Hook::Message, json!({"content": "FREE   money now"})),
        memory(),
    );
    assert_eq!(verdict.denied.expect("denied").reason, "No free money");
    match &verdict.actions[0].action {
        PlannedAction::MuteMember { duration_ms, .. } => {
            assert_eq!(*duration_ms, engine::MAX_MUTE_MS)
        }
        other => panic!("unexpected {other:?}"),
    }
    match &verdict.actions[1].action {
        PlannedAction::LockContext { until_ms, .. } => {
            assert_eq!(*until_ms, 1_000_000 + engine::DAY_MS)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_broken_edit_keeps_the_old_version_and_removal_stops_it() {
    let dir = dir_with(&[("a.rhai", "fn on_message(ctx) { deny(\"v1\") }")]);
    let registry = registry(&dir, 1_000);
    std::fs::write(
        dir.path().join("a.rhai"),
        "fn on_message(ctx) { deny(\"v2\" }",
    )
    .expect("write");
    let report = registry.reload();
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].line.is_some());
    let c = call(Hook::Message, json!({"content": "hi"}));
    assert_eq!(
        registry.decide(&c, memory()).denied.expect("v1").reason,
        "v1"
    );
    std::fs::remove_file(dir.path().join("a.rhai")).expect("remove");
    registry.reload();
    assert!(!registry.wants(Hook::Message));
    let _ = Map::<String, Value>::new();
}

#[test]
fn misnamed_hooks_are_reported() {
    let dir = dir_with(&[("a.rhai", "fn on_mesage(ctx) { deny() }")]);
    let registry = Registry::new(dir.path(), Limits::default());
    let report = registry.check(dir.path());
    assert!(report.errors[0].message.contains("on_mesage is not a hook"));
}
