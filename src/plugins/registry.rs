//! The loaded plugins: every `*.rhai` directly in the plugins folder, compiled once to an
//! `AST` with its `NAME.toml` settings, in file-name order, swapped atomically on reload.
//! A file that fails to compile (or whose settings do not parse) is reported and its
//! previous version stays in force; a removed file stops running.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash as _, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rhai::{AST, CallFnOptions, Dynamic, Engine, Map, Scope};
use serde_json::Value;

use super::engine::{self, Decision, FrameGuard, RunOutput};
use super::helpers::RegexCache;
use super::settings::{Mode, OnError, Settings};
use super::state::StateStore;
use super::{DecisionRecord, Denial, Hook, HookCall, Limits, ParamType, QueuedAction, Verdict};

/// One compiled plugin version.
pub struct Plugin {
    /// The file name without `.rhai`.
    pub name: Arc<str>,
    pub ast: AST,
    pub hooks: HashSet<Hook>,
    pub settings: Settings,
    pub regexes: Arc<RegexCache>,
    fingerprint: u64,
}

/// What is in force.
#[derive(Default)]
struct Loaded {
    plugins: Vec<Arc<Plugin>>,
    hooks: HashSet<Hook>,
}

/// One problem found in a plugin or its settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// What a load or a check found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Plugins in force afterwards, in order.
    pub plugins: Vec<String>,
    pub errors: Vec<CheckError>,
}

/// The engine and the plugins in force.
pub struct Registry {
    engine: Engine,
    limits: Limits,
    dir: PathBuf,
    loaded: ArcSwap<Loaded>,
    /// Reloads one at a time.
    reloading: Mutex<()>,
}

impl Registry {
    /// An empty registry for `dir`; call [`Registry::reload`] to load.
    pub fn new(dir: impl Into<PathBuf>, limits: Limits) -> Self {
        Self {
            engine: engine::build(&limits),
            limits,
            dir: dir.into(),
            loaded: ArcSwap::from_pointee(Loaded::default()),
            reloading: Mutex::new(()),
        }
    }

    /// The folder plugins load from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sandbox limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether any plugin in force defines `hook`.
    pub fn wants(&self, hook: Hook) -> bool {
        self.loaded.load().hooks.contains(&hook)
    }

    /// Names of the plugins in force, in order.
    pub fn names(&self) -> Vec<String> {
        self.loaded
            .load()
            .plugins
            .iter()
            .map(|p| p.name.to_string())
            .collect()
    }

    /// Reads the folder again: new and changed files compile, removed ones stop; a file
    /// that fails keeps its previous version. Logs what changed.
    pub fn reload(&self) -> CheckReport {
        let _one = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.loaded.load_full();
        let by_name: HashMap<&str, &Arc<Plugin>> =
            current.plugins.iter().map(|p| (&*p.name, p)).collect();
        let mut report = CheckReport::default();
        let mut next = Vec::new();
        let files = match plugin_files(&self.dir) {
            Ok(files) => files,
            Err(err) => {
                if self.dir.exists() {
                    tracing::warn!(dir = %self.dir.display(), error = %err, "cannot read the plugins folder");
                }
                Vec::new()
            }
        };
        for (name, path) in files {
            match self.compile_file(&name, &path, by_name.get(name.as_str()).copied()) {
                Ok(plugin) => {
                    if by_name
                        .get(name.as_str())
                        .is_none_or(|old| old.fingerprint != plugin.fingerprint)
                    {
                        tracing::info!(plugin = %name, hooks = ?plugin.hooks.iter().map(|h| h.function()).collect::<Vec<_>>(), "plugin loaded");
                    }
                    next.push(plugin);
                }
                Err(errors) => {
                    for error in &errors {
                        tracing::error!(plugin = %name, "plugin not loaded: {error}");
                    }
                    report.errors.extend(errors);
                    if let Some(old) = by_name.get(name.as_str()) {
                        tracing::warn!(plugin = %name, "the previous version of the plugin stays in force");
                        next.push((*old).clone());
                    }
                }
            }
        }
        for old in &current.plugins {
            if !next.iter().any(|p| p.name == old.name) {
                tracing::info!(plugin = %old.name, "plugin removed");
            }
        }
        let hooks = next.iter().flat_map(|p| p.hooks.iter().copied()).collect();
        report.plugins = next.iter().map(|p| p.name.to_string()).collect();
        self.loaded.store(Arc::new(Loaded {
            plugins: next,
            hooks,
        }));
        report
    }

    /// Compiles every plugin in `dir` without loading anything: `plugins check`.
    pub fn check(&self, dir: &Path) -> CheckReport {
        let mut report = CheckReport::default();
        match plugin_files(dir) {
            Ok(files) => {
                for (name, path) in files {
                    match self.compile_file(&name, &path, None) {
                        Ok(_) => report.plugins.push(name),
                        Err(errors) => report.errors.extend(errors),
                    }
                }
            }
            Err(err) => report.errors.push(CheckError {
                file: dir.to_owned(),
                line: None,
                column: None,
                message: format!("cannot read the folder: {err}"),
            }),
        }
        report
    }

