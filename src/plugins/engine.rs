//! The one Rhai engine: sandbox limits, the decision values (`allow`, `deny`, `modify`),
//! helpers, state and actions. Native functions find the call they serve in a
//! thread-local [`Frame`], set for the length of one hook call on the blocking thread that
//! runs it.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position};
use serde::Serialize;
use uuid::Uuid;

use super::helpers::{RegexCache, words_find};
use super::state::StateStore;
use super::{Hook, Limits};

/// Longest time a lock or a purge may reach (24 h).
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Longest mute (28 days, as the API allows).
pub const MAX_MUTE_MS: i64 = 2_419_200_000;
/// Longest alert or warning text.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// Longest reason kept.
pub const MAX_REASON_CHARS: usize = 500;

/// What a hook returned.
#[derive(Clone, Debug)]
pub enum Decision {
    Allow,
    Deny(String),
    Modify(Map),
}

/// An action a plugin asked for. Bounds are applied when it is asked for.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PlannedAction {
    MuteMember {
        member_id: Uuid,
        duration_ms: i64,
        reason: String,
    },
    KickMember {
        member_id: Uuid,
        reason: String,
    },
    DeleteMessage {
        message_id: Uuid,
        reason: String,
    },
    PurgeMemberMessages {
        member_id: Uuid,
        within_ms: i64,
        reason: String,
    },
    LockContext {
        until_ms: i64,
        reason: String,
    },
    SetSlowMode {
        seconds: i64,
        until_ms: i64,
    },
    RevokeInvite {
        invite_id: String,
        reason: String,
    },
    NotifyModerators {
        text: String,
        member_id: Option<Uuid>,
    },
    WarnMember {
        member_id: Uuid,
        text: String,
    },
}

impl PlannedAction {
    /// The audit log's `action`.
    pub fn audit_action(&self) -> &'static str {
        match self {
            PlannedAction::MuteMember { .. } => "mute",
            PlannedAction::KickMember { .. } => "kick",
            PlannedAction::DeleteMessage { .. } => "message_delete",
            PlannedAction::PurgeMemberMessages { .. } => "purge",
            PlannedAction::LockContext { .. } => "lock",
            PlannedAction::SetSlowMode { .. } => "slow_mode",
            PlannedAction::RevokeInvite { .. } => "invite_revoke",
            PlannedAction::NotifyModerators { .. } => "alert",
            PlannedAction::WarnMember { .. } => "warn",
        }
    }
}

/// A `log(level, text)` line (also `print` and `debug`).
#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    pub level: String,
    pub text: String,
}

/// A state change made during a call (shown by `plugins run`).
#[derive(Clone, Debug, Serialize)]
pub struct StateChange {
    pub key: String,
    pub value: serde_json::Value,
}

/// What one hook call produced besides its decision.
#[derive(Debug, Default)]
pub struct RunOutput {
    pub actions: Vec<PlannedAction>,
    pub logs: Vec<LogLine>,
    pub state_changes: Vec<StateChange>,
    /// Why the call failed, if it did (shown by `plugins run`).
    pub error: Option<String>,
    /// A note on how the result was read (a stray return value taken as `allow()`).
    pub note: Option<String>,
}

/// The call a native function serves.
struct Frame {
    plugin: Arc<str>,
    hook: Hook,
    deadline: Instant,
    now_ms: i64,
    max_actions: usize,
    state: Arc<dyn StateStore>,
    regexes: Arc<RegexCache>,
    /// Ids a hook may name in actions without further checks happen in the executor;
    /// here only shape and bounds.
    output: RunOutput,
}

thread_local! {
    static FRAME: RefCell<Option<Frame>> = const { RefCell::new(None) };
}

/// Sets the frame for one call and takes it down after, whatever happens.
pub struct FrameGuard(());

impl FrameGuard {
    #[allow(clippy::too_many_arguments)]
    pub fn enter(
        plugin: Arc<str>,
        hook: Hook,
        limits: &Limits,
        now_ms: i64,
        state: Arc<dyn StateStore>,
        regexes: Arc<RegexCache>,
    ) -> Self {
        FRAME.with(|frame| {
            *frame.borrow_mut() = Some(Frame {
                plugin,
                hook,
                deadline: Instant::now() + limits.budget,
                now_ms,
                max_actions: limits.max_actions,
                state,
                regexes,
                output: RunOutput::default(),
            });
        });
        FrameGuard(())
    }

