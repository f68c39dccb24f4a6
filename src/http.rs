//! What the REST API and the GraphQL endpoint share, so neither imports the other: the
//! body and frame limits, bearer-token extraction, the client address of a request (for
//! the rate limits) and how a socket closes on a message it cannot read.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, header};

use crate::service::limits::client_addr;
use crate::state::AppState;

/// Largest request body accepted (CONTRACT.md: over 64 KiB is 413); also the largest
/// GraphQL document.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest client message (and frame) in bytes on a socket: `/api/events` and
/// `/graphql/ws` alike. A client sending more is closed with [`CLOSE_TOO_BIG`].
pub const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Close code for a client message over [`MAX_CLIENT_MESSAGE`] (RFC 6455 1009, Message Too
/// Big).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The close reason sent with [`CLOSE_TOO_BIG`].
pub const TOO_BIG_REASON: &str = "message too big: at most 16384 bytes";
/// Close code: too slow to keep up.
pub const CLOSE_TOO_SLOW: u16 = 4008;

/// The token of an `Authorization: Bearer …` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
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

/// The close frame owed to a client whose message could not be read, if one can still be
/// sent: 1009 for a message or frame over [`MAX_CLIENT_MESSAGE`], 1007 for a text frame
/// that is not UTF-8, 1002 for other protocol violations. `None` when the connection is
/// gone (nothing can be sent).
///
/// The size limit is enforced by tungstenite as soon as a frame header announces too many
/// bytes, so the server never buffers an oversized frame.
pub fn close_for_read_error(err: &axum::Error) -> Option<(u16, &'static str)> {
    let source = std::error::Error::source(err)?;
    match source.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(_) => Some((CLOSE_TOO_BIG, TOO_BIG_REASON)),
        tungstenite::Error::Utf8(_) => Some((1007, "a text frame is not valid UTF-8")),
        tungstenite::Error::Protocol(_) => Some((1002, "WebSocket protocol error")),
        _ => None,
    }
}
