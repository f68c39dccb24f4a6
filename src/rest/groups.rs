//! Group routes under `/api/groups`, and promotion of a conversation.

use axum::extract::State;
use uuid::Uuid;

use super::envelope::{Envelope, Reply};
use super::extract::{Json, Path, Query};
use crate::error::{ErrorEnvelope, ServiceError};
use crate::service::Actor;
use crate::service::audit::{self, AuditView};
use crate::service::contexts::messages::{
    self, ContentRequest, Deleted, MessageView, Pinned, ReactionRequest, ReactionView, Removed,
    Unpinned,
};
use crate::service::contexts::{
    self, AssignRole, Kind, Left, MemberEntry, MuteRequest, Muted, RoleAssigned, Unmuted,
};
use crate::service::groups::{
    self, AddMembers, Added, CreateGroup, GroupView, PromoteConversation, Promoted, RemovedMember,
};
use crate::service::keys::KeyView;
use crate::service::moderation::{self, Unlocked};
use crate::service::pagination::{Page, PageParams};
use crate::state::AppState;

const G: Kind = Kind::Group;

/// Create a group; the creator becomes its owner.
#[utoipa::path(post, path = "/api/groups", tag = "groups", security(("bearer" = [])),
    request_body = CreateGroup,
    responses(
        (status = 201, description = "Group created", body = Envelope<GroupView>),
        (status = 400, description = "Missing or invalid fields", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
        (status = 404, description = "A member id is unknown", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<CreateGroup>,
) -> Result<Reply<GroupView>, ServiceError> {
    Ok(Reply::created(
        groups::create(&state, &actor, input).await?,
        "Group created",
    ))
}

/// The caller's groups, newest activity first.
#[utoipa::path(get, path = "/api/groups", tag = "groups", security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "Groups listed", body = Envelope<Page<GroupView>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
    ))]
pub async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<GroupView>>, ServiceError> {
    Ok(Reply::ok(
        groups::list(&state, &actor, &params).await?,
        "Groups listed",
    ))
}

/// Group metadata: the first 100 members and `memberCount`, roles, pins.
#[utoipa::path(get, path = "/api/groups/{groupId}", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id")),
    responses(
        (status = 200, description = "Group retrieved", body = Envelope<GroupView>),
        (status = 403, description = "Not a group member", body = ErrorEnvelope),
        (status = 404, description = "Group not found", body = ErrorEnvelope),
    ))]
pub async fn get(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<GroupView>, ServiceError> {
    Ok(Reply::ok(
        groups::get(&state, &actor, id).await?,
        "Group retrieved",
    ))
}

/// The group's members, oldest membership first (join time, then member id), paginated.
#[utoipa::path(get, path = "/api/groups/{groupId}/members", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), PageParams),
    responses(
        (status = 200, description = "Members listed", body = Envelope<Page<MemberEntry>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "Authentication required", body = ErrorEnvelope),
        (status = 403, description = "Not a group member", body = ErrorEnvelope),
        (status = 404, description = "Group not found", body = ErrorEnvelope),
    ))]
pub async fn members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<MemberEntry>>, ServiceError> {
    Ok(Reply::ok(
        groups::members(&state, &actor, id, &params).await?,
        "Members listed",
    ))
}

/// Send a message, encrypted under the group's current key epoch.
#[utoipa::path(post, path = "/api/groups/{groupId}/messages", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id")),
    request_body = ContentRequest,
    responses(
        (status = 201, description = "Message sent", body = Envelope<MessageView>),
        (status = 400, description = "Missing or invalid content", body = ErrorEnvelope),
        (status = 403, description = "Not a group member, or muted", body = ErrorEnvelope),
        (status = 404, description = "Group not found", body = ErrorEnvelope),
        (status = 429, description = "Slow mode: retry after Retry-After seconds", body = ErrorEnvelope),
    ))]
pub async fn send(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<ContentRequest>,
) -> Result<Reply<MessageView>, ServiceError> {
    Ok(Reply::created(
        messages::send(&state, &actor, G, id, input).await?,
        "Message sent",
    ))
}

