//! `/graphql/ws`: our own driver of `graphql-transport-ws` and the legacy `graphql-ws`
//! (subscriptions-transport-ws), in place of async-graphql's, which polls every stream on
//! every wake, has no limits, silently replaces a reused id and closes with 1002/1011.
//!
//! Rules (issue 9, items 1, 9, 12, 13):
//! - Sign-in by the `connection_init` payload, `{"token"}` or `{"Authorization":"Bearer …"}`,
//!   within [`INIT_WINDOW`] (else 4408). A bad token closes with 4403, a second
//!   `connection_init` with 4429, an operation before `connection_ack` with 4401, a reused
//!   running id with 4409 (`Subscriber for <id> already exists`), an unreadable message
//!   with 4400, a frame over [`MAX_CLIENT_MESSAGE`] with 1009. The legacy protocol gets the
//!   same codes (and a `connection_error` before a refused sign-in).
//! - A member holds at most `BRIGHTCHAT_WS_MAX_CONNECTIONS_PER_MEMBER` sockets across this
//!   route and `/api/events` (over it: close 1008); a connection runs at most
//!   `BRIGHTCHAT_GRAPHQL_MAX_SUBSCRIPTIONS` operations at once (over it: an `error` message
//!   for that id with code `TOO_MANY_SUBSCRIPTIONS`; the connection stays).
//! - The token is re-checked once per connection every [`TOKEN_RECHECK`], not per
//!   subscription, and before every operation; a revoked or expired token closes with 4403.
//! - A signed-in connection counts for presence, as one on `/api/events` does.
//!
//! Streams live in one `SelectAll`, which polls only the streams that were woken
//! ([`connection`]).

use std::str::FromStr;

use async_graphql::http::WebSocketProtocols as Protocol;
use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, header};
use axum::response::Response;

use super::BrightSchema;
use super::http::refuse;
use crate::error::ServiceError;
use crate::http::MAX_CLIENT_MESSAGE;
use crate::state::AppState;

/// How long a connection may take to send `connection_init`.
pub const INIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// graphql-transport-ws close codes.
pub mod close {
    /// An unreadable or unknown message.
    pub const BAD_MESSAGE: u16 = 4400;
    /// An operation before `connection_ack`.
    pub const UNAUTHORIZED: u16 = 4401;
    /// Sign-in refused, or the token was revoked or expired since.
    pub const FORBIDDEN: u16 = 4403;
    /// No `connection_init` within [`super::INIT_WINDOW`].
    pub const INIT_TIMEOUT: u16 = 4408;
    /// A running operation's id was reused.
    pub const DUPLICATE_ID: u16 = 4409;
    /// A second `connection_init`.
    pub const TOO_MANY_INITS: u16 = 4429;
}

/// Why the server closes: a code and a reason.
type Close = (u16, std::borrow::Cow<'static, str>);

mod connection;

/// `GET /graphql/ws`.
pub async fn subscriptions(
    State(state): State<AppState>,
    Extension(schema): Extension<BrightSchema>,
    connect: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let client = crate::http::request_client(&state, connect.as_deref(), &headers);
    let Ok(upgrade) = upgrade else {
        return refuse(&ServiceError::validation(
            "This route needs a WebSocket upgrade",
        ));
    };
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| Protocol::from_str(p.trim()).ok())
        });
    let Some(protocol) = protocol else {
        return refuse(&ServiceError::validation(
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        ));
    };
    upgrade
        .protocols([protocol.sec_websocket_protocol()])
        .read_buffer_size(crate::events::connections::READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            connection::Connection::new(state, schema, protocol, socket, client).run()
        })
}
