//! The rate limits on REST routes (see [`crate::service::limits`]): [`auth_limit`] per
//! client address on the three sign-up and sign-in routes, [`write_limit`] per member on
//! every other non-GET route. Both run before the handler, so a refused request does
//! nothing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::service::Actor;
use crate::service::limits::client_addr;
use crate::state::AppState;

/// Whether `method` writes (anything but GET, HEAD and OPTIONS).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The client address of a request: see [`client_addr`]. The peer comes from the server's
/// `ConnectInfo` (always there when served by [`crate::server`]).
pub fn request_client(
    state: &AppState,
    connect: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
) -> IpAddr {
    let peer = connect.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    client_addr(peer, headers, &state.config.trusted_proxies)
}

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