/// Message history, oldest first (`direction=backward` starts at the newest page).
#[utoipa::path(get, path = "/api/groups/{groupId}/messages", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), PageParams),
    responses(
        (status = 200, description = "Messages retrieved", body = Envelope<Page<MessageView>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
        (status = 403, description = "Not a group member", body = ErrorEnvelope),
        (status = 404, description = "Group not found", body = ErrorEnvelope),
    ))]
pub async fn history(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<MessageView>>, ServiceError> {
    Ok(Reply::ok(
        messages::history(&state, &actor, G, id, &params).await?,
        "Messages retrieved",
    ))
}

/// Edit your own message; the previous version joins its edit history.
#[utoipa::path(put, path = "/api/groups/{groupId}/messages/{messageId}", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("messageId" = Uuid, Path, description = "Message id")),
    request_body = ContentRequest,
    responses(
        (status = 200, description = "Message edited", body = Envelope<MessageView>),
        (status = 400, description = "Missing or invalid content", body = ErrorEnvelope),
        (status = 403, description = "Not the author, or muted", body = ErrorEnvelope),
        (status = 404, description = "Group or message not found", body = ErrorEnvelope),
    ))]
pub async fn edit(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
    Json(input): Json<ContentRequest>,
) -> Result<Reply<MessageView>, ServiceError> {
    Ok(Reply::ok(
        messages::edit(&state, &actor, G, id, message_id, input).await?,
        "Message edited",
    ))
}

/// Delete a message: your own, or one by a member ranked below you with DELETE_ANY_MESSAGE.
#[utoipa::path(delete, path = "/api/groups/{groupId}/messages/{messageId}", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("messageId" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Message deleted", body = Envelope<Deleted>),
        (status = 403, description = "Not allowed", body = ErrorEnvelope),
        (status = 404, description = "Group or message not found", body = ErrorEnvelope),
    ))]
pub async fn delete_message(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Deleted>, ServiceError> {
    Ok(Reply::ok(
        messages::delete(&state, &actor, G, id, message_id).await?,
        "Message deleted",
    ))
}

/// Add members (all or nothing); the key rotates.
#[utoipa::path(post, path = "/api/groups/{groupId}/members", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id")),
    request_body = AddMembers,
    responses(
        (status = 200, description = "Members added", body = Envelope<Added>),
        (status = 400, description = "memberIds missing or empty", body = ErrorEnvelope),
        (status = 403, description = "MANAGE_MEMBERS required, or the group is locked (owners may still add)", body = ErrorEnvelope),
        (status = 404, description = "Group or a member not found", body = ErrorEnvelope),
        (status = 409, description = "Member already in group", body = ErrorEnvelope),
    ))]
pub async fn add_members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<AddMembers>,
) -> Result<Reply<Added>, ServiceError> {
    Ok(Reply::ok(
        groups::add_members(&state, &actor, id, input).await?,
        "Members added",
    ))
}

/// Remove a member ranked below you; the key rotates.
#[utoipa::path(delete, path = "/api/groups/{groupId}/members/{memberId}", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("memberId" = Uuid, Path, description = "Member to remove")),
    responses(
        (status = 200, description = "Member removed", body = Envelope<RemovedMember>),
        (status = 403, description = "MANAGE_MEMBERS and a higher rank required", body = ErrorEnvelope),
        (status = 404, description = "Group not found, or not a member", body = ErrorEnvelope),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, member_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<RemovedMember>, ServiceError> {
    Ok(Reply::ok(
        groups::remove_member(&state, &actor, id, member_id).await?,
        "Member removed",
    ))
}

/// Leave the group; the key rotates (the last member leaving deletes the group).
#[utoipa::path(post, path = "/api/groups/{groupId}/leave", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id")),
    responses(
        (status = 200, description = "Left group", body = Envelope<Left>),
        (status = 403, description = "Not a group member", body = ErrorEnvelope),
        (status = 404, description = "Group not found", body = ErrorEnvelope),
    ))]
pub async fn leave(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<Left>, ServiceError> {
    Ok(Reply::ok(
        groups::leave(&state, &actor, id).await?,
        "Left group",
    ))
}

/// Assign a role (MANAGE_ROLES; the owner may hand over ownership).
#[utoipa::path(put, path = "/api/groups/{groupId}/roles/{memberId}", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("memberId" = Uuid, Path, description = "Member")),
    request_body = AssignRole,
    responses(
        (status = 200, description = "Role assigned", body = Envelope<RoleAssigned>),
        (status = 400, description = "Missing or unknown role", body = ErrorEnvelope),
        (status = 403, description = "Missing permission: MANAGE_ROLES, or rank too low", body = ErrorEnvelope),
        (status = 404, description = "Group not found, or not a member", body = ErrorEnvelope),
    ))]
