//! Input rules shared by every route that takes them (CONTRACT.md "Roles and moderation").
//!
//! Text that other members see is checked for characters that hide or disguise it:
//! - Nothing may consist only of invisible characters (whitespace, controls, format
//!   characters such as U+200B ZERO WIDTH SPACE, variation selectors): such a message,
//!   name or reaction would show as nothing.
//! - NUL and other control characters are refused everywhere (newlines and tabs are
//!   allowed in message content, newlines in topics).
//! - Names and topics (display names, group names, channel topics) also refuse
//!   bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and the rest) and other
//!   invisible format characters, which are used to impersonate or to hide text; only
//!   ZERO WIDTH (NON-)JOINER stays allowed, which some scripts and emoji need. Message
//!   content keeps format characters (right-to-left writers need the marks), but a
//!   message must show something.
//!
//! Nothing is silently rewritten: a refused value is a 400 naming the field.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::error::{ServiceError, ServiceResult};

/// Whether `c` shows nothing by itself.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || c.general_category() == GeneralCategory::Format
        || matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}')
}

/// Bidirectional controls: embeddings, overrides, isolates and the marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Format characters refused in names and topics (all but the joiners).
fn is_hidden_format(c: char) -> bool {
    c.general_category() == GeneralCategory::Format && !matches!(c, '\u{200C}' | '\u{200D}')
}

/// Whether `text` has at least one visible character.
fn shows_something(text: &str) -> bool {
    !text.chars().all(is_invisible)
}

/// The shared check for names and topics: `field` names the field in the message.
fn name_like(field: &str, text: &str, allow_newlines: bool) -> ServiceResult<()> {
    if text
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && c == '\n'))
    {
        return Err(ServiceError::validation(format!(
            "{field} must not contain control characters"
        )));
    }
    if text
        .chars()
        .any(|c| is_bidi_control(c) || is_hidden_format(c))
    {
        return Err(ServiceError::validation(format!(
            "{field} must not contain bidirectional controls or invisible format characters"
        )));
    }
    Ok(())
}

/// Longest message, in Unicode scalar values.
pub const MAX_CONTENT_CHARS: usize = 10_000;
/// Longest display name, in Unicode scalar values.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// Message content: 1..=10,000 Unicode scalar values, not blank.
pub fn message_content(content: &str) -> ServiceResult<()> {
    if !shows_something(content) {
        return Err(ServiceError::validation(
            "content must not be empty or blank",
        ));
    }
    if content
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ServiceError::validation(
            "content must not contain control characters other than newlines and tabs",
        ));
    }
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(ServiceError::validation(
            "content must be at most 10000 characters",
        ));
    }
    Ok(())
}

/// Display names: 1..=64 characters after trimming, no control characters. Returns the
/// trimmed name.
pub fn display_name(name: &str) -> ServiceResult<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::validation("displayName must not be empty"));
    }
    if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(ServiceError::validation(
            "displayName must be at most 64 characters",
        ));
    }
    name_like("displayName", trimmed, false)?;
    if !shows_something(trimmed) {
        return Err(ServiceError::validation(
            "displayName must have a visible character",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Longest group name, in Unicode scalar values.
pub const MAX_GROUP_NAME_CHARS: usize = 100;
/// Longest mute: 28 days in milliseconds.
pub const MAX_MUTE_MS: i64 = 2_419_200_000;

/// Group names: 1..=100 characters after trimming, no control characters.
pub fn group_name(name: &str) -> ServiceResult<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::validation("name must not be empty"));
    }
    if trimmed.chars().count() > MAX_GROUP_NAME_CHARS {
        return Err(ServiceError::validation(
            "name must be at most 100 characters",
        ));
    }
    name_like("name", trimmed, false)?;
    if !shows_something(trimmed) {
        return Err(ServiceError::validation(
            "name must have a visible character",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Reaction emoji: 1..=64 bytes, no whitespace.
pub fn emoji(emoji: &str) -> ServiceResult<()> {
    if emoji.is_empty() || emoji.len() > 64 {
        return Err(ServiceError::validation("emoji must be 1 to 64 bytes"));
    }
    if emoji.chars().any(char::is_whitespace) {
        return Err(ServiceError::validation(
            "emoji must not contain whitespace",
        ));
    }
    if emoji.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(ServiceError::validation(
            "emoji must not contain control characters",
        ));
    }
    if !shows_something(emoji) {
        return Err(ServiceError::validation(
            "emoji must have a visible character",
        ));
    }
    Ok(())
}

/// Mute durations: 1..=2,419,200,000 ms (28 days).
pub fn mute_duration(duration_ms: i64) -> ServiceResult<i64> {
    if (1..=MAX_MUTE_MS).contains(&duration_ms) {
        Ok(duration_ms)
    } else {
        Err(ServiceError::validation(
            "durationMs must be between 1 and 2419200000 (28 days)",
        ))
    }
}

/// Longest channel topic, in Unicode scalar values.
pub const MAX_TOPIC_CHARS: usize = 1_000;

/// Channel names: 1..=80 of `a-z 0-9 - _`, starting with a letter or digit. Nothing is
/// rewritten: anything else is refused.
pub fn channel_name(name: &str) -> ServiceResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ServiceError::validation(
            "name must be 1 to 80 of a-z, 0-9, - and _, starting with a letter or digit",
        ))
    }
}

