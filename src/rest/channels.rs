//! Channel routes under `/api/channels`.

use axum::extract::State;
use uuid::Uuid;

use super::envelope::{Envelope, Reply};
use super::extract::{Json, OptionalJson, Path, Query};
use crate::error::{ErrorEnvelope, ServiceError};
use crate::service::Actor;
use crate::service::audit::{self, AuditView};
use crate::service::channels::{
    self, ChannelSettings, ChannelSummary, ChannelView, CreateChannel, CreateInvite, InviteView,
    Joined, Kicked, Redeemed, UpdateChannel,
};
use crate::service::contexts::messages::{
    self, ContentRequest, Deleted, MessageView, Pinned, ReactionRequest, ReactionView, Removed,
    Unpinned,
};
use crate::service::contexts::{
    self, AssignRole, Kind, Left, MemberEntry, MuteRequest, Muted, RoleAssigned, Unmuted,
};
use crate::service::keys::KeyView;
use crate::service::moderation::{self, Unlocked};
use crate::service::pagination::{Page, PageParams};
use crate::service::search::{self, SearchParams, SearchResult};
use crate::state::AppState;

const C: Kind = Kind::Channel;

/// Create a channel; the creator becomes its owner.
#[utoipa::path(post, path = "/api/channels", tag = "channels", security(("bearer" = [])),
    request_body = CreateChannel,
    responses(
        (status = 201, description = "Channel created", body = Envelope<ChannelView>),
        (status = 400, description = "Missing or invalid fields", body = ErrorEnvelope),
        (status = 409, description = "Channel name already taken", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<CreateChannel>,
) -> Result<Reply<ChannelView>, ServiceError> {
    Ok(Reply::created(
        channels::create(&state, &actor, input).await?,
        "Channel created",
    ))
}

/// Channels you can discover: public and private ones, and secret and invisible ones you belong to.
#[utoipa::path(get, path = "/api/channels", tag = "channels", security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "Channels listed", body = Envelope<Page<ChannelSummary>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
    ))]
pub async fn list(
    State(state): State<AppState>,
    actor: Actor,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<ChannelSummary>>, ServiceError> {
    Ok(Reply::ok(
        channels::list(&state, &actor, &params).await?,
        "Channels listed",
    ))
}

/// Channel metadata: the first 100 members and `memberCount`, settings, pins. Non-members
/// see public channels only.
#[utoipa::path(get, path = "/api/channels/{channelId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id")),
    responses(
        (status = 200, description = "Channel retrieved", body = Envelope<ChannelView>),
        (status = 403, description = "Not a channel member (private and secret channels)", body = ErrorEnvelope),
        (status = 404, description = "Channel not found (or invisible to you)", body = ErrorEnvelope),
    ))]
pub async fn get(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<ChannelView>, ServiceError> {
    Ok(Reply::ok(
        channels::get(&state, &actor, id).await?,
        "Channel retrieved",
    ))
}

/// The channel's members, oldest membership first (join time, then member id), paginated.
/// Non-members see public channels only.
#[utoipa::path(get, path = "/api/channels/{channelId}/members", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), PageParams),
    responses(
        (status = 200, description = "Members listed", body = Envelope<Page<MemberEntry>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "Authentication required", body = ErrorEnvelope),
        (status = 403, description = "Not a channel member (private and secret channels)", body = ErrorEnvelope),
        (status = 404, description = "Channel not found (or invisible to you)", body = ErrorEnvelope),
    ))]
pub async fn members(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<MemberEntry>>, ServiceError> {
    Ok(Reply::ok(
        channels::members(&state, &actor, id, &params).await?,
        "Members listed",
    ))
}

/// Update channel settings (MANAGE_CHANNEL: owners); only the fields given change.
#[utoipa::path(put, path = "/api/channels/{channelId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id")),
    request_body = UpdateChannel,
    responses(
        (status = 200, description = "Channel updated", body = Envelope<ChannelSettings>),
        (status = 400, description = "Invalid fields", body = ErrorEnvelope),
        (status = 403, description = "Missing permission: MANAGE_CHANNEL", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
        (status = 409, description = "Channel name already taken", body = ErrorEnvelope),
    ))]
