//! Text helpers for plugins: regular expressions on the linear-time `regex` crate (patterns
//! capped in length and compiled size, compiled once per plugin version) and a word-list
//! matcher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use regex::{Regex, RegexBuilder};

/// Longest pattern accepted.
pub const MAX_PATTERN_BYTES: usize = 512;
/// Compiled size cap of one pattern.
const MAX_COMPILED_BYTES: usize = 1 << 20;
/// Patterns kept per plugin version.
const MAX_PATTERNS: usize = 256;

/// One plugin version's compiled patterns.
#[derive(Default)]
pub struct RegexCache {
    compiled: Mutex<HashMap<String, Arc<Regex>>>,
}

impl RegexCache {
    /// The compiled pattern, compiling it on first use.
    pub fn get(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "a pattern is at most {MAX_PATTERN_BYTES} bytes (this one is {})",
                pattern.len()
            ));
        }
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(regex) = compiled.get(pattern) {
            return Ok(regex.clone());
        }
        let regex = RegexBuilder::new(pattern)
            .size_limit(MAX_COMPILED_BYTES)
            .dfa_size_limit(MAX_COMPILED_BYTES)
            .build()
            .map(Arc::new)
            .map_err(|err| format!("bad pattern {pattern:?}: {err}"))?;
        if compiled.len() >= MAX_PATTERNS {
            compiled.clear();
        }
        compiled.insert(pattern.to_owned(), regex.clone());
        Ok(regex)
    }
}

/// The words of a text, lowercased: runs of letters, digits, `_` and `'`.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `word` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, word: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == word;
    }
    let mut rest = word;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

/// The entries of `list` found in `text` as whole words, case-insensitively, in list
/// order; `*` in an entry matches any run of characters within a word, and an entry of
/// several words matches them in a row.
pub fn words_find(text: &str, list: &[String]) -> Vec<String> {
    let words = words(text);
    let mut found = Vec::new();
    for entry in list {
        let wanted = words_of_entry(entry);
        if wanted.is_empty() || found.contains(entry) {
            continue;
        }
        let hit = words.windows(wanted.len()).any(|window| {
            window
                .iter()
                .zip(&wanted)
                .all(|(word, pattern)| glob(pattern, word))
        });
        if hit {
            found.push(entry.clone());
        }
    }
    found
}

fn words_of_entry(entry: &str) -> Vec<String> {
    entry
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\'' || c == '*'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn whole_words_case_insensitive() {
        let l = list(&["spam", "scam"]);
        assert_eq!(words_find("This is SPAM!", &l), vec!["spam"]);
        assert!(words_find("spammer here", &l).is_empty());
        assert!(words_find("nothing", &l).is_empty());
    }

    #[test]
    fn wildcards_and_phrases() {
        let l = list(&["spam*", "buy now", "*coin"]);
        assert_eq!(
            words_find("Spammers say BUY now, get bitcoin", &l),
            vec!["spam*", "buy now", "*coin"]
        );
        assert!(words_find("buy it now", &list(&["buy now"])).is_empty());
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn regex_cache_caps_patterns() {
        let cache = RegexCache::default();
        assert!(cache.get("a+b").is_ok());
        assert!(cache.get(&"a".repeat(513)).is_err());
        assert!(cache.get("(").is_err());
        // A pattern whose compiled form is huge is refused, not built.
        assert!(cache.get("\\w{1000}\\w{1000}\\w{1000}").is_err());
    }
}
