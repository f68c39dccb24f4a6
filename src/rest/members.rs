//! Member routes: registration, lookup, blocking, presence.

use axum::extract::State;
use uuid::Uuid;

use super::envelope::{Envelope, Reply};
use super::extract::{Json, Path};
use crate::error::{ErrorEnvelope, ServiceError};
use crate::service::Actor;
use crate::service::members::{
    self, Blocked, MemberView, RegisterMember, Unblocked, UpdateProfile,
};
use crate::service::presence::{self, PresenceView, SetPresence};
use crate::state::AppState;

/// Register a member with a secp256k1 public key.
#[utoipa::path(post, path = "/api/members", tag = "members",
    request_body = RegisterMember,
    responses(
        (status = 201, description = "Member registered", body = Envelope<MemberView>),
        (status = 400, description = "Invalid name or key", body = ErrorEnvelope),
        (status = 403, description = "Registration is closed, or a moderation plugin refused the name (`details.plugin`)", body = ErrorEnvelope),
        (status = 409, description = "Public key already registered", body = ErrorEnvelope),
    ))]
pub async fn register(
    State(state): State<AppState>,
    Json(input): Json<RegisterMember>,
) -> Result<Reply<MemberView>, ServiceError> {
    Ok(Reply::created(
        members::register(&state, input).await?,
        "Member registered",
    ))
}

/// The signed-in member.
#[utoipa::path(get, path = "/api/members/me", tag = "members",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in member", body = Envelope<MemberView>),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
    ))]
pub async fn me(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Reply<MemberView>, ServiceError> {
    Ok(Reply::ok(
        members::me(&state, &actor).await?,
        "Member retrieved",
    ))
}

/// Change the signed-in member's display name.
#[utoipa::path(patch, path = "/api/members/me", tag = "members",
    security(("bearer" = [])),
    request_body = UpdateProfile,
    responses(
        (status = 200, description = "Display name changed", body = Envelope<MemberView>),
        (status = 400, description = "Invalid display name (or one a moderation plugin made invalid)", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
        (status = 403, description = "Refused by a moderation plugin (`details.plugin`)", body = ErrorEnvelope),
    ))]
pub async fn update_me(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<UpdateProfile>,
) -> Result<Reply<MemberView>, ServiceError> {
    Ok(Reply::ok(
        members::update_profile(&state, &actor, input).await?,
        "Display name changed",
    ))
}

/// A member by id.
#[utoipa::path(get, path = "/api/members/{id}", tag = "members",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Member id")),
    responses(
        (status = 200, description = "The member", body = Envelope<MemberView>),
        (status = 400, description = "Malformed id", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
        (status = 404, description = "No such member", body = ErrorEnvelope),
    ))]
pub async fn get(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<MemberView>, ServiceError> {
    Ok(Reply::ok(
        members::get(&state, &actor, id).await?,
        "Member retrieved",
    ))
}

/// Block a member: it can no longer send you direct messages.
#[utoipa::path(post, path = "/api/members/{id}/block", tag = "members",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Member to block")),
    responses(
        (status = 200, description = "Blocked", body = Envelope<Blocked>),
        (status = 400, description = "Malformed id, or yourself", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
        (status = 404, description = "No such member", body = ErrorEnvelope),
    ))]
pub async fn block(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<Blocked>, ServiceError> {
    Ok(Reply::ok(
        members::block(&state, &actor, id).await?,
        "Member blocked",
    ))
}

/// Lift a block.
#[utoipa::path(delete, path = "/api/members/{id}/block", tag = "members",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Member to unblock")),
    responses(
        (status = 200, description = "Unblocked", body = Envelope<Unblocked>),
        (status = 400, description = "Malformed id", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
        (status = 404, description = "No such member", body = ErrorEnvelope),
    ))]
pub async fn unblock(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<Reply<Unblocked>, ServiceError> {
    Ok(Reply::ok(
        members::unblock(&state, &actor, id).await?,
        "Member unblocked",
    ))
}

/// Set your presence status.
#[utoipa::path(put, path = "/api/presence", tag = "members",
    security(("bearer" = [])),
    request_body = SetPresence,
    responses(
        (status = 200, description = "Status set", body = Envelope<PresenceView>),
        (status = 400, description = "Unknown status", body = ErrorEnvelope),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
    ))]
pub async fn set_presence(
    State(state): State<AppState>,
    actor: Actor,
    Json(input): Json<SetPresence>,
) -> Result<Reply<PresenceView>, ServiceError> {
    Ok(Reply::ok(
        presence::set(&state, &actor, input).await?,
        "Presence updated",
    ))
}