pub async fn assign_role(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, member_id)): Path<(Uuid, Uuid)>,
    Json(input): Json<AssignRole>,
) -> Result<Reply<RoleAssigned>, ServiceError> {
    Ok(Reply::ok(
        contexts::assign_role(&state, &actor, G, id, member_id, input).await?,
        "Role assigned",
    ))
}

/// React to a message.
#[utoipa::path(post, path = "/api/groups/{groupId}/messages/{messageId}/reactions", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("messageId" = Uuid, Path, description = "Message id")),
    request_body = ReactionRequest,
    responses(
        (status = 201, description = "Reaction added", body = Envelope<ReactionView>),
        (status = 400, description = "Missing or invalid emoji", body = ErrorEnvelope),
        (status = 403, description = "Not a group member, or muted", body = ErrorEnvelope),
        (status = 404, description = "Group or message not found", body = ErrorEnvelope),
        (status = 409, description = "Same reaction already there", body = ErrorEnvelope),
    ))]
pub async fn react(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
    Json(input): Json<ReactionRequest>,
) -> Result<Reply<ReactionView>, ServiceError> {
    Ok(Reply::created(
        messages::react(&state, &actor, G, id, message_id, input).await?,
        "Reaction added",
    ))
}

/// Remove your reaction.
#[utoipa::path(delete, path = "/api/groups/{groupId}/messages/{messageId}/reactions/{reactionId}", tag = "groups", security(("bearer" = [])),
    params(
        ("groupId" = Uuid, Path, description = "Group id"),
        ("messageId" = Uuid, Path, description = "Message id"),
        ("reactionId" = Uuid, Path, description = "Reaction id"),
    ),
    responses(
        (status = 200, description = "Reaction removed", body = Envelope<Removed>),
        (status = 403, description = "Not the reaction author", body = ErrorEnvelope),
        (status = 404, description = "Group, message or reaction not found", body = ErrorEnvelope),
    ))]
pub async fn unreact(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id, reaction_id)): Path<(Uuid, Uuid, Uuid)>,
) -> Result<Reply<Removed>, ServiceError> {
    Ok(Reply::ok(
        messages::unreact(&state, &actor, G, id, message_id, reaction_id).await?,
        "Reaction removed",
    ))
}

/// Pin a message (PIN_MESSAGES).
#[utoipa::path(post, path = "/api/groups/{groupId}/messages/{messageId}/pin", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("messageId" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Message pinned", body = Envelope<Pinned>),
        (status = 403, description = "Insufficient permissions", body = ErrorEnvelope),
        (status = 404, description = "Group or message not found", body = ErrorEnvelope),
    ))]
pub async fn pin(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Pinned>, ServiceError> {
    Ok(Reply::ok(
        messages::pin(&state, &actor, G, id, message_id).await?,
        "Message pinned",
    ))
}

/// Unpin a message (PIN_MESSAGES).
#[utoipa::path(delete, path = "/api/groups/{groupId}/messages/{messageId}/pin", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("messageId" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Message unpinned", body = Envelope<Unpinned>),
        (status = 403, description = "Insufficient permissions", body = ErrorEnvelope),
        (status = 404, description = "Group or message not found", body = ErrorEnvelope),
    ))]
pub async fn unpin(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Unpinned>, ServiceError> {
    Ok(Reply::ok(
        messages::unpin(&state, &actor, G, id, message_id).await?,
        "Message unpinned",
    ))
}

/// Mute a member ranked below you (MUTE_MEMBERS).
#[utoipa::path(post, path = "/api/groups/{groupId}/mute/{memberId}", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("memberId" = Uuid, Path, description = "Member to mute")),
    request_body = MuteRequest,
    responses(
        (status = 200, description = "Member muted", body = Envelope<Muted>),
        (status = 400, description = "Missing or invalid durationMs", body = ErrorEnvelope),
        (status = 403, description = "Missing permission: MUTE_MEMBERS, or rank too low", body = ErrorEnvelope),
        (status = 404, description = "Group not found, or not a member", body = ErrorEnvelope),
    ))]