pub async fn update(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<UpdateChannel>,
) -> Result<Reply<ChannelSettings>, ServiceError> {
    Ok(Reply::ok(
        channels::update(&state, &actor, id, input).await?,
        "Channel updated",
    ))
}

/// Delete a channel with all its messages (owners).
#[utoipa::path(delete, path = "/api/channels/{channelId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id")),
    responses(
        (status = 200, description = "Channel deleted", body = Envelope<Deleted>),
        (status = 403, description = "Insufficient permissions", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<Deleted>, ServiceError> {
    Ok(Reply::ok(
        channels::delete(&state, &actor, id).await?,
        "Channel deleted",
    ))
}

/// Join a public channel.
#[utoipa::path(post, path = "/api/channels/{channelId}/join", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id")),
    responses(
        (status = 200, description = "Joined channel", body = Envelope<Joined>),
        (status = 403, description = "Join denied (channel is not public, or locked)", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
        (status = 409, description = "Already a member", body = ErrorEnvelope),
    ))]
pub async fn join(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<Joined>, ServiceError> {
    Ok(Reply::ok(
        channels::join(&state, &actor, id).await?,
        "Joined channel",
    ))
}

/// Leave a channel; the key rotates.
#[utoipa::path(post, path = "/api/channels/{channelId}/leave", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id")),
    responses(
        (status = 200, description = "Left channel", body = Envelope<Left>),
        (status = 403, description = "Not a channel member", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
    ))]
pub async fn leave(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<Left>, ServiceError> {
    Ok(Reply::ok(
        channels::leave(&state, &actor, id).await?,
        "Left channel",
    ))
}

/// Kick a member ranked below you (KICK_MEMBERS); the key rotates.
#[utoipa::path(post, path = "/api/channels/{channelId}/kick/{memberId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("memberId" = Uuid, Path, description = "Member to kick")),
    responses(
        (status = 200, description = "Member kicked", body = Envelope<Kicked>),
        (status = 403, description = "Missing permission: KICK_MEMBERS, or rank too low", body = ErrorEnvelope),
        (status = 404, description = "Channel not found, or not a member", body = ErrorEnvelope),
    ))]
pub async fn kick(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, member_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Kicked>, ServiceError> {
    Ok(Reply::ok(
        channels::kick(&state, &actor, id, member_id).await?,
        "Member kicked",
    ))
}

/// Create an invite token (CREATE_INVITES).
#[utoipa::path(post, path = "/api/channels/{channelId}/invites", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id")),
    request_body = CreateInvite,
    responses(
        (status = 201, description = "Invite created", body = Envelope<InviteView>),
        (status = 400, description = "maxUses or expiresInMs out of range", body = ErrorEnvelope),
        (status = 403, description = "Missing permission: CREATE_INVITES", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
    ))]
pub async fn create_invite(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    OptionalJson(input): OptionalJson<CreateInvite>,
) -> Result<Reply<InviteView>, ServiceError> {
    Ok(Reply::created(
        channels::create_invite(&state, &actor, id, input).await?,
        "Invite created",
    ))
}

/// Redeem an invite token: the only way into private, secret and invisible channels.
#[utoipa::path(post, path = "/api/channels/{channelId}/invites/{token}/redeem", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("token" = String, Path, description = "Invite token")),
    responses(
        (status = 200, description = "Invite redeemed", body = Envelope<Redeemed>),
        (status = 403, description = "The channel is locked", body = ErrorEnvelope),
        (status = 404, description = "Invite token not found", body = ErrorEnvelope),
        (status = 409, description = "Already a member", body = ErrorEnvelope),
        (status = 410, description = "Invite expired or fully used", body = ErrorEnvelope),
    ))]