    /// Ends the call and hands back what it produced.
    pub fn finish(self) -> RunOutput {
        FRAME.with(|frame| {
            frame
                .borrow_mut()
                .take()
                .map(|f| f.output)
                .unwrap_or_default()
        })
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAME.with(|frame| {
            frame.borrow_mut().take();
        });
    }
}

fn with_frame<T>(
    f: impl FnOnce(&mut Frame) -> Result<T, Box<EvalAltResult>>,
) -> Result<T, Box<EvalAltResult>> {
    FRAME.with(|frame| match frame.borrow_mut().as_mut() {
        Some(frame) => f(frame),
        None => Err("this function is only available inside a hook".into()),
    })
}

fn err<T>(message: impl Into<String>) -> Result<T, Box<EvalAltResult>> {
    Err(Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        Position::NONE,
    )))
}

fn id_arg(what: &str, text: &str) -> Result<Uuid, Box<EvalAltResult>> {
    match super::parse_id(text) {
        Some(id) => Ok(id),
        None => err(format!("{what}: not a member or message id: {text:?}")),
    }
}

fn short(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn push_action(action: PlannedAction) -> Result<(), Box<EvalAltResult>> {
    with_frame(|frame| {
        if frame.hook == Hook::ProfileChange {
            return err("actions need a group or channel; on_profile_change has none");
        }
        if frame.output.actions.len() >= frame.max_actions {
            return err(format!(
                "at most {} actions per hook call",
                frame.max_actions
            ));
        }
        frame.output.actions.push(action);
        Ok(())
    })
}

/// Builds the engine with the sandbox's limits and every function plugins may call.
pub fn build(limits: &Limits) -> Engine {
    let mut engine = Engine::new();
    // No `eval`; module loading is compiled out (`no_module`), so no file can be read.
    engine.disable_symbol("eval");
    // A variable must be defined before use: top-level variables, which hooks cannot see,
    // are compile errors rather than surprises at run time.
    engine.set_strict_variables(true);
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(limits.max_expr_depth, limits.max_fn_expr_depth);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_variables(1_000);
    engine.set_max_functions(256);
    engine.on_progress(|operations| {
        // Reading the clock every 1,024 operations keeps the check cheap.
        if operations % 1024 != 0 {
            return None;
        }
        let over = FRAME.with(|frame| {
            frame
                .borrow()
                .as_ref()
                .is_some_and(|frame| Instant::now() > frame.deadline)
        });
        over.then(|| Dynamic::from("time budget exceeded"))
    });
    engine.on_print(|text| log_line("info", text));
    engine.on_debug(|text, _source, _pos| log_line("debug", text));

    engine
        .register_type_with_name::<Decision>("Decision")
        .register_fn("allow", || Decision::Allow)
        .register_fn("deny", || {
            Decision::Deny("Refused by a moderation plugin".into())
        })
        .register_fn("deny", |reason: ImmutableString| {
            Decision::Deny(short(&reason, MAX_REASON_CHARS))
        })
        .register_fn("modify", Decision::Modify);

    register_helpers(&mut engine);
    register_state(&mut engine);
    register_actions(&mut engine);
    engine
}

fn log_line(level: &str, text: &str) {
    let text = short(text, MAX_NOTE_CHARS);
    let (plugin, hook) = FRAME.with(|frame| {
        let frame = frame.borrow();
        match frame.as_ref() {
            Some(f) => (f.plugin.to_string(), f.hook.function()),
            None => (String::new(), ""),
        }
    });
    match level {
        "error" => tracing::error!(plugin, hook, "{text}"),
        "warn" => tracing::warn!(plugin, hook, "{text}"),
        "debug" | "trace" => tracing::debug!(plugin, hook, "{text}"),
        _ => tracing::info!(plugin, hook, "{text}"),
    }
    FRAME.with(|frame| {
        if let Some(frame) = frame.borrow_mut().as_mut()
            && frame.output.logs.len() < 100
        {
            frame.output.logs.push(LogLine {
                level: level.to_owned(),
                text,
            });
        }
    });
}

fn register_helpers(engine: &mut Engine) {
    engine.register_fn(
        "regex_match",
        |pattern: ImmutableString, text: ImmutableString| -> Result<bool, Box<EvalAltResult>> {
            let regex = with_frame(|f| f.regexes.get(&pattern).map_err(Into::into))?;
            Ok(regex.is_match(&text))
        },
    );
    engine.register_fn(
        "regex_find",
        |pattern: ImmutableString,
         text: ImmutableString|
         -> Result<rhai::Array, Box<EvalAltResult>> {
            let regex = with_frame(|f| f.regexes.get(&pattern).map_err(Into::into))?;
            Ok(regex
                .find_iter(&text)
                .take(100)
                .map(|m| Dynamic::from(m.as_str().to_owned()))
                .collect())
        },
    );
    engine.register_fn(
        "regex_replace",
        |pattern: ImmutableString,
         text: ImmutableString,
         with: ImmutableString|
         -> Result<String, Box<EvalAltResult>> {
            let regex = with_frame(|f| f.regexes.get(&pattern).map_err(Into::into))?;
            Ok(regex
                .replace_all(&text, regex::NoExpand(&with))
                .into_owned())
        },
    );
    engine.register_fn(
        "words_find",
        |text: ImmutableString, list: rhai::Array| -> rhai::Array {
            let words: Vec<String> = list
                .iter()
                .filter_map(|w| w.clone().into_immutable_string().ok())
                .map(|w| w.to_string())
                .collect();
            words_find(&text, &words)
                .into_iter()
                .map(Dynamic::from)
                .collect()
        },
    );
    engine.register_fn("log", |level: ImmutableString, text: ImmutableString| {
        log_line(&level, &text)
    });
    engine.register_fn("log", |text: ImmutableString| log_line("info", &text));
}

fn state_key(key: &str) -> Result<(), Box<EvalAltResult>> {
    if key.is_empty() || key.len() > 256 {
        return err("state keys are 1..=256 bytes");
    }
    Ok(())
}

fn register_state(engine: &mut Engine) {
    engine.register_fn(
        "state_get",
        |key: ImmutableString| -> Result<Dynamic, Box<EvalAltResult>> {
            state_key(&key)?;
            with_frame(|f| {
                let value = f
                    .state
                    .get(&f.plugin, &key, f.now_ms)
                    .map_err(|e| -> Box<EvalAltResult> { e.into() })?;
                match value {
                    Some(value) => rhai::serde::to_dynamic(value),
                    None => Ok(Dynamic::UNIT),
                }
            })
        },
    );
    fn set(key: &str, value: Dynamic, ttl_ms: Option<i64>) -> Result<(), Box<EvalAltResult>> {
        state_key(key)?;
        let json: serde_json::Value = rhai::serde::from_dynamic(&value)?;
        if json.to_string().len() > 64 * 1024 {
            return err("a state value is at most 64 KiB as JSON");
        }
        with_frame(|f| {
            f.state
                .set(&f.plugin, key, &json, ttl_ms, f.now_ms)
                .map_err(|e| -> Box<EvalAltResult> { e.into() })?;
            f.output.state_changes.push(StateChange {
                key: key.to_owned(),
                value: json,
            });
            Ok(())
        })
    }
    engine.register_fn("state_set", |key: ImmutableString, value: Dynamic| {
        set(&key, value, None)
    });
    engine.register_fn(
        "state_set",
        |key: ImmutableString, value: Dynamic, ttl_ms: i64| set(&key, value, Some(ttl_ms.max(1))),
    );
    fn incr(key: &str, by: i64, ttl_ms: Option<i64>) -> Result<i64, Box<EvalAltResult>> {
        state_key(key)?;
        with_frame(|f| {
            let value = f
                .state
                .incr(&f.plugin, key, by, ttl_ms, f.now_ms)
                .map_err(|e| -> Box<EvalAltResult> { e.into() })?;
            f.output.state_changes.push(StateChange {
                key: key.to_owned(),
                value: value.into(),
            });
            Ok(value)
        })
    }
    engine.register_fn("state_incr", |key: ImmutableString, by: i64| {
        incr(&key, by, None)
    });
    engine.register_fn(
        "state_incr",
        |key: ImmutableString, by: i64, ttl_ms: i64| incr(&key, by, Some(ttl_ms.max(1))),
    );
}

fn register_actions(engine: &mut Engine) {
    engine.register_fn(
        "mute_member",
        |id: ImmutableString, duration_ms: i64, reason: ImmutableString| {
            push_action(PlannedAction::MuteMember {
                member_id: id_arg("mute_member", &id)?,
                duration_ms: duration_ms.clamp(1, MAX_MUTE_MS),
                reason: short(&reason, MAX_REASON_CHARS),
            })
        },
    );
    engine.register_fn(
        "kick_member",
        |id: ImmutableString, reason: ImmutableString| {
            push_action(PlannedAction::KickMember {
                member_id: id_arg("kick_member", &id)?,
                reason: short(&reason, MAX_REASON_CHARS),
            })
        },
    );
    engine.register_fn(
        "delete_message",
        |id: ImmutableString, reason: ImmutableString| {
            push_action(PlannedAction::DeleteMessage {
                message_id: id_arg("delete_message", &id)?,
                reason: short(&reason, MAX_REASON_CHARS),
            })
        },
    );
    engine.register_fn(
        "purge_member_messages",
        |id: ImmutableString, within_ms: i64, reason: ImmutableString| {
            push_action(PlannedAction::PurgeMemberMessages {
                member_id: id_arg("purge_member_messages", &id)?,
                within_ms: within_ms.clamp(1, DAY_MS),
                reason: short(&reason, MAX_REASON_CHARS),
            })
        },
    );
    engine.register_fn(
        "lock_context",
        |until_ms: i64, reason: ImmutableString| -> Result<(), Box<EvalAltResult>> {
            let now = with_frame(|f| Ok(f.now_ms))?;
            if until_ms <= now {
                return err("lock_context: until_ms must be in the future");
            }
            push_action(PlannedAction::LockContext {
                until_ms: until_ms.min(now + DAY_MS),
                reason: short(&reason, MAX_REASON_CHARS),
            })
        },
    );
    engine.register_fn(
        "set_slow_mode",
        |seconds: i64, until_ms: i64| -> Result<(), Box<EvalAltResult>> {
            let now = with_frame(|f| Ok(f.now_ms))?;
            push_action(PlannedAction::SetSlowMode {
                // 0 lifts slow mode.
                seconds: seconds.clamp(0, 3_600),
                until_ms: until_ms.clamp(now, now + DAY_MS),
            })
        },
    );
    engine.register_fn(
        "revoke_invite",
        |invite_id: ImmutableString, reason: ImmutableString| -> Result<(), Box<EvalAltResult>> {
            let id = invite_id.trim();
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return err("revoke_invite: not an invite id");
            }
            push_action(PlannedAction::RevokeInvite {
                invite_id: id.to_ascii_lowercase(),
                reason: short(&reason, MAX_REASON_CHARS),
            })
        },
    );
    engine.register_fn("notify_moderators", |text: ImmutableString| {
        push_action(PlannedAction::NotifyModerators {
            text: short(&text, MAX_NOTE_CHARS),
            member_id: None,
        })
    });
    engine.register_fn(
        "notify_moderators",
        |text: ImmutableString, member: ImmutableString| {
            push_action(PlannedAction::NotifyModerators {
                text: short(&text, MAX_NOTE_CHARS),
                member_id: Some(id_arg("notify_moderators", &member)?),
            })
        },
    );
    engine.register_fn(
        "warn_member",
        |id: ImmutableString, text: ImmutableString| {
            push_action(PlannedAction::WarnMember {
                member_id: id_arg("warn_member", &id)?,
                text: short(&text, MAX_NOTE_CHARS),
            })
        },
    );
}
