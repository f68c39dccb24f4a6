//! `GET /api/events`: the WebSocket for REST clients (CONTRACT.md "Real time").
//!
//! Sign-in by `?token=`, an `Authorization` header, or a first frame
//! `{"type":"auth","token":…}` within 5 seconds (else close code 4001). After sign-in the
//! server sends `{"type":"ready","memberId","seq"}`, then, with `?resume=<seq>`, every
//! missed event the member was entitled to (or `{"type":"resync_required"}` when the gap is
//! older than the retention window or longer than the replay cap), then live events. A connection that falls too far
//! behind, or whose frames stall, is told so and closed with code 4008. A client message
//! over [`MAX_CLIENT_MESSAGE`] closes the socket with 1009 (Message Too Big) and a reason.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ServiceError;
use crate::events::ContextType;
use crate::events::connections::{CLOSE_TOO_MANY_CONNECTIONS, TOO_MANY_CONNECTIONS};
use crate::events::stream::{EventStream, StreamEnd};
use crate::service::presence::{self, SetPresence};
use crate::service::{Actor, auth, typing};
use crate::state::AppState;

/// Close code: not signed in.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
pub use crate::http::{
    CLOSE_TOO_BIG, CLOSE_TOO_SLOW, MAX_CLIENT_MESSAGE, TOO_BIG_REASON, close_for_read_error,
};
/// How long an unauthenticated connection may wait before its auth frame.
const AUTH_WINDOW: Duration = Duration::from_secs(5);

/// Query parameters of `GET /api/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// A bearer token (instead of the header or an auth frame).
    pub token: Option<String>,
    /// The `seq` of the last event received, to get what was missed.
    pub resume: Option<i64>,
}

/// Upgrade to the event WebSocket.
#[utoipa::path(get, path = "/api/events", tag = "events", operation_id = "subscribe",
    params(EventsParams),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket request, or bad parameters", body = crate::error::ErrorEnvelope),
        (status = 401, description = "The token given in the query or header is not valid", body = crate::error::ErrorEnvelope),
    ))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return ServiceError::validation("invalid query: resume must be a whole number")
            .into_response();
    };
    if let Err(err) = crate::events::stream::check_resume(params.resume) {
        return err.into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(_) => {
            return ServiceError::validation("this route needs a WebSocket upgrade")
                .into_response();
        }
    };
    let token = params
        .token
        .clone()
        .or_else(|| super::auth::bearer_token(&headers));
    let actor = match token {
        Some(token) => match auth::authenticate(&state, &token).await {
            Ok(actor) => Some(actor),
            Err(err) => return err.into_response(),
        },
        None => None,
    };
    // Small buffers: an idle connection should cost little memory. Frames are flushed
    // one by one.
    upgrade
        .read_buffer_size(crate::events::connections::READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| session(state, socket, actor, params.resume))
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

async fn session(state: AppState, socket: WebSocket, actor: Option<Actor>, resume: Option<i64>) {
    let (mut sink, mut stream) = socket.split();
    let actor = match actor {
        Some(actor) => actor,
        None => match first_frame_auth(&state, &mut stream).await {
            Ok(actor) => actor,
            Err((code, reason)) => {
                close(&mut sink, code, reason).await;
                return;
            }
        },
    };
    let _open = state.metrics.websocket("events");
    let member = actor.member_id;
    let limit = state.config.ws_max_connections_per_member;
    let Some(_slot) = state.connections.acquire(member, limit) else {
        close(&mut sink, CLOSE_TOO_MANY_CONNECTIONS, TOO_MANY_CONNECTIONS).await;
        return;
    };
    if let Err(err) = presence::connected(&state, member).await {
        tracing::warn!(error = %err, "presence update failed");
    }
    let outcome = serve(&state, &actor, &mut sink, &mut stream, resume).await;
    if let Err((code, reason)) = outcome {
        close(&mut sink, code, reason).await;
    }
    if let Err(err) = presence::disconnected(&state, member).await {
        tracing::warn!(error = %err, "presence update failed");
    }
}