pub async fn redeem(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, token)): Path<(Uuid, String)>,
) -> Result<Reply<Redeemed>, ServiceError> {
    Ok(Reply::ok(
        channels::redeem(&state, &actor, id, &token).await?,
        "Invite redeemed",
    ))
}

/// Send a message, encrypted under the channel's current key epoch.
#[utoipa::path(post, path = "/api/channels/{channelId}/messages", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id")),
    request_body = ContentRequest,
    responses(
        (status = 201, description = "Message sent", body = Envelope<MessageView>),
        (status = 400, description = "Missing or invalid content", body = ErrorEnvelope),
        (status = 403, description = "Not a channel member, or muted", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
        (status = 429, description = "Slow mode: retry after Retry-After seconds", body = ErrorEnvelope),
    ))]
pub async fn send(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<ContentRequest>,
) -> Result<Reply<MessageView>, ServiceError> {
    Ok(Reply::created(
        messages::send(&state, &actor, C, id, input).await?,
        "Message sent",
    ))
}

/// Message history, oldest first (`direction=backward` starts at the newest page).
#[utoipa::path(get, path = "/api/channels/{channelId}/messages", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), PageParams),
    responses(
        (status = 200, description = "Messages retrieved", body = Envelope<Page<MessageView>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
        (status = 403, description = "Not a channel member", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
    ))]
pub async fn history(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<MessageView>>, ServiceError> {
    Ok(Reply::ok(
        messages::history(&state, &actor, C, id, &params).await?,
        "Messages retrieved",
    ))
}

/// Full-text search in a channel's messages, most relevant first (members only).
#[utoipa::path(get, path = "/api/channels/{channelId}/messages/search", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), SearchParams),
    responses(
        (status = 200, description = "Search results", body = Envelope<Page<SearchResult>>),
        (status = 400, description = "Missing, blank or over-long query; bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "Authentication required", body = ErrorEnvelope),
        (status = 403, description = "Not a channel member", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
        (status = 503, description = "The search backend does not answer", body = ErrorEnvelope),
    ))]
pub async fn search(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<SearchParams>,
) -> Result<Reply<Page<SearchResult>>, ServiceError> {
    Ok(Reply::ok(
        search::search(&state, &actor, id, &params).await?,
        "Search results",
    ))
}

/// Edit your own message; the previous version joins its edit history.
#[utoipa::path(put, path = "/api/channels/{channelId}/messages/{messageId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("messageId" = Uuid, Path, description = "Message id")),
    request_body = ContentRequest,
    responses(
        (status = 200, description = "Message edited", body = Envelope<MessageView>),
        (status = 400, description = "Missing or invalid content", body = ErrorEnvelope),
        (status = 403, description = "Not the author, or muted", body = ErrorEnvelope),
        (status = 404, description = "Channel or message not found", body = ErrorEnvelope),
    ))]
pub async fn edit(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
    Json(input): Json<ContentRequest>,
) -> Result<Reply<MessageView>, ServiceError> {
    Ok(Reply::ok(
        messages::edit(&state, &actor, C, id, message_id, input).await?,
        "Message edited",
    ))
}

/// Delete a message: your own, or one by a member ranked below you with DELETE_ANY_MESSAGE.
#[utoipa::path(delete, path = "/api/channels/{channelId}/messages/{messageId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("messageId" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Message deleted", body = Envelope<Deleted>),
        (status = 403, description = "Not allowed", body = ErrorEnvelope),
        (status = 404, description = "Channel or message not found", body = ErrorEnvelope),
    ))]
