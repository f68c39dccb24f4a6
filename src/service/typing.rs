//! Typing indicators from the WebSocket (`typing_start` / `typing_stop` frames).
//!
//! Who may type where is the "may post here" rule of [`super::posting`]: a muted member, or
//! a participant the other one blocked, is refused as its send would be.
//!
//! Repeated starts are debounced per member and context ([`TYPING_WINDOW`]): a client that
//! sends `typing_start` on every keystroke costs the others one frame per window, not one
//! per key. A `typing_stop` always passes and ends the window, so the next start is
//! delivered at once.

use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::contexts::{self, Kind};
use super::{Actor, conversations, members, posting};
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType};
use crate::state::AppState;
use crate::time::now_ms;

/// A member's repeated `typing_start` for one context within this long of the last one
/// delivered is accepted (no error frame) but not delivered again.
pub const TYPING_WINDOW: Duration = Duration::from_secs(3);

/// Open windows kept at most (member and context pairs, a few dozen bytes each). Past it
/// the least recently used go first; an entry past [`TYPING_WINDOW`] counts as absent.
const WINDOWS_KEPT: usize = 100_000;

/// When each (member, context) last had a `typing_start` delivered, on this node.
pub struct TypingWindows {
    started: quick_cache::sync::Cache<(Uuid, Uuid), Instant>,
}

impl Default for TypingWindows {
    fn default() -> Self {
        Self {
            started: quick_cache::sync::Cache::new(WINDOWS_KEPT),
        }
    }
}

impl TypingWindows {
    /// Whether a start now should be delivered (and, if so, opens a new window).
    fn start(&self, member_id: Uuid, context_id: Uuid, now: Instant) -> bool {
        let key = (member_id, context_id);
        if let Some(at) = self.started.get(&key)
            && now.saturating_duration_since(at) < TYPING_WINDOW
        {
            return false;
        }
        self.started.insert(key, now);
        true
    }

    /// A stop: the next start is delivered.
    fn stop(&self, member_id: Uuid, context_id: Uuid) {
        self.started.remove(&(member_id, context_id));
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Typing {
    member_id: Uuid,
}

/// Tells the other members of a conversation, group or channel that the actor started
/// (`start`) or stopped typing, if it may post there ([`posting`]); the typist does not
/// receive its own. A start repeated within [`TYPING_WINDOW`] is accepted but not
/// delivered. Ephemeral: published straight to this node's connections (through the bus),
/// never written to the outbox nor replayed on resume.
pub async fn typing(
    state: &AppState,
    actor: &Actor,
    start: bool,
    context_type: ContextType,
    context_id: Uuid,
) -> ServiceResult<()> {
    let event_type = if start {
        EventType::TypingStart
    } else {
        EventType::TypingStop
    };
    let data = Typing {
        member_id: actor.member_id,
    };
    let event = match context_type {
        ContextType::Conversation => {
            let participants = conversations::participants(state, actor, context_id).await?;
            let other = participants
                .iter()
                .copied()
                .find(|id| *id != actor.member_id);
            let blocked = match other {
                Some(other) => members::has_blocked(&state.db.read, other, actor.member_id).await?,
                None => false,
            };
            posting::in_conversation(blocked)?;
            Event::for_members(event_type, context_type, context_id, participants, data)
        }
        ContextType::Group | ContextType::Channel => {
            let kind = if context_type == ContextType::Group {
                Kind::Group
            } else {
                Kind::Channel
            };
            // The gates' cached membership: no query while a member keeps typing.
            let access = contexts::read_access(state, kind, context_id, actor).await?;
            posting::in_context(&access.membership, now_ms())?;
            Event::for_context(event_type, context_type, context_id, data)
        }
        ContextType::Member => {
            return Err(ServiceError::validation(
                "contextType must be conversation, group or channel",
            ));
        }
    };
    if start {
        if !state
            .typing
            .start(actor.member_id, context_id, Instant::now())
        {
            return Ok(());
        }
    } else {
        state.typing.stop(actor.member_id, context_id);
    }
    state
        .events
        .publish_ephemeral(event.excluding(actor.member_id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_within_the_window_are_not_repeated_and_a_stop_ends_it() {
        let windows = TypingWindows::default();
        let (member, context, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let t0 = Instant::now();
        assert!(windows.start(member, context, t0));
        assert!(!windows.start(member, context, t0 + Duration::from_secs(1)));
        // Another context, or another member, has its own window.
        assert!(windows.start(member, other, t0 + Duration::from_secs(1)));
        assert!(windows.start(other, context, t0 + Duration::from_secs(1)));
        // Past the window the start is delivered again, and opens a new window.
        assert!(windows.start(member, context, t0 + TYPING_WINDOW));
        assert!(!windows.start(member, context, t0 + TYPING_WINDOW + Duration::from_secs(1)));
        windows.stop(member, context);
        assert!(windows.start(member, context, t0 + TYPING_WINDOW + Duration::from_secs(1)));
    }

    #[test]
    fn the_windows_stay_bounded() {
        let windows = TypingWindows::default();
        let now = Instant::now();
        for _ in 0..(WINDOWS_KEPT * 2) {
            windows.start(Uuid::now_v7(), Uuid::now_v7(), now);
        }
        assert!(windows.started.len() <= WINDOWS_KEPT);
    }
}
