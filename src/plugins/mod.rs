//! Moderation plugins: community admins' Rhai scripts that decide on moderation events and
//! act on them (CONTRACT.md "Moderation plugins (Rhai)"; the author's guide is
//! docs/plugins.md).
//!
//! One [`rhai::Engine`], configured once with the sandbox's limits ([`engine`]); each
//! `plugins/*.rhai` compiled once to an `AST` with its settings (`NAME.toml`) and swapped
//! atomically on reload ([`registry`]). The service layer asks [`Plugins::decide`] before a
//! moderation action, off the async executor and before any row lock; hooks a script does
//! not define are skipped without a call.

pub mod cli;
pub mod engine;
pub mod helpers;
pub mod registry;
pub mod settings;
pub mod state;
pub mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

pub use engine::{PlannedAction, RunOutput};
pub use registry::{CheckReport, Plugin, Registry};
pub use state::{DbStateStore, MemoryStateStore, StateStore};

/// A hook point: the name a script defines to be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Mute,
    Unmute,
    Kick,
    Remove,
    RoleAssign,
    InviteCreate,
    InviteRedeem,
    Join,
    Message,
    Reaction,
    ProfileChange,
    Event,
}

impl Hook {
    /// Every hook, in the contract's order.
    pub const ALL: [Hook; 12] = [
        Hook::Mute,
        Hook::Unmute,
        Hook::Kick,
        Hook::Remove,
        Hook::RoleAssign,
        Hook::InviteCreate,
        Hook::InviteRedeem,
        Hook::Join,
        Hook::Message,
        Hook::Reaction,
        Hook::ProfileChange,
        Hook::Event,
    ];

    /// The script function's name.
    pub fn function(self) -> &'static str {
        match self {
            Hook::Mute => "on_mute",
            Hook::Unmute => "on_unmute",
            Hook::Kick => "on_kick",
            Hook::Remove => "on_remove",
            Hook::RoleAssign => "on_role_assign",
            Hook::InviteCreate => "on_invite_create",
            Hook::InviteRedeem => "on_invite_redeem",
            Hook::Join => "on_join",
            Hook::Message => "on_message",
            Hook::Reaction => "on_reaction",
            Hook::ProfileChange => "on_profile_change",
            Hook::Event => "on_event",
        }
    }

    /// The hook of a script function name (`on_mute` → `Mute`).
    pub fn from_function(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|hook| hook.function() == name)
    }

    /// The audit log's `action` for a decision on this hook.
    pub fn audit_action(self) -> &'static str {
        match self {
            Hook::Mute => "mute",
            Hook::Unmute => "unmute",
            Hook::Kick => "kick",
            Hook::Remove => "remove",
            Hook::RoleAssign => "role_change",
            Hook::InviteCreate => "invite_create",
            Hook::InviteRedeem => "invite_redeem",
            Hook::Join => "join",
            Hook::Message => "message",
            Hook::Reaction => "reaction",
            Hook::ProfileChange => "profile_change",
            Hook::Event => "event",
        }
    }

    /// The params a `modify(#{…})` may change, with the type each must keep.
    pub fn modifiable(self) -> &'static [(&'static str, ParamType)] {
        match self {
            Hook::Mute => &[("duration_ms", ParamType::Int)],
            Hook::InviteCreate => &[
                ("max_uses", ParamType::OptionalInt),
                ("expires_in_ms", ParamType::OptionalInt),
            ],
            Hook::Message => &[("content", ParamType::String)],
            Hook::ProfileChange => &[("display_name", ParamType::String)],
            _ => &[],
        }
    }

    /// Whether the hook runs before an action it can refuse (all but `on_event`).
    pub fn can_deny(self) -> bool {
        self != Hook::Event
    }
}

/// The type a modifiable param must keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    Int,
    /// An integer, or `()` for "none" (an unlimited invite, say).
    OptionalInt,
    String,
}

/// A member as a hook sees it (`ctx.actor`, `ctx.target`).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MemberFacts {
    pub id: String,
    pub display_name: String,
    /// `owner`, `admin`, `moderator` or `member`; `()` where the member has no role here.
    pub role: Option<String>,
    pub joined_at_ms: Option<i64>,
    pub registered_at_ms: i64,
    /// Messages it has sent in this context (not deleted).
    pub message_count: i64,
    pub last_message_at_ms: Option<i64>,
}

/// The group, channel or conversation a hook runs in (`ctx.context`).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ContextFacts {
    /// `group`, `channel` or `conversation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
    /// Channels: `public`, `private`, `secret` or `invisible`.
    pub visibility: Option<String>,
    pub member_count: i64,
    pub joins_last_minute: i64,
}

/// One question for the plugins: a hook with its `ctx`.
#[derive(Clone, Debug)]
pub struct HookCall {
    pub hook: Hook,
    pub actor: Option<MemberFacts>,
    pub target: Option<MemberFacts>,
    pub context: Option<ContextFacts>,
    /// The request's fields (`duration_ms`, `content`…), snake_case.
    pub params: Map<String, Value>,
    pub now_ms: i64,
}

