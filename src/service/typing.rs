//! Typing indicators from the WebSocket (`typing_start` / `typing_stop` frames).

use serde::Serialize;
use uuid::Uuid;

use super::contexts::{self, Kind};
use super::{Actor, conversations};
use crate::error::{ServiceError, ServiceResult};
use crate::events::{ContextType, Event, EventType};
use crate::state::AppState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Typing {
    member_id: Uuid,
}

/// Tells the other members of a conversation, group or channel that the actor started
/// (`start`) or stopped typing. Only members may; the typist does not receive its own.
/// Ephemeral: published straight to this node's connections (through the bus), never
/// written to the outbox nor replayed on resume.
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
            Event::for_members(event_type, context_type, context_id, participants, data)
        }
        ContextType::Group | ContextType::Channel => {
            let kind = if context_type == ContextType::Group {
                Kind::Group
            } else {
                Kind::Channel
            };
            contexts::require_member(&state.db.read, kind, context_id, actor).await?;
            Event::for_context(event_type, context_type, context_id, data)
        }
        ContextType::Member => {
            return Err(ServiceError::validation(
                "contextType must be conversation, group or channel",
            ));
        }
    };
    state
        .events
        .publish_ephemeral(event.excluding(actor.member_id));
    Ok(())
}
