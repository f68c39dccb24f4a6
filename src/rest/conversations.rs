//! Direct-message routes under `/api/conversations`.

use axum::extract::State;
use uuid::Uuid;

use super::envelope::{Envelope, Reply};
use super::extract::{Json, Path, Query};
use crate::error::{ErrorEnvelope, ServiceError};
use crate::service::Actor;
use crate::service::conversations::{
    self, ConversationView, Deleted, DirectMessageView, SendDirectMessage,
};
use crate::service::pagination::{Page, PageParams};
use crate::state::AppState;

/// Send a direct message; the conversation is created on first use.
#[utoipa::path(post, path = "/api/conversations", tag = "conversations",
    security(("bearer" = [])),
    request_body = SendDirectMessage,
    responses(
        (status = 201, description = "Message sent", body = Envelope<DirectMessageView>),
        (status = 400, description = "Missing or invalid fields", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
        (status = 404, description = "Recipient not reachable (blocked or non-existent)", body = ErrorEnvelope),
        (status = 413, description = "Body over 64 KiB", body = ErrorEnvelope),
    ))]
pub async fn send(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<SendDirectMessage>,
) -> Result<Reply<DirectMessageView>, ServiceError> {
    Ok(Reply::created(
        conversations::send(&state, &actor, input).await?,
        "Message sent",
    ))
}

/// The caller's conversations, most recent activity first.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "Conversations listed", body = Envelope<Page<ConversationView>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
    ))]
pub async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<ConversationView>>, ServiceError> {
    Ok(Reply::ok(
        conversations::list(&state, &actor, &params).await?,
        "Conversations listed",
    ))
}

/// Messages of a conversation, oldest first.
#[utoipa::path(get, path = "/api/conversations/{conversationId}/messages", tag = "conversations",
    security(("bearer" = [])),
    params(("conversationId" = Uuid, Path, description = "Conversation id"), PageParams),
    responses(
        (status = 200, description = "Messages retrieved", body = Envelope<Page<DirectMessageView>>),
        (status = 400, description = "Malformed id, bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
        (status = 403, description = "Not a participant in this conversation", body = ErrorEnvelope),
        (status = 404, description = "Conversation not found", body = ErrorEnvelope),
    ))]
pub async fn messages(
    State(state): State<AppState>,
    actor: Actor,
    Path(conversation_id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<DirectMessageView>>, ServiceError> {
    Ok(Reply::ok(
        conversations::messages(&state, &actor, conversation_id, &params).await?,
        "Messages retrieved",
    ))
}

/// Delete one of your own messages.
#[utoipa::path(delete, path = "/api/conversations/{conversationId}/messages/{messageId}", tag = "conversations",
    security(("bearer" = [])),
    params(
        ("conversationId" = Uuid, Path, description = "Conversation id"),
        ("messageId" = Uuid, Path, description = "Message id"),
    ),
    responses(
        (status = 200, description = "Message deleted", body = Envelope<Deleted>),
        (status = 400, description = "Malformed id", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
        (status = 403, description = "Not the message author, or not a participant", body = ErrorEnvelope),
        (status = 404, description = "Conversation or message not found", body = ErrorEnvelope),
    ))]
pub async fn delete_message(
    State(state): State<AppState>,
    actor: Actor,
    Path((conversation_id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Deleted>, ServiceError> {
    Ok(Reply::ok(
        conversations::delete_message(&state, &actor, conversation_id, message_id).await?,
        "Message deleted",
    ))
}