impl HookCall {
    /// The context's id, for per-context settings.
    pub fn context_id(&self) -> Option<&str> {
        self.context.as_ref().map(|c| c.id.as_str())
    }
}

/// A plugin's decision as recorded for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRecord {
    pub plugin: String,
    /// `denied`, `modified` or `simulated`.
    pub outcome: &'static str,
    /// The deny reason, or what was modified.
    pub reason: Option<String>,
    /// The hook's audit action, or the action's own (`mute`, `alert`…) for actions.
    pub action: &'static str,
}

/// An action a plugin asked for, to run after the hook's own action.
#[derive(Clone, Debug)]
pub struct QueuedAction {
    pub plugin: String,
    /// Monitor mode: audit as `simulated`, do not carry out.
    pub simulated: bool,
    pub action: PlannedAction,
}

/// The first deny.
#[derive(Clone, Debug)]
pub struct Denial {
    pub plugin: String,
    pub reason: String,
}

/// What the plugins decided on one hook call.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Set when a plugin denied (the first deny wins).
    pub denied: Option<Denial>,
    /// Params changed by `modify` (chained over plugins), only whitelisted keys.
    pub modified: Map<String, Value>,
    /// Decisions to audit (`denied`, `modified`, `simulated`).
    pub decisions: Vec<DecisionRecord>,
    /// Actions to run after the hook's own action.
    pub actions: Vec<QueuedAction>,
}

impl Verdict {
    /// A modified integer param.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.modified.get(key).and_then(Value::as_i64)
    }

    /// A modified optional integer param: `Some(None)` when a plugin set it to `()`.
    pub fn optional_int(&self, key: &str) -> Option<Option<i64>> {
        self.modified.get(key).map(Value::as_i64)
    }

    /// A modified string param.
    pub fn string(&self, key: &str) -> Option<&str> {
        self.modified.get(key).and_then(Value::as_str)
    }

    /// Whether anything needs recording or doing after the hook's action.
    pub fn is_empty(&self) -> bool {
        self.denied.is_none()
            && self.modified.is_empty()
            && self.decisions.is_empty()
            && self.actions.is_empty()
    }
}

/// Sandbox limits and the per-call wall-clock budget.
#[derive(Clone, Debug)]
pub struct Limits {
    pub budget: Duration,
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub max_fn_expr_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// Actions one hook call may queue.
    pub max_actions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            budget: Duration::from_millis(100),
            max_operations: 2_000_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_fn_expr_depth: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            max_actions: 20,
        }
    }
}

/// The plugin host the server holds: the engine, the loaded plugins and where their state
/// lives.
pub struct Plugins {
    pub registry: Arc<Registry>,
    pub state: Arc<dyn StateStore>,
    /// Hook calls running at once. Plugins spin on blocking threads: without a bound, a
    /// flood of messages through a slow plugin would take hundreds of threads and crowd the
    /// async workers off this machine's cores; beyond the bound, calls wait (asynchronously)
    /// for a slot.
    runs: Arc<tokio::sync::Semaphore>,
    /// Where calls are counted and timed.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Plugins {
    pub fn new(
        registry: Arc<Registry>,
        state: Arc<dyn StateStore>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            registry,
            state,
            runs: Arc::new(tokio::sync::Semaphore::new((cores * 2).max(4))),
            metrics,
        }
    }

    /// Whether any loaded plugin defines `hook` (callers skip building `ctx` otherwise).
    pub fn wants(&self, hook: Hook) -> bool {
        self.registry.wants(hook)
    }

    /// Asks every plugin that defines the hook, in file-name order, on a blocking thread:
    /// the first deny wins, modifications chain, monitor-mode plugins only record.
    pub async fn decide(&self, call: HookCall) -> Verdict {
        if !self.wants(call.hook) {
            return Verdict::default();
        }
        let registry = self.registry.clone();
        let state = self.state.clone();
        let hook = call.hook;
        let started = Instant::now();
        let Ok(slot) = self.runs.clone().acquire_owned().await else {
            // The semaphore is never closed; were it, refuse rather than skip the plugins.
            return Verdict {
                denied: Some(Denial {
                    plugin: "plugins".to_owned(),
                    reason: "Moderation plugins are unavailable".to_owned(),
                }),
                ..Verdict::default()
            };
        };
        let verdict = tokio::task::spawn_blocking(move || {
            let verdict = registry.decide(&call, state);
            drop(slot);
            verdict
        })
        .await
        .unwrap_or_else(|err| {
            tracing::error!(hook = hook.function(), error = %err, "a plugin run failed");
            Verdict {
                denied: Some(Denial {
                    plugin: "plugins".to_owned(),
                    reason: "A moderation plugin failed".to_owned(),
                }),
                ..Verdict::default()
            }
        });
        self.metrics.plugin_call(hook.function(), started);
        tracing::trace!(
            hook = hook.function(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "plugins decided"
        );
        verdict
    }
}

/// A fresh id for things plugins make.
pub fn parse_id(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text.trim()).ok()
}

#[cfg(test)]
mod tests;