    /// Compiles one file with its settings (for `plugins run`).
    pub fn compile_one(&self, path: &Path) -> Result<Arc<Plugin>, Vec<CheckError>> {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_owned();
        self.compile_file(&name, path, None)
    }

    fn compile_file(
        &self,
        name: &str,
        path: &Path,
        previous: Option<&Arc<Plugin>>,
    ) -> Result<Arc<Plugin>, Vec<CheckError>> {
        let error = |file: &Path, message: String| CheckError {
            file: file.to_owned(),
            line: None,
            column: None,
            message,
        };
        let source = std::fs::read_to_string(path)
            .map_err(|err| vec![error(path, format!("cannot read: {err}"))])?;
        let settings_path = path.with_extension("toml");
        let settings_text = match std::fs::read_to_string(&settings_path) {
            Ok(text) => Some(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(vec![error(&settings_path, format!("cannot read: {err}"))]),
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        source.hash(&mut hasher);
        settings_text.hash(&mut hasher);
        let fingerprint = hasher.finish();
        if let Some(old) = previous
            && old.fingerprint == fingerprint
        {
            return Ok(old.clone());
        }
        let mut errors = Vec::new();
        let ast = match self.engine.compile(&source) {
            Ok(ast) => Some(ast),
            Err(err) => {
                let position = err.position();
                errors.push(CheckError {
                    file: path.to_owned(),
                    line: position.line(),
                    column: position.position(),
                    message: err.err_type().to_string(),
                });
                None
            }
        };
        let mut hooks = HashSet::new();
        if let Some(ast) = &ast {
            for (name, constant, _) in ast.iter_literal_variables(true, true) {
                errors.push(error(
                    path,
                    format!(
                        "top-level {} {name} is never seen by hooks: put settings in {}.toml (ctx.config) or the value inside a function",
                        if constant { "constant" } else { "variable" },
                        name_of(path)
                    ),
                ));
            }
            for function in ast.iter_functions() {
                match Hook::from_function(function.name) {
                    Some(hook) if function.params.len() == 1 => {
                        hooks.insert(hook);
                    }
                    Some(hook) => errors.push(error(
                        path,
                        format!(
                            "{} takes one parameter, ctx (it has {})",
                            hook.function(),
                            function.params.len()
                        ),
                    )),
                    None if function.name.starts_with("on_") => errors.push(error(
                        path,
                        format!(
                            "{} is not a hook (names starting with on_ are kept for hooks: {})",
                            function.name,
                            Hook::ALL.map(Hook::function).join(", ")
                        ),
                    )),
                    None => {}
                }
            }
        }
        let settings = match &settings_text {
            None => Settings::default(),
            Some(text) => match Settings::parse(text) {
                Ok(settings) => settings,
                Err(message) => {
                    errors.push(error(&settings_path, message));
                    Settings::default()
                }
            },
        };
        match ast {
            Some(ast) if errors.is_empty() => Ok(Arc::new(Plugin {
                name: Arc::from(name),
                ast,
                hooks,
                settings,
                regexes: Arc::new(RegexCache::default()),
                fingerprint,
            })),
            _ => Err(errors),
        }
    }

    /// Asks every plugin in force that defines the hook. Blocking: run it off the async
    /// executor.
    pub fn decide(&self, call: &HookCall, state: Arc<dyn StateStore>) -> Verdict {
        let loaded = self.loaded.load();
        let plugins: Vec<&Arc<Plugin>> = loaded
            .plugins
            .iter()
            .filter(|p| p.hooks.contains(&call.hook))
            .collect();
        self.decide_with(&plugins, call, state).0
    }

    /// [`Registry::decide`] over the given plugins; also returns each call's output (for
    /// `plugins run`).
    pub fn decide_with(
        &self,
        plugins: &[&Arc<Plugin>],
        call: &HookCall,
        state: Arc<dyn StateStore>,
    ) -> (Verdict, Vec<(String, RunOutput)>) {
        let mut verdict = Verdict::default();
        let mut outputs = Vec::new();
        let base = base_ctx(call);
        let mut params: Map = match rhai::serde::to_dynamic(&call.params) {
            Ok(value) => value.try_cast::<Map>().unwrap_or_default(),
            Err(_) => Map::new(),
        };
        for plugin in plugins {
            if !plugin.hooks.contains(&call.hook) {
                continue;
            }
            let settings = plugin.settings.for_context(call.context_id());
            if !settings.enabled {
                continue;
            }
            let monitor = settings.mode == Mode::Monitor;
            let mut ctx = base.clone();
            ctx.insert("params".into(), Dynamic::from_map(params.clone()));
            ctx.insert("config".into(), settings.config.clone());
            let guard = FrameGuard::enter(
                plugin.name.clone(),
                call.hook,
                &self.limits,
                call.now_ms,
                state.clone(),
                plugin.regexes.clone(),
            );
            let result = self.engine.call_fn_with_options::<Dynamic>(
                CallFnOptions::new().eval_ast(false).rewind_scope(false),
                &mut Scope::new(),
                &plugin.ast,
                call.hook.function(),
                (Dynamic::from_map(ctx),),
            );
            let mut output = guard.finish();
            let decision = result
                .map_err(|err| err.to_string())
                .map(|value| to_decision(value, &mut output.note))
                .and_then(|decision| match decision {
                    Decision::Modify(changes) if call.hook.can_deny() => {
                        check_modify(call.hook, changes).map(Decision::Modify)
                    }
                    other => Ok(other),
                });
            let name = plugin.name.to_string();
            if let Err(error) = &decision {
                output.error = Some(error.clone());
            }
            // A failed run's actions are dropped with it: it never finished deciding.
            let actions = if decision.is_ok() {
                output.actions.clone()
            } else {
                Vec::new()
            };
            outputs.push((name.clone(), output));
            let decision = match decision {
                Ok(decision) => decision,
                Err(error) => {
                    tracing::warn!(plugin = %name, hook = call.hook.function(), %error, "plugin failed");
                    if settings.on_error == OnError::Allow || !call.hook.can_deny() {
                        continue;
                    }
                    Decision::Deny(format!(
                        "The moderation plugin {name} failed, so the action is refused"
                    ))
                }
            };
            for action in actions {
                verdict.actions.push(QueuedAction {
                    plugin: name.clone(),
                    simulated: monitor,
                    action,
                });
            }
            if !call.hook.can_deny() {
                continue;
            }
            match decision {
                Decision::Allow => {}
                Decision::Deny(reason) => {
                    verdict.decisions.push(DecisionRecord {
                        plugin: name.clone(),
                        outcome: if monitor { "simulated" } else { "denied" },
                        reason: Some(reason.clone()),
                        action: call.hook.audit_action(),
                    });
                    if !monitor {
                        verdict.denied = Some(Denial {
                            plugin: name,
                            reason,
                        });
                        break;
                    }
                }
                Decision::Modify(changes) => {
                    let mut described = Vec::new();
                    for (key, value) in changes {
                        let json: Value = rhai::serde::from_dynamic(&value).unwrap_or(Value::Null);
                        described.push(format!("{key} changed"));
                        if !monitor {
                            params.insert(key.clone(), value);
                            verdict.modified.insert(key.to_string(), json);
                        }
                    }
                    if described.is_empty() {
                        continue;
                    }
                    verdict.decisions.push(DecisionRecord {
                        plugin: name,
                        outcome: if monitor { "simulated" } else { "modified" },
                        reason: Some(described.join(", ")),
                        action: call.hook.audit_action(),
                    });
                }
            }
        }
        (verdict, outputs)
    }
}

/// A hook's result: `()` and any value that is not a decision (Rhai returns the last
/// statement's value, such as a counter) mean `allow()`.
fn to_decision(value: Dynamic, note: &mut Option<String>) -> Decision {
    if value.is_unit() {
        return Decision::Allow;
    }
    let type_name = value.type_name().to_owned();
    value.try_cast::<Decision>().unwrap_or_else(|| {
        *note = Some(format!(
            "the hook returned {type_name}, not a decision: taken as allow()"
        ));
        Decision::Allow
    })
}

fn check_modify(hook: Hook, changes: Map) -> Result<Map, String> {
    let allowed = hook.modifiable();
    if allowed.is_empty() {
        return Err(format!("{} cannot modify anything", hook.function()));
    }
    let names = || {
        allowed
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (key, value) in &changes {
        let Some((_, kind)) = allowed.iter().find(|(name, _)| *name == key.as_str()) else {
            return Err(format!(
                "{} may modify only {}, not {key}",
                hook.function(),
                names()
            ));
        };
        let fits = match kind {
            ParamType::Int => value.is_int(),
            ParamType::OptionalInt => value.is_int() || value.is_unit(),
            ParamType::String => value.is_string(),
        };
        if !fits {
            return Err(format!(
                "modify: {key} must be {}, not {}",
                match kind {
                    ParamType::Int => "an integer",
                    ParamType::OptionalInt => "an integer or ()",
                    ParamType::String => "a string",
                },
                value.type_name()
            ));
        }
    }
    Ok(changes)
}

/// `ctx` without `params` and `config`.
fn base_ctx(call: &HookCall) -> Map {
    let mut ctx = Map::new();
    let to = |value: Result<Dynamic, _>| value.unwrap_or(Dynamic::UNIT);
    ctx.insert("actor".into(), to(rhai::serde::to_dynamic(&call.actor)));
    ctx.insert("target".into(), to(rhai::serde::to_dynamic(&call.target)));
    ctx.insert("context".into(), to(rhai::serde::to_dynamic(&call.context)));
    ctx.insert("now_ms".into(), Dynamic::from_int(call.now_ms));
    ctx
}

fn name_of(path: &Path) -> &str {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("NAME")
}

/// `*.rhai` files directly in `dir` (not in sub-folders), by file name.
fn plugin_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("rhai") {
            continue;
        }
        if !entry
            .file_type()
            .map(|t| t.is_file() || t.is_symlink())
            .unwrap_or(false)
        {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        files.push((name.to_owned(), path));
    }
    files.sort();
    Ok(files)
}