/// Waits for `{"type":"auth","token":…}`; otherwise the close frame to send.
async fn first_frame_auth(
    state: &AppState,
    stream: &mut Stream,
) -> Result<Actor, (u16, &'static str)> {
    const REQUIRED: (u16, &str) = (CLOSE_UNAUTHORIZED, "authentication required");
    let frame = match tokio::time::timeout(AUTH_WINDOW, stream.next()).await {
        Ok(Some(Ok(frame))) => frame,
        Ok(Some(Err(err))) => return Err(close_for_read_error(&err).unwrap_or(REQUIRED)),
        Ok(None) | Err(_) => return Err(REQUIRED),
    };
    let Message::Text(text) = frame else {
        return Err(REQUIRED);
    };
    let value: Value = serde_json::from_str(text.as_str()).map_err(|_| REQUIRED)?;
    if value["type"] != "auth" {
        return Err(REQUIRED);
    }
    let token = value["token"].as_str().ok_or(REQUIRED)?;
    auth::authenticate(state, token).await.map_err(|_| REQUIRED)
}

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}

/// Sends one frame, or gives up when the client does not take it in time.
async fn send(
    state: &AppState,
    sink: &mut Sink,
    text: impl Into<Utf8Bytes>,
) -> Result<(), (u16, &'static str)> {
    match tokio::time::timeout(
        state.config.ws_send_timeout,
        sink.send(Message::Text(text.into())),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err((1000, "connection closed")),
        Err(_) => Err((
            CLOSE_TOO_SLOW,
            "too slow: a frame could not be delivered in time",
        )),
    }
}