pub async fn mute(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, member_id)): Path<(Uuid, Uuid)>,
    Json(input): Json<MuteRequest>,
) -> Result<Reply<Muted>, ServiceError> {
    Ok(Reply::ok(
        contexts::mute(&state, &actor, G, id, member_id, input).await?,
        "Member muted",
    ))
}

/// Lift a mute (MUTE_MEMBERS).
#[utoipa::path(delete, path = "/api/groups/{groupId}/mute/{memberId}", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), ("memberId" = Uuid, Path, description = "Member to unmute")),
    responses(
        (status = 200, description = "Member unmuted", body = Envelope<Unmuted>),
        (status = 403, description = "Missing permission: MUTE_MEMBERS, or rank too low", body = ErrorEnvelope),
        (status = 404, description = "Group not found, or not a member", body = ErrorEnvelope),
    ))]
pub async fn unmute(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, member_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Unmuted>, ServiceError> {
    Ok(Reply::ok(
        contexts::unmute(&state, &actor, G, id, member_id).await?,
        "Member unmuted",
    ))
}

/// The epoch keys you may read, wrapped for your public key (made on first read, then kept).
#[utoipa::path(get, path = "/api/groups/{groupId}/keys", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), PageParams),
    responses(
        (status = 200, description = "Keys listed", body = Envelope<Page<KeyView>>),
        (status = 403, description = "Not a group member", body = ErrorEnvelope),
        (status = 404, description = "Group not found", body = ErrorEnvelope),
    ))]
pub async fn keys(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<KeyView>>, ServiceError> {
    Ok(Reply::ok(
        contexts::keys(&state, &actor, G, id, &params).await?,
        "Keys listed",
    ))
}

/// Turn a direct conversation into a group, history included.
#[utoipa::path(post, path = "/api/conversations/{conversationId}/promote", tag = "conversations", security(("bearer" = [])),
    params(("conversationId" = Uuid, Path, description = "Conversation id")),
    request_body = PromoteConversation,
    responses(
        (status = 200, description = "Conversation promoted to group", body = Envelope<Promoted>),
        (status = 400, description = "newMemberIds must be a non-empty array", body = ErrorEnvelope),
        (status = 403, description = "Not a participant", body = ErrorEnvelope),
        (status = 404, description = "Conversation or a member not found", body = ErrorEnvelope),
        (status = 409, description = "Already promoted: details.groupId names the group", body = ErrorEnvelope),
    ))]
pub async fn promote(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<PromoteConversation>,
) -> Result<Reply<Promoted>, ServiceError> {
    Ok(Reply::ok(
        groups::promote(&state, &actor, id, input).await?,
        "Conversation promoted to group",
    ))
}

/// The moderation audit log, newest first (owners and admins).
#[utoipa::path(get, path = "/api/groups/{groupId}/audit", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id"), PageParams),
    responses(
        (status = 200, description = "Audit log", body = Envelope<Page<AuditView>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "Authentication required", body = ErrorEnvelope),
        (status = 403, description = "Not an owner or admin of this group", body = ErrorEnvelope),
        (status = 404, description = "Group not found", body = ErrorEnvelope),
    ))]
pub async fn audit_log(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<AuditView>>, ServiceError> {
    Ok(Reply::ok(
        audit::list(&state, &actor, G, id, &params).await?,
        "Audit log",
    ))
}

/// Lift a moderation plugin's lock (owners): admins may add members again.
#[utoipa::path(delete, path = "/api/groups/{groupId}/lock", tag = "groups", security(("bearer" = [])),
    params(("groupId" = Uuid, Path, description = "Group id")),
    responses(
        (status = 200, description = "Lock lifted (or none was in force)", body = Envelope<Unlocked>),
        (status = 401, description = "Authentication required", body = ErrorEnvelope),
        (status = 403, description = "Not the owner of this group, or not a member", body = ErrorEnvelope),
        (status = 404, description = "Group not found", body = ErrorEnvelope),
    ))]
pub async fn unlock(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<Unlocked>, ServiceError> {
    Ok(Reply::ok(
        moderation::unlock(&state, &actor, G, id).await?,
        "Lock lifted",
    ))
}
