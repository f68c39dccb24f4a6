//! What the server reads out of a message's text for the `on_message` hook (CONTRACT.md
//! "Moderation plugins": `params.links` and `params.mentions`, parsed by the server), so
//! plugins need no parsing of their own.
//!
//! **Mentions.** A member is mentioned as `@<member id>` or `<@member id>`: an `@`, then a
//! member id in its hyphenated UUID form (any case), for example
//! `@0b0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3` or `<@0b0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3>`.
//! The `@` must start the text or follow a character that is not a letter, digit or `_`
//! (so the `@` of an e-mail address mentions nobody), and the id must not run on into a
//! letter, digit, `_` or `-`. `params.mentions` lists the ids, lowercase, each once, in the
//! order of first mention, at most [`MAX_MENTIONS`]. The ids are not checked against the
//! member list (that would be a query per message); a plugin that cares compares them with
//! what it knows.
//!
//! **Links.** Every URL the `linkify` crate finds, with or without a scheme
//! (`https://example.com/a` and `example.com/a` alike; e-mail addresses are not links), as
//! `#{url, host}` with `url` as written and `host` lowercase (`""` when it cannot be told),
//! each URL once, in order, at most [`MAX_LINKS`].

use std::sync::LazyLock;

use linkify::{LinkFinder, LinkKind};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Most mentions listed for one message.
pub const MAX_MENTIONS: usize = 100;
/// Most links listed for one message.
pub const MAX_LINKS: usize = 100;

static MENTION: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"@([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})",
    )
    .unwrap_or_else(|err| unreachable!("the mention pattern compiles: {err}"))
});

fn wordish(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Ids mentioned in `text`, lowercase, each once, in order (see the module docs).
pub fn mentions(text: &str) -> Vec<Uuid> {
    let mut found: Vec<Uuid> = Vec::new();
    for capture in MENTION.captures_iter(text) {
        let (Some(whole), Some(id)) = (capture.get(0), capture.get(1)) else {
            continue;
        };
        let before = text[..whole.start()].chars().next_back();
        let after = text[whole.end()..].chars().next();
        if before.is_some_and(wordish) || after.is_some_and(|c| wordish(c) || c == '-') {
            continue;
        }
        if let Ok(id) = Uuid::parse_str(id.as_str())
            && !found.contains(&id)
        {
            found.push(id);
            if found.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    found
}

/// One link found in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    /// Lowercase; empty when the URL has no host the parser can tell.
    pub host: String,
}

/// Links in `text` (see the module docs).
pub fn links(text: &str) -> Vec<Link> {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]).url_must_have_scheme(false);
    let mut found: Vec<Link> = Vec::new();
    for link in finder.links(text) {
        let url = link.as_str();
        if found.iter().any(|l| l.url == url) {
            continue;
        }
        found.push(Link {
            url: url.to_owned(),
            host: host_of(url),
        });
        if found.len() == MAX_LINKS {
            break;
        }
    }
    found
}

fn host_of(url: &str) -> String {
    let parsed = if url.contains("://") {
        url::Url::parse(url)
    } else {
        url::Url::parse(&format!("http://{url}"))
    };
    parsed
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_end_matches('.').to_lowercase()))
        .unwrap_or_default()
}

/// `params` of `on_message`: `kind` (`send` or `edit`), `content`, `message_id` on an edit,
/// `links` and `mentions`.
pub fn message_params(kind: &str, content: &str, message_id: Option<Uuid>) -> Map<String, Value> {
    let mut params = Map::new();
    params.insert("kind".into(), Value::from(kind));
    params.insert("content".into(), Value::from(content));
    if let Some(id) = message_id {
        params.insert("message_id".into(), Value::from(id.to_string()));
    }
    params.insert(
        "links".into(),
        Value::Array(
            links(content)
                .into_iter()
                .map(|l| json!({"url": l.url, "host": l.host}))
                .collect(),
        ),
    );
    params.insert(
        "mentions".into(),
        Value::Array(
            mentions(content)
                .into_iter()
                .map(|id| Value::from(id.to_string()))
                .collect(),
        ),
    );
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0b0c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3";
    const B: &str = "11111111-2222-4333-8444-555555555555";

    #[test]
    fn both_mention_forms_are_read_once_each_in_order() {
        let text = format!("hi <@{B}> and @{} and again @{B}.", A.to_uppercase());
        let ids: Vec<String> = mentions(&text).iter().map(Uuid::to_string).collect();
        assert_eq!(ids, vec![B.to_owned(), A.to_owned()]);
    }

    #[test]
    fn an_at_inside_a_word_or_a_longer_token_is_no_mention() {
        assert!(mentions(&format!("mail me at bob@{A}")).is_empty());
        assert!(mentions(&format!("@{A}x")).is_empty());
        assert!(mentions(&format!("@{A}-tail")).is_empty());
        assert!(mentions("@not-a-uuid").is_empty());
        assert_eq!(mentions(&format!("(@{A})")).len(), 1);
        assert_eq!(mentions(&format!("@{A},@{B}")).len(), 2);
    }

    #[test]
    fn links_with_and_without_scheme_and_their_hosts() {
        let found = links(
            "see https://Example.COM/a?b=1, www.rust-lang.org and spam.example.net/x; \
             mail bob@example.org; again https://Example.COM/a?b=1",
        );
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|l| (l.url.as_str(), l.host.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("https://Example.COM/a?b=1", "example.com"),
                ("www.rust-lang.org", "www.rust-lang.org"),
                ("spam.example.net/x", "spam.example.net"),
            ]
        );
    }

    #[test]
    fn message_params_have_every_field() {
        let id = Uuid::nil();
        let params = message_params("edit", &format!("@{A} look: https://x.test/"), Some(id));
        assert_eq!(params["kind"], "edit");
        assert_eq!(params["message_id"], id.to_string());
        assert_eq!(params["mentions"], json!([A]));
        assert_eq!(
            params["links"],
            json!([{"url": "https://x.test/", "host": "x.test"}])
        );
        let sent = message_params("send", "plain", None);
        assert!(!sent.contains_key("message_id"));
        assert_eq!(sent["links"], json!([]));
    }
}
