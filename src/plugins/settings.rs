//! A plugin's settings: `NAME.toml` beside `NAME.rhai`, read-only to the script as
//! `ctx.config`. A `[context."<id>"]` table overrides keys for that group or channel;
//! `enabled`, `mode` (`enforce` or `monitor`) and `on_error` (`deny` or `allow`) steer the
//! host, at the top or per context.

use std::collections::HashMap;

use rhai::Dynamic;

/// Whether a plugin's decisions take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Run, but only audit what it would do (outcome `simulated`).
    Monitor,
}

/// What an error or an overrun means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Fail closed: the action is refused (the default).
    Deny,
    /// The plugin is skipped.
    Allow,
}

/// The settings in force for one context (or the top level).
#[derive(Clone, Debug)]
pub struct Resolved {
    pub enabled: bool,
    pub mode: Mode,
    pub on_error: OnError,
    /// `ctx.config`.
    pub config: Dynamic,
}

/// A plugin's settings, resolved once per load for the top level and each context table.
#[derive(Clone, Debug)]
pub struct Settings {
    top: Resolved,
    contexts: HashMap<String, Resolved>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            top: Resolved {
                enabled: true,
                mode: Mode::Enforce,
                on_error: OnError::Deny,
                config: Dynamic::from_map(rhai::Map::new()),
            },
            contexts: HashMap::new(),
        }
    }
}

impl Settings {
    /// Parses a settings file; the error names the key at fault.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let mut table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            let mut message = err.message().to_owned();
            if let Some(span) = err.span() {
                let (line, column) = line_column(text, span.start);
                message = format!("line {line}, column {column}: {message}");
            }
            message
        })?;
        let overrides = match table.remove("context") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err("`context` must be a table of tables keyed by id".into()),
        };
        let top = resolve(&table, None)?;
        let mut contexts = HashMap::new();
        for (id, value) in overrides {
            let toml::Value::Table(over) = value else {
                return Err(format!("[context.\"{id}\"] must be a table"));
            };
            if uuid::Uuid::parse_str(&id).is_err() {
                return Err(format!(
                    "[context.\"{id}\"]: the key must be a group or channel id"
                ));
            }
            let mut merged = table.clone();
            for (k, v) in over {
                merged.insert(k, v);
            }
            let resolved = resolve(&merged, Some(&id))?;
            contexts.insert(id.to_ascii_lowercase(), resolved);
        }
        Ok(Settings { top, contexts })
    }

    /// The settings in force in a context (`None`: no context, as on profile changes).
    pub fn for_context(&self, context_id: Option<&str>) -> &Resolved {
        context_id
            .and_then(|id| self.contexts.get(&id.to_ascii_lowercase()))
            .unwrap_or(&self.top)
    }
}

fn resolve(table: &toml::Table, context: Option<&str>) -> Result<Resolved, String> {
    let at = |key: &str| match context {
        Some(id) => format!("[context.\"{id}\"] {key}"),
        None => key.to_owned(),
    };
    let enabled = match table.get("enabled") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err(format!("{}: must be true or false", at("enabled"))),
    };
    let mode = match table.get("mode").map(|v| v.as_str()) {
        None | Some(Some("enforce")) => Mode::Enforce,
        Some(Some("monitor")) => Mode::Monitor,
        Some(_) => {
            return Err(format!(
                "{}: must be \"enforce\" or \"monitor\"",
                at("mode")
            ));
        }
    };
    let on_error = match table.get("on_error").map(|v| v.as_str()) {
        None | Some(Some("deny")) => OnError::Deny,
        Some(Some("allow")) => OnError::Allow,
        Some(_) => return Err(format!("{}: must be \"deny\" or \"allow\"", at("on_error"))),
    };
    let config = rhai::serde::to_dynamic(table)
        .map_err(|err| format!("settings cannot be given to the script: {err}"))?;
    Ok(Resolved {
        enabled,
        mode,
        on_error,
        config,
    })
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_tables_override_top_keys() {
        let id = "0192f0c0-0000-7000-8000-000000000001";
        let text = format!(
            "max_ms = 3600000\nmode = \"monitor\"\n[context.\"{id}\"]\nmax_ms = 60000\nmode = \"enforce\"\n"
        );
        let settings = Settings::parse(&text).expect("parses");
        let top = settings.for_context(None);
        assert_eq!(top.mode, Mode::Monitor);
        let map = top.config.clone().cast::<rhai::Map>();
        assert_eq!(map["max_ms"].as_int().ok(), Some(3_600_000));
        let here = settings.for_context(Some(id));
        assert_eq!(here.mode, Mode::Enforce);
        let map = here.config.clone().cast::<rhai::Map>();
        assert_eq!(map["max_ms"].as_int().ok(), Some(60_000));
        assert!(!map.contains_key("context"));
        let elsewhere = settings.for_context(Some("0192f0c0-0000-7000-8000-000000000002"));
        assert_eq!(elsewhere.mode, Mode::Monitor);
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(
            Settings::parse("mode = \"loud\"")
                .unwrap_err()
                .contains("mode")
        );
        assert!(
            Settings::parse("enabled = 3")
                .unwrap_err()
                .contains("enabled")
        );
        assert!(
            Settings::parse("[context.x]\nenabled = false")
                .unwrap_err()
                .contains("id")
        );
        assert!(Settings::parse("a = ").unwrap_err().contains("line 1"));
    }
}
