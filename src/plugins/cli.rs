//! The plugin author's commands: `brightchat plugins check [DIR]` and `brightchat plugins
//! run FILE HOOK --ctx ctx.json`. Neither touches a database.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    ContextFacts, Hook, HookCall, Limits, MemberFacts, MemoryStateStore, Registry, StateStore,
};

/// Compiles every `*.rhai` in `dir` (and its settings); prints each error as
/// `file:line:column: message`. Exit 1 on any error.
pub fn check(dir: &Path) -> ExitCode {
    let registry = Registry::new(dir, Limits::default());
    let report = registry.check(dir);
    for error in &report.errors {
        eprintln!("{error}");
    }
    for name in &report.plugins {
        println!("ok   {name}");
    }
    if report.errors.is_empty() {
        println!(
            "{} plugin(s) in {} compiled without errors",
            report.plugins.len(),
            dir.display()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{} error(s)", report.errors.len());
        ExitCode::FAILURE
    }
}

/// The sample `ctx` of `plugins run`: the hook's `ctx` without `config` (which comes from
/// the plugin's own settings file).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SampleCtx {
    pub actor: Option<MemberFacts>,
    pub target: Option<MemberFacts>,
    pub context: Option<ContextFacts>,
    pub params: Map<String, Value>,
    pub now_ms: Option<i64>,
}

/// Runs one hook of one plugin on a sample `ctx` with the real sandbox and prints the
/// decision, the actions it asked for, its state changes and its log. `state` seeds the
/// plugin's state (a JSON object of key → value).
pub fn run(file: &Path, hook: &str, ctx_path: &Path, state: Option<&Path>, json: bool) -> ExitCode {
    let hook_name = if hook.starts_with("on_") {
        hook.to_owned()
    } else {
        format!("on_{hook}")
    };
    let Some(hook) = Hook::from_function(&hook_name) else {
        eprintln!(
            "brightchat: {hook_name} is not a hook; hooks are {}",
            Hook::ALL.map(Hook::function).join(", ")
        );
        return ExitCode::FAILURE;
    };
    let sample: SampleCtx = match read_json(ctx_path) {
        Ok(sample) => sample,
        Err(err) => {
            eprintln!("brightchat: {}: {err}", ctx_path.display());
            return ExitCode::FAILURE;
        }
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let registry = Registry::new(dir, Limits::default());
    let plugin = match registry.compile_one(file) {
        Ok(plugin) => plugin,
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            return ExitCode::FAILURE;
        }
    };
    if !plugin.hooks.contains(&hook) {
        eprintln!(
            "brightchat: {} does not define {}",
            file.display(),
            hook.function()
        );
        return ExitCode::FAILURE;
    }
    let store = Arc::new(MemoryStateStore::default());
    if let Some(path) = state {
        match read_json::<Map<String, Value>>(path) {
            Ok(seed) => {
                for (key, value) in seed {
                    store.insert(&plugin.name, &key, value);
                }
            }
            Err(err) => {
                eprintln!("brightchat: {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let call = HookCall {
        hook,
        actor: sample.actor,
        target: sample.target,
        context: sample.context,
        params: sample.params,
        now_ms: sample.now_ms.unwrap_or_else(crate::time::now_ms),
    };
    let state: Arc<dyn StateStore> = store;
    let (verdict, outputs) = registry.decide_with(&[&plugin], &call, state);
    let output = outputs
        .into_iter()
        .next()
        .map(|(_, o)| o)
        .unwrap_or_default();
    let decision = match (&verdict.denied, verdict.decisions.first()) {
        (Some(denial), _) => serde_json::json!({"decision": "deny", "reason": denial.reason}),
        (None, Some(record)) if record.outcome == "simulated" => {
            serde_json::json!({"decision": "simulated", "what": record.reason})
        }
        (None, _) if !verdict.modified.is_empty() => {
            serde_json::json!({"decision": "modify", "params": verdict.modified})
        }
        _ => serde_json::json!({"decision": "allow"}),
    };
    if json {
        let report = serde_json::json!({
            "plugin": plugin.name.as_ref(),
            "hook": hook.function(),
            "result": decision,
            "actions": verdict.actions.iter().map(|a| serde_json::json!({
                "simulated": a.simulated,
                "action": a.action,
            })).collect::<Vec<_>>(),
            "state_changes": output.state_changes,
            "log": output.logs,
            "note": output.note,
            "error": output.error,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    println!("plugin   {} ({})", plugin.name, hook.function());
    match decision["decision"].as_str() {
        Some("deny") => println!(
            "decision deny: {}",
            decision["reason"].as_str().unwrap_or("")
        ),
        Some("modify") => println!(
            "decision modify: {}",
            Value::Object(verdict.modified.clone())
        ),
        Some("simulated") => println!(
            "decision simulated (monitor mode): {}",
            decision["what"].as_str().unwrap_or("")
        ),
        _ => println!("decision allow"),
    }
    if verdict.actions.is_empty() {
        println!("actions  none");
    } else {
        println!("actions");
        for queued in &verdict.actions {
            let flag = if queued.simulated { " (simulated)" } else { "" };
            println!(
                "  {}{flag}",
                serde_json::to_string(&queued.action).unwrap_or_default()
            );
        }
    }
    if output.state_changes.is_empty() {
        println!("state    unchanged");
    } else {
        println!("state");
        for change in &output.state_changes {
            println!("  {} = {}", change.key, change.value);
        }
    }
    for line in &output.logs {
        println!("log      [{}] {}", line.level, line.text);
    }
    if let Some(note) = &output.note {
        println!("note     {note}");
    }
    if let Some(error) = &output.error {
        println!("error    {error}");
    }
    ExitCode::SUCCESS
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read: {err}"))?;
    serde_json::from_str(&text).map_err(|err| format!("not a valid sample: {err}"))
}
