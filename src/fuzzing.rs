//! Entry points for the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md). Each takes the
//! fuzzer's bytes and drives one parser a client reaches without signing in or with any
//! token: cursor decoding, request bodies and their validation, WebSocket client frames.
//! None may panic, whatever the input; they return nothing, only panics count.
//!
//! Not part of the API: hidden from the docs and kept to these three functions.

use crate::service::pagination::{CursorCodec, CursorKey, Direction, PageParams};
use crate::service::validate;
use crate::service::{auth, channels, contexts, conversations, groups, members, presence};

/// Cursor decoding: a `cursor` query parameter as the list routes read it, and a
/// round-trip of a key made from the input.
pub fn cursor(data: &[u8]) {
    let codec = CursorCodec::new([7; 32]);
    let text = String::from_utf8_lossy(data);
    let _ = codec.decode("fuzz", &text);
    for direction in [None, Some(Direction::Forward), Some(Direction::Backward)] {
        let params = PageParams {
            cursor: Some(text.to_string()),
            limit: data.first().map(|b| i64::from(*b) - 8),
            direction,
        };
        let _ = codec.request("fuzz", &params, direction.is_some());
    }
    if let Some((head, rest)) = data.split_first_chunk::<24>() {
        let time = i64::from_be_bytes(head[..8].try_into().unwrap_or_default());
        let id = uuid::Uuid::from_slice(&head[8..]).unwrap_or_default();
        let direction = if rest.first().is_some_and(|b| b & 1 == 1) {
            Direction::Backward
        } else {
            Direction::Forward
        };
        let key = CursorKey { time, id };
        let encoded = codec.encode("fuzz", direction, key);
        let decoded = codec.decode("fuzz", &encoded).ok();
        assert_eq!(decoded, Some((direction, key)), "a cursor must read back");
        assert!(
            codec.decode("other", &encoded).is_err(),
            "cursors are scoped"
        );
    }
}

/// Request bodies: every main body type read from the bytes as the REST extractor reads
/// them (serde_json), and the text checks they go through.
pub fn request_json(data: &[u8]) {
    fn read<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
        serde_json::from_slice(data).ok()
    }
    let _ = read::<auth::ChallengeRequest>(data);
    let _ = read::<auth::LoginRequest>(data);
    if let Some(body) = read::<members::RegisterMember>(data) {
        let _ = validate::display_name(&body.display_name);
    }
    let _ = read::<members::UpdateProfile>(data);
    if let Some(body) = read::<conversations::SendDirectMessage>(data) {
        let _ = validate::message_content(&body.content);
    }
    if let Some(body) = read::<groups::CreateGroup>(data) {
        let _ = validate::group_name(&body.name);
    }
    let _ = read::<groups::AddMembers>(data);
    if let Some(body) = read::<channels::CreateChannel>(data) {
        let _ = validate::channel_name(&body.name);
    }
    if let Some(body) = read::<channels::UpdateChannel>(data) {
        let _ = body.name.as_deref().map(validate::channel_name);
        let _ = body.topic.as_deref().map(validate::topic);
    }
    let _ = read::<channels::CreateInvite>(data);
    if let Some(body) = read::<contexts::messages::ContentRequest>(data) {
        let _ = validate::message_content(&body.content);
    }
    if let Some(body) = read::<contexts::messages::ReactionRequest>(data) {
        let _ = validate::emoji(&body.emoji);
    }
    if let Some(body) = read::<contexts::MuteRequest>(data) {
        let _ = validate::mute_duration(body.duration_ms);
    }
    let _ = read::<contexts::AssignRole>(data);
    let _ = read::<presence::SetPresence>(data);
    let _ = read::<async_graphql::Request>(data);
    // The same checks on the raw text, which reaches them with any characters at all.
    let text = String::from_utf8_lossy(data);
    let _ = validate::message_content(&text);
    let _ = validate::display_name(&text);
    let _ = validate::group_name(&text);
    let _ = validate::emoji(&text);
    let _ = validate::channel_name(&text);
    let _ = validate::topic(&text);
}

/// WebSocket client frames on `/api/events`, parsed as the socket parses them.
pub fn ws_frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let frame = crate::rest::ws::ClientFrame::parse(text);
        let _ = frame.spends_write_limit();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        // The fuzz targets' entry points on the stable toolchain: a quick pass of random
        // input in `cargo test`, the long runs are cargo-fuzz's (docs/fuzzing.md).
        #[test]
        fn entry_points_take_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            super::cursor(&data);
            super::request_json(&data);
            super::ws_frame(&data);
        }

        #[test]
        fn entry_points_take_json_like_text(text in r#"[{}\[\]":,a-zA-Z0-9_ \\-]{0,120}"#) {
            super::request_json(text.as_bytes());
            super::ws_frame(text.as_bytes());
        }
    }

    /// Frames and bodies that reach the deeper branches, kept as regression cases.
    #[test]
    fn known_inputs_do_not_panic() {
        for input in [
            r#"{"type":"typing_start","contextType":"channel","contextId":"01a232b7-ae11-7719-b7c4-2bb9dce01d03"}"#,
            r#"{"type":"presence","status":"online"}"#,
            r#"{"content":"\u202e"}"#,
            r#"{"emoji":"\ud83d\udc4d"}"#,
            r#"{"durationMs":-9223372036854775808}"#,
            r#"{"query":"{ me { id } }","variables":{}}"#,
        ] {
            super::request_json(input.as_bytes());
            super::ws_frame(input.as_bytes());
            super::cursor(input.as_bytes());
        }
    }
}
