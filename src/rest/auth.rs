//! Sign-in routes and the middleware that turns a bearer token into an [`Actor`].

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::envelope::{Envelope, Reply};
use super::extract::Json;
use crate::error::{ErrorEnvelope, ServiceError};
use crate::service::Actor;
use crate::service::auth::{
    self, ChallengeRequest, ChallengeView, LoginRequest, Revoked, TokenView,
};
use crate::state::AppState;

/// Resolves `Authorization: Bearer <token>` once per request and hands the [`Actor`] to
/// the handler; anything else is a 401.
pub async fn require_auth(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = bearer_token(request.headers());
    let Some(token) = token else {
        return ServiceError::unauthorized("Authentication required").into_response();
    };
    match auth::authenticate(&state, &token).await {
        Ok(actor) => {
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

pub use crate::http::bearer_token;

/// Issue a sign-in challenge.
#[utoipa::path(post, path = "/api/auth/challenge", tag = "auth",
    request_body = ChallengeRequest,
    responses(
        (status = 200, description = "Challenge issued (also for unknown members)", body = Envelope<ChallengeView>),
        (status = 400, description = "Malformed request", body = ErrorEnvelope),
    ))]
pub async fn challenge(
    State(state): State<AppState>,
    Json(input): Json<ChallengeRequest>,
) -> Result<Reply<ChallengeView>, ServiceError> {
    Ok(Reply::ok(
        auth::challenge(&state, input).await?,
        "Challenge issued",
    ))
}

/// Exchange a signed challenge for a bearer token.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = Envelope<TokenView>),
        (status = 400, description = "Malformed request", body = ErrorEnvelope),
        (status = 401, description = "Sign-in failed", body = ErrorEnvelope),
    ))]
pub async fn login(
    State(state): State<AppState>,
    Json(input): Json<LoginRequest>,
) -> Result<Reply<TokenView>, ServiceError> {
    Ok(Reply::ok(auth::login(&state, input).await?, "Signed in"))
}

/// Revoke the token used for this request.
#[utoipa::path(delete, path = "/api/auth/token", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Token revoked", body = Envelope<Revoked>),
        (status = 401, description = "Not authenticated", body = ErrorEnvelope),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    actor: Actor,
) -> Result<Reply<Revoked>, ServiceError> {
    Ok(Reply::ok(auth::logout(&state, &actor).await?, "Signed out"))
}