pub async fn delete_message(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Deleted>, ServiceError> {
    Ok(Reply::ok(
        messages::delete(&state, &actor, C, id, message_id).await?,
        "Message deleted",
    ))
}

/// Assign a role (MANAGE_ROLES; the owner may hand over ownership).
#[utoipa::path(put, path = "/api/channels/{channelId}/roles/{memberId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("memberId" = Uuid, Path, description = "Member")),
    request_body = AssignRole,
    responses(
        (status = 200, description = "Role assigned", body = Envelope<RoleAssigned>),
        (status = 400, description = "Missing or unknown role", body = ErrorEnvelope),
        (status = 403, description = "Missing permission: MANAGE_ROLES, or rank too low", body = ErrorEnvelope),
        (status = 404, description = "Channel not found, or not a member", body = ErrorEnvelope),
    ))]
pub async fn assign_role(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, member_id)): Path<(Uuid, Uuid)>,
    Json(input): Json<AssignRole>,
) -> Result<Reply<RoleAssigned>, ServiceError> {
    Ok(Reply::ok(
        contexts::assign_role(&state, &actor, C, id, member_id, input).await?,
        "Role assigned",
    ))
}

/// React to a message.
#[utoipa::path(post, path = "/api/channels/{channelId}/messages/{messageId}/reactions", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("messageId" = Uuid, Path, description = "Message id")),
    request_body = ReactionRequest,
    responses(
        (status = 201, description = "Reaction added", body = Envelope<ReactionView>),
        (status = 400, description = "Missing or invalid emoji", body = ErrorEnvelope),
        (status = 403, description = "Not a channel member, or muted", body = ErrorEnvelope),
        (status = 404, description = "Channel or message not found", body = ErrorEnvelope),
        (status = 409, description = "Same reaction already there", body = ErrorEnvelope),
    ))]
pub async fn react(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
    Json(input): Json<ReactionRequest>,
) -> Result<Reply<ReactionView>, ServiceError> {
    Ok(Reply::created(
        messages::react(&state, &actor, C, id, message_id, input).await?,
        "Reaction added",
    ))
}

/// Remove your reaction.
#[utoipa::path(delete, path = "/api/channels/{channelId}/messages/{messageId}/reactions/{reactionId}", tag = "channels", security(("bearer" = [])),
    params(
        ("channelId" = Uuid, Path, description = "Channel id"),
        ("messageId" = Uuid, Path, description = "Message id"),
        ("reactionId" = Uuid, Path, description = "Reaction id"),
    ),
    responses(
        (status = 200, description = "Reaction removed", body = Envelope<Removed>),
        (status = 403, description = "Not the reaction author", body = ErrorEnvelope),
        (status = 404, description = "Channel, message or reaction not found", body = ErrorEnvelope),
    ))]
pub async fn unreact(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id, reaction_id)): Path<(Uuid, Uuid, Uuid)>,
) -> Result<Reply<Removed>, ServiceError> {
    Ok(Reply::ok(
        messages::unreact(&state, &actor, C, id, message_id, reaction_id).await?,
        "Reaction removed",
    ))
}

/// Pin a message (PIN_MESSAGES).
#[utoipa::path(post, path = "/api/channels/{channelId}/messages/{messageId}/pin", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("messageId" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Message pinned", body = Envelope<Pinned>),
        (status = 403, description = "Insufficient permissions", body = ErrorEnvelope),
        (status = 404, description = "Channel or message not found", body = ErrorEnvelope),
    ))]
pub async fn pin(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Pinned>, ServiceError> {
    Ok(Reply::ok(
        messages::pin(&state, &actor, C, id, message_id).await?,
        "Message pinned",
    ))
}

/// Unpin a message (PIN_MESSAGES).
#[utoipa::path(delete, path = "/api/channels/{channelId}/messages/{messageId}/pin", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("messageId" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Message unpinned", body = Envelope<Unpinned>),
        (status = 403, description = "Insufficient permissions", body = ErrorEnvelope),
        (status = 404, description = "Channel or message not found", body = ErrorEnvelope),
    ))]
