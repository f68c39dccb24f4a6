//! The rate limits on REST routes (see [`crate::service::limits`]): [`auth_limit`] per
//! client address on the three sign-up and sign-in routes, [`write_limit`] per member on
//! every other non-GET route. Both run before the handler, so a refused request does
//! nothing.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::service::Actor;
use crate::state::AppState;

/// Whether `method` writes (anything but GET, HEAD and OPTIONS).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub use crate::http::request_client;

/// `BRIGHTCHAT_RATE_AUTH`, per client address.
pub async fn auth_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.limits.auth.enabled() && is_write(request.method()) {
        let client = request_client(
            &state,
            request.extensions().get::<ConnectInfo<SocketAddr>>(),
            request.headers(),
        );
        let cluster = state.cluster.as_deref();
        if let Err(err) = state
            .limits
            .auth
            .check(cluster, &client.to_string(), 1)
            .await
        {
            return err.into_response();
        }
    }
    next.run(request).await
}

/// `BRIGHTCHAT_RATE_WRITE`, per member; runs after sign-in, which put the [`Actor`] in the
/// request.
pub async fn write_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.limits.write.enabled()
        && is_write(request.method())
        && let Some(actor) = request.extensions().get::<Actor>()
    {
        let cluster = state.cluster.as_deref();
        let key = actor.member_id.to_string();
        if let Err(err) = state.limits.write.check(cluster, &key, 1).await {
            return err.into_response();
        }
    }
    next.run(request).await
}