async fn serve(
    state: &AppState,
    actor: &Actor,
    sink: &mut Sink,
    stream: &mut Stream,
    resume: Option<i64>,
) -> Result<(), (u16, &'static str)> {
    let member = actor.member_id;
    let mut events = EventStream::open(state, actor, resume)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "cannot open an event subscription");
            (1011, "internal error")
        })?;
    let ready = json!({"type": "ready", "memberId": member, "seq": events.start_seq});
    send(state, sink, ready.to_string()).await?;
    if events.resync_required {
        let resync = json!({"type": "resync_required", "seq": events.start_seq});
        send(state, sink, resync.to_string()).await?;
    }
    loop {
        tokio::select! {
            next = events.next() => match next {
                // The shared frame: no copy per socket.
                Ok(event) => send(state, sink, event.frame_for(member)).await?,
                Err(StreamEnd::Lagged { last }) => {
                    tracing::info!(%member, "dropping a connection that fell behind");
                    let notice = json!({"type": "error", "error": {"code": "TOO_SLOW", "message": "The connection fell behind; reconnect with ?resume=<seq>", "seq": last}});
                    let _ = send(state, sink, notice.to_string()).await;
                    return Err((CLOSE_TOO_SLOW, "too slow: fell behind the event stream"));
                }
                Err(StreamEnd::Unauthorized) => return Err(REVOKED),
                Err(StreamEnd::Closed) => return Err((1001, "server shutting down")),
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = client_frame(state, actor, text.as_str()).await? {
                        send(state, sink, reply.to_string()).await?;
                    }
                }
                Some(Err(err)) => return close_for_read_error(&err).map_or(Ok(()), Err),
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextFrame {
    context_type: ContextType,
    context_id: Uuid,
}

/// The close owed to a socket whose token was revoked (sign-out) or has expired.
const REVOKED: (u16, &str) = (CLOSE_UNAUTHORIZED, "the token was revoked or has expired");

/// A client frame on `/api/events`, parsed (no I/O: the fuzz target drives this).
#[derive(Debug)]
pub enum ClientFrame {
    /// `{"type":"ping"}`.
    Ping,
    /// `{"type":"typing_start"|"typing_stop","contextType","contextId"}`.
    Typing {
        start: bool,
        context_type: ContextType,
        context_id: Uuid,
    },
    /// `{"type":"presence","status"}`.
    Presence(SetPresence),
    /// `{"type":"auth",…}` on a socket already signed in: ignored.
    Auth,
    /// Anything else: answered with this error frame. `limited` when it claimed to be a
    /// typing or presence frame, which spend the write limit valid or not.
    Invalid { limited: bool, error: ServiceError },
}

impl ClientFrame {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Self {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => {
                return Self::Invalid {
                    limited: false,
                    error: ServiceError::validation("frames must be JSON objects"),
                };
            }
        };
        let invalid = |kind: &str, err: serde_json::Error| Self::Invalid {
            limited: true,
            error: ServiceError::validation(format!("invalid {kind} frame: {err}")),
        };
        match value["type"].as_str() {
            Some("ping") => Self::Ping,
            Some(kind @ ("typing_start" | "typing_stop")) => {
                match serde_json::from_value::<ContextFrame>(value.clone()) {
                    Ok(frame) => Self::Typing {
                        start: kind == "typing_start",
                        context_type: frame.context_type,
                        context_id: frame.context_id,
                    },
                    Err(err) => invalid(kind, err),
                }
            }
            Some("presence") => match serde_json::from_value::<SetPresence>(value.clone()) {
                Ok(input) => Self::Presence(input),
                Err(err) => invalid("presence", err),
            },
            Some("auth") => Self::Auth,
            _ => Self::Invalid {
                limited: false,
                error: ServiceError::validation(
                    "unknown frame type; expected ping, typing_start, typing_stop or presence",
                ),
            },
        }
    }

    /// Whether the frame spends the member's write limit (typing and presence frames).
    pub fn spends_write_limit(&self) -> bool {
        matches!(
            self,
            Self::Typing { .. } | Self::Presence(_) | Self::Invalid { limited: true, .. }
        )
    }
}

/// Handles one client frame; returns the reply, if any. Typing and presence frames first
/// re-check the token (a signed-out token acts no more, even before the stream's periodic
/// check closes the socket: `Err` with close code 4001), then spend the member's write
/// limit; over it they get a `RATE_LIMITED` error frame with `retryAfter` (seconds) and the
/// socket stays open. Pings are free.
async fn client_frame(
    state: &AppState,
    actor: &Actor,
    text: &str,
) -> Result<Option<Value>, (u16, &'static str)> {
    let frame = ClientFrame::parse(text);
    if frame.spends_write_limit() {
        match auth::still_valid(state, actor).await {
            Ok(true) => {}
            Ok(false) => return Err(REVOKED),
            Err(err) => return Ok(Some(error_frame(&err))),
        }
    }
    if let Err(err) = presence::active(state, actor.member_id).await {
        tracing::warn!(error = %err, "presence update failed");
    }
    if frame.spends_write_limit() {
        let key = actor.member_id.to_string();
        let cluster = state.cluster.as_deref();
        if let Err(err) = state.limits.write.check(cluster, &key, 1).await {
            return Ok(Some(error_frame(&err)));
        }
    }
    let result = match frame {
        ClientFrame::Ping => return Ok(Some(json!({"type": "pong"}))),
        ClientFrame::Typing {
            start,
            context_type,
            context_id,
        } => typing::typing(state, actor, start, context_type, context_id).await,
        ClientFrame::Presence(input) => presence::set(state, actor, input).await.map(|_| ()),
        ClientFrame::Auth => Ok(()),
        ClientFrame::Invalid { error, .. } => Err(error),
    };
    Ok(result.err().map(|err| error_frame(&err)))
}

fn error_frame(err: &ServiceError) -> Value {
    if let ServiceError::Internal(detail) = err {
        tracing::error!(%detail, "internal error on the event socket");
    }
    let mut frame =
        json!({"type": "error", "error": {"code": err.code(), "message": err.public_message()}});
    if let ServiceError::RateLimited {
        retry_after_secs, ..
    } = err
    {
        frame["error"]["retryAfter"] = json!(retry_after_secs);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::ClientFrame;

    #[test]
    fn client_frames_parse_without_io() {
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            ClientFrame::Ping
        ));
        let typing = ClientFrame::parse(
            r#"{"type":"typing_stop","contextType":"group","contextId":"01a232b7-ae11-7719-b7c4-2bb9dce01d03"}"#,
        );
        assert!(matches!(typing, ClientFrame::Typing { start: false, .. }));
        assert!(typing.spends_write_limit());
        // A broken typing frame still spends the limit; broken JSON and pings do not.
        let broken = ClientFrame::parse(r#"{"type":"typing_start","contextId":"x"}"#);
        assert!(matches!(broken, ClientFrame::Invalid { limited: true, .. }));
        for text in [
            "",
            "[",
            "null",
            "{\"type\":7}",
            "\u{0}",
            r#"{"type":"ping"}"#,
        ] {
            let frame = ClientFrame::parse(text);
            assert!(!frame.spends_write_limit(), "{text:?}");
        }
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"presence","status":"dnd"}"#),
            ClientFrame::Presence(_)
        ));
    }
}