pub async fn unpin(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Unpinned>, ServiceError> {
    Ok(Reply::ok(
        messages::unpin(&state, &actor, C, id, message_id).await?,
        "Message unpinned",
    ))
}

/// Mute a member ranked below you (MUTE_MEMBERS).
#[utoipa::path(post, path = "/api/channels/{channelId}/mute/{memberId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("memberId" = Uuid, Path, description = "Member to mute")),
    request_body = MuteRequest,
    responses(
        (status = 200, description = "Member muted", body = Envelope<Muted>),
        (status = 400, description = "Missing or invalid durationMs", body = ErrorEnvelope),
        (status = 403, description = "Missing permission: MUTE_MEMBERS, or rank too low", body = ErrorEnvelope),
        (status = 404, description = "Channel not found, or not a member", body = ErrorEnvelope),
    ))]
pub async fn mute(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, member_id)): Path<(Uuid, Uuid)>,
    Json(input): Json<MuteRequest>,
) -> Result<Reply<Muted>, ServiceError> {
    Ok(Reply::ok(
        contexts::mute(&state, &actor, C, id, member_id, input).await?,
        "Member muted",
    ))
}

/// Lift a mute (MUTE_MEMBERS).
#[utoipa::path(delete, path = "/api/channels/{channelId}/mute/{memberId}", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), ("memberId" = Uuid, Path, description = "Member to unmute")),
    responses(
        (status = 200, description = "Member unmuted", body = Envelope<Unmuted>),
        (status = 403, description = "Missing permission: MUTE_MEMBERS, or rank too low", body = ErrorEnvelope),
        (status = 404, description = "Channel not found, or not a member", body = ErrorEnvelope),
    ))]
pub async fn unmute(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, member_id)): Path<(Uuid, Uuid)>,
) -> Result<Reply<Unmuted>, ServiceError> {
    Ok(Reply::ok(
        contexts::unmute(&state, &actor, C, id, member_id).await?,
        "Member unmuted",
    ))
}

/// The epoch keys you may read, wrapped for your public key (made on first read, then kept).
#[utoipa::path(get, path = "/api/channels/{channelId}/keys", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), PageParams),
    responses(
        (status = 200, description = "Keys listed", body = Envelope<Page<KeyView>>),
        (status = 403, description = "Not a channel member", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
    ))]
pub async fn keys(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<KeyView>>, ServiceError> {
    Ok(Reply::ok(
        contexts::keys(&state, &actor, C, id, &params).await?,
        "Keys listed",
    ))
}

/// The moderation audit log, newest first (owners and admins).
#[utoipa::path(get, path = "/api/channels/{channelId}/audit", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id"), PageParams),
    responses(
        (status = 200, description = "Audit log", body = Envelope<Page<AuditView>>),
        (status = 400, description = "Bad cursor or limit", body = ErrorEnvelope),
        (status = 401, description = "Authentication required", body = ErrorEnvelope),
        (status = 403, description = "Not an owner or admin of this channel", body = ErrorEnvelope),
        (status = 404, description = "Channel not found", body = ErrorEnvelope),
    ))]
pub async fn audit_log(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(params): Query<PageParams>,
) -> Result<Reply<Page<AuditView>>, ServiceError> {
    Ok(Reply::ok(
        audit::list(&state, &actor, C, id, &params).await?,
        "Audit log",
    ))
}

/// Lift a moderation plugin's lock (owners): joins and invite redemptions work again.
#[utoipa::path(delete, path = "/api/channels/{channelId}/lock", tag = "channels", security(("bearer" = [])),
    params(("channelId" = Uuid, Path, description = "Channel id")),
    responses(
        (status = 200, description = "Lock lifted (or none was in force)", body = Envelope<Unlocked>),
        (status = 401, description = "Authentication required", body = ErrorEnvelope),
        (status = 403, description = "Not the owner of this channel", body = ErrorEnvelope),
        (status = 404, description = "Channel not found (or invisible to you)", body = ErrorEnvelope),
    ))]
pub async fn unlock(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<Unlocked>, ServiceError> {
    Ok(Reply::ok(
        moderation::unlock(&state, &actor, C, id).await?,
        "Lock lifted",
    ))
}