/// Channel topics: at most 1,000 characters, no control characters other than newlines.
pub fn topic(topic: &str) -> ServiceResult<()> {
    if topic.chars().count() > MAX_TOPIC_CHARS {
        return Err(ServiceError::validation(
            "topic must be at most 1000 characters",
        ));
    }
    name_like("topic", topic, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn content_bounds() {
        assert!(message_content("hi").is_ok());
        assert!(message_content("   \n\t").is_err());
        assert!(message_content("").is_err());
        assert!(message_content(&"é".repeat(10_000)).is_ok());
        assert!(message_content(&"é".repeat(10_001)).is_err());
    }

    #[test]
    fn emoji_and_mute_bounds() {
        assert!(emoji("👍").is_ok());
        assert!(emoji("").is_err());
        assert!(emoji("a b").is_err());
        assert!(emoji(&"x".repeat(65)).is_err());
        assert!(mute_duration(0).is_err());
        assert!(mute_duration(MAX_MUTE_MS).is_ok());
        assert!(mute_duration(MAX_MUTE_MS + 1).is_err());
    }

    #[test]
    fn invisible_and_disguising_characters() {
        // Nothing that shows as nothing.
        for blank in [
            "\u{200B}",
            "\u{200D}",
            "\u{FEFF}",
            "\u{2060}",
            "\u{FE0F}",
            " \u{200B} ",
        ] {
            assert!(message_content(blank).is_err(), "{blank:?}");
            assert!(emoji(blank).is_err(), "{blank:?}");
            assert!(display_name(blank).is_err(), "{blank:?}");
            assert!(group_name(blank).is_err(), "{blank:?}");
        }
        // NUL anywhere.
        assert!(message_content("a\u{0}b").is_err());
        assert!(message_content("\u{0}").is_err());
        assert!(emoji("\u{0}").is_err());
        assert!(display_name("Ada\u{0}").is_err());
        assert!(topic("news\u{0}").is_err());
        // Bidi overrides and hidden format characters in names and topics.
        assert!(display_name("Ada\u{202E}nimda").is_err());
        assert!(display_name("Ad\u{200B}a").is_err());
        assert!(group_name("team\u{2066}x").is_err());
        assert!(topic("release \u{202E}txt.exe").is_err());
        assert!(emoji("\u{202E}👍").is_err());
        // What real writers need stays allowed.
        assert!(message_content("שלום \u{200F}world\n\tok").is_ok());
        assert!(message_content("👨\u{200D}👩\u{200D}👧").is_ok());
        assert!(emoji("👨\u{200D}👩\u{200D}👧").is_ok());
        assert!(emoji("❤\u{FE0F}").is_ok());
        assert!(display_name("می\u{200C}خواهم").is_ok());
        assert!(topic("line one\nline two").is_ok());
    }

    #[test]
    fn channel_names() {
        for good in ["general", "a", "0day", "dev-chat_2", &"x".repeat(80)] {
            assert!(channel_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "General",
            "-x",
            "_x",
            "has space",
            "café",
            &"x".repeat(81),
            "a.b",
        ] {
            assert!(channel_name(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn channel_names_match_the_rule(s in "[a-z0-9_A-Z. -]{0,90}|\\PC{0,20}") {
            let expected = !s.is_empty() && s.len() <= 80
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            prop_assert_eq!(channel_name(&s).is_ok(), expected);
        }
    }

    proptest! {
        #[test]
        fn display_name_never_panics_and_trims(s in "\\PC{0,100}") {
            if let Ok(name) = display_name(&s) {
                prop_assert_eq!(name.trim(), name.as_str());
                prop_assert!(!name.is_empty());
                prop_assert!(name.chars().count() <= 64);
            }
        }
    }
}
