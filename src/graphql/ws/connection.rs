//! One `/graphql/ws` connection: sign-in, operations, delivery, and the checks of
//! the module above.

use std::collections::HashMap;

use async_graphql::http::{ClientMessage, WebSocketProtocols as Protocol};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::{AbortHandle, Abortable, BoxStream, SelectAll};
use serde_json::{Value, json};

use super::{Close, INIT_WINDOW, close};
use crate::error::ServiceError;
use crate::events::connections::{
    CLOSE_TOO_MANY_CONNECTIONS, ConnectionSlot, TOO_MANY_CONNECTIONS,
};
use crate::events::stream::TOKEN_RECHECK;
use crate::graphql::http::with_codes;
use crate::graphql::{BrightSchema, SnapshotPermits};
use crate::http::CLOSE_TOO_SLOW;
use crate::service::{Actor, auth, presence};
use crate::state::AppState;

/// What the streams of a connection yield, tagged with the operation's id and generation
/// (an id may be reused once its operation ended).
enum Output {
    Item(String, u64, Box<async_graphql::Response>),
    Done(String, u64),
}

pub(super) struct Connection {
    state: AppState,
    schema: BrightSchema,
    protocol: Protocol,
    socket: WebSocket,
    actor: Option<Actor>,
    /// Held while signed in: counts against the member's connection limit.
    slot: Option<ConnectionSlot>,
    /// Counts this socket in `brightchat_websocket_connections` while it is open.
    _open: crate::metrics::OpenSocket,
    /// Running operations: id → (generation, handle that stops it).
    running: HashMap<String, (u64, AbortHandle)>,
    generation: u64,
    streams: SelectAll<BoxStream<'static, Output>>,
    /// Shared by this connection's subscriptions (see [`SnapshotPermits`]).
    snapshots: SnapshotPermits,
    /// The client address, for the auth rate limit on sign-in mutations.
    client: std::net::IpAddr,
}

impl Connection {
    pub(super) fn new(
        state: AppState,
        schema: BrightSchema,
        protocol: Protocol,
        socket: WebSocket,
        client: std::net::IpAddr,
    ) -> Self {
        let open = state.metrics.websocket("graphql");
        Self {
            state,
            schema,
            protocol,
            socket,
            actor: None,
            slot: None,
            _open: open,
            running: HashMap::new(),
            generation: 0,
            streams: SelectAll::new(),
            snapshots: SnapshotPermits::one_at_a_time(),
            client,
        }
    }

    pub(super) async fn run(mut self) {
        let outcome = self.serve().await;
        self.stop_all();
        if let Err((code, reason)) = outcome {
            let frame = CloseFrame {
                code,
                reason: reason.as_ref().into(),
            };
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                self.socket.send(Message::Close(Some(frame))),
            )
            .await;
        }
        if let (Some(actor), Some(_)) = (&self.actor, self.slot.take())
            && let Err(err) = presence::disconnected(&self.state, actor.member_id).await
        {
            tracing::warn!(error = %err, "presence update failed");
        }
    }

    /// Serves until the client leaves (`Ok`) or the server closes (`Err`).
    async fn serve(&mut self) -> Result<(), Close> {
        let init_deadline = tokio::time::sleep(INIT_WINDOW);
        tokio::pin!(init_deadline);
        let mut recheck = tokio::time::interval(TOKEN_RECHECK);
        recheck.reset();
        // Sign-outs seen by this node: the connection's own closes it at once.
        let mut revocations = self.state.tokens.revocations();
        let mut token_hash = [0u8; 32];
        loop {
            if let Some(actor) = &self.actor {
                token_hash = actor.token_hash;
            }
            tokio::select! {
                () = &mut init_deadline, if self.actor.is_none() => {
                    return Err((close::INIT_TIMEOUT, "Connection initialisation timeout".into()));
                }
                _ = recheck.tick(), if self.actor.is_some() => self.check_token().await?,
                () = auth::maybe_revoked(&mut revocations, &token_hash), if self.actor.is_some() => {
                    self.check_token().await?;
                }
                Some(output) = self.streams.next(), if !self.streams.is_empty() => {
                    self.deliver(output).await?;
                }
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => self.on_message(text.as_bytes()).await?,
                    Some(Ok(Message::Binary(bytes))) => self.on_message(&bytes).await?,
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        // The same answers as `/api/events`: 1009 over the size limit, 1007
                        // for bad UTF-8, 1002 for other protocol errors.
                        return match crate::http::close_for_read_error(&err) {
                            Some((code, reason)) => Err((code, reason.into())),
                            None => Ok(()),
                        };
                    }
                },
            }
        }
    }

    async fn on_message(&mut self, bytes: &[u8]) -> Result<(), Close> {
        let Ok(message) = serde_json::from_slice::<ClientMessage>(bytes) else {
            return Err((close::BAD_MESSAGE, "Invalid message received".into()));
        };
        match message {
            ClientMessage::ConnectionInit { payload } => self.init(payload).await,
            ClientMessage::Start { id, payload } => self.start(id, payload).await,
            ClientMessage::Stop { id } => {
                if let Some((_, handle)) = self.running.remove(&id) {
                    handle.abort();
                    if self.protocol == Protocol::SubscriptionsTransportWS {
                        self.send(json!({"type": "complete", "id": id})).await?;
                    }
                }
                Ok(())
            }
            ClientMessage::ConnectionTerminate => Err((1000, "Normal closure".into())),
            ClientMessage::Ping { .. } => self.send(json!({"type": "pong"})).await,
            ClientMessage::Pong { .. } => Ok(()),
        }
    }

    async fn init(&mut self, payload: Option<Value>) -> Result<(), Close> {
        if self.actor.is_some() {
            return Err((
                close::TOO_MANY_INITS,
                "Too many initialisation requests".into(),
            ));
        }
        let actor = match payload.as_ref().and_then(token_in) {
            Some(token) => auth::authenticate(&self.state, &token).await.ok(),
            None => None,
        };
        let Some(actor) = actor else {
            self.connection_error("Forbidden: a valid token is required")
                .await?;
            return Err((close::FORBIDDEN, "Forbidden".into()));
        };
        let limit = self.state.config.ws_max_connections_per_member;
        let Some(slot) = self.state.connections.acquire(actor.member_id, limit) else {
            self.connection_error(TOO_MANY_CONNECTIONS).await?;
            return Err((CLOSE_TOO_MANY_CONNECTIONS, TOO_MANY_CONNECTIONS.into()));
        };
        if let Err(err) = presence::connected(&self.state, actor.member_id).await {
            tracing::warn!(error = %err, "presence update failed");
        }
        self.actor = Some(actor);
        self.slot = Some(slot);
        self.send(json!({"type": "connection_ack"})).await
    }

    /// The legacy protocol announces a refused sign-in before the close.
    async fn connection_error(&mut self, message: &str) -> Result<(), Close> {
        if self.protocol == Protocol::SubscriptionsTransportWS {
            self.send(json!({"type": "connection_error", "payload": {"message": message}}))
                .await?;
        }
        Ok(())
    }

    async fn start(&mut self, id: String, request: async_graphql::Request) -> Result<(), Close> {
        let Some(actor) = self.actor.clone() else {
            return Err((close::UNAUTHORIZED, "Unauthorized".into()));
        };
        if self.running.contains_key(&id) {
            return Err((
                close::DUPLICATE_ID,
                format!("Subscriber for {id} already exists").into(),
            ));
        }
        // Cheap (the token cache, which sign-out clears): a revoked token runs nothing more.
        if !auth::still_valid(&self.state, &actor).await.unwrap_or(true) {
            let err = ServiceError::unauthorized("The token was revoked or has expired");
            self.operation_error(&id, err.code(), &err.public_message())
                .await?;
            return Err(revoked());
        }
        let max = self.state.config.graphql_max_subscriptions;
        if self.running.len() >= max {
            let message = format!("This connection already runs {max} operations");
            return self
                .operation_error(&id, "TOO_MANY_SUBSCRIPTIONS", &message)
                .await;
        }
        if let Err(err) = presence::active(&self.state, actor.member_id).await {
            tracing::warn!(error = %err, "presence update failed");
        }
        self.generation += 1;
        let generation = self.generation;
        let (handle, registration) = AbortHandle::new_pair();
        self.running.insert(id.clone(), (generation, handle));
        let item_id = id.clone();
        let responses = self
            .schema
            .execute_stream(
                request
                    .data(actor)
                    .data(self.snapshots.clone())
                    .data(crate::graphql::limits::ClientAddr(self.client)),
            )
            .map(move |response| {
                Output::Item(item_id.clone(), generation, Box::new(with_codes(response)))
            });
        let stream =
            Abortable::new(responses, registration).chain(futures_util::stream::once(async move {
                Output::Done(id, generation)
            }));
        self.streams.push(stream.boxed());
        Ok(())
    }

    /// Sends what a stream yielded, unless its operation was stopped meanwhile.
    async fn deliver(&mut self, output: Output) -> Result<(), Close> {
        let current = |running: &HashMap<String, (u64, AbortHandle)>, id: &str, generation| {
            running.get(id).is_some_and(|(g, _)| *g == generation)
        };
        match output {
            Output::Item(id, generation, response) => {
                if current(&self.running, &id, generation) {
                    let kind = match self.protocol {
                        Protocol::GraphQLWS => "next",
                        Protocol::SubscriptionsTransportWS => "data",
                    };
                    self.send(json!({"type": kind, "id": id, "payload": response}))
                        .await?;
                }
            }
            Output::Done(id, generation) => {
                if current(&self.running, &id, generation) {
                    self.running.remove(&id);
                    self.send(json!({"type": "complete", "id": id})).await?;
                }
            }
        }
        Ok(())
    }

    /// The once-per-connection token check.
    async fn check_token(&mut self) -> Result<(), Close> {
        let Some(actor) = &self.actor else {
            return Ok(());
        };
        match auth::still_valid(&self.state, actor).await {
            Ok(false) => Err(revoked()),
            _ => Ok(()),
        }
    }

    /// An `error` message for one operation; the connection stays open.
    async fn operation_error(&mut self, id: &str, code: &str, message: &str) -> Result<(), Close> {
        let error = json!({"message": message, "extensions": {"code": code}});
        let payload = match self.protocol {
            Protocol::GraphQLWS => json!([error]),
            Protocol::SubscriptionsTransportWS => error,
        };
        self.send(json!({"type": "error", "id": id, "payload": payload}))
            .await
    }

    async fn send(&mut self, message: Value) -> Result<(), Close> {
        let text = Message::Text(message.to_string().into());
        match tokio::time::timeout(self.state.config.ws_send_timeout, self.socket.send(text)).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err((1000, "Connection closed".into())),
            Err(_) => Err((
                CLOSE_TOO_SLOW,
                "Too slow: a message could not be delivered in time".into(),
            )),
        }
    }

    fn stop_all(&mut self) {
        for (_, (_, handle)) in self.running.drain() {
            handle.abort();
        }
        self.streams = SelectAll::new();
    }
}

fn revoked() -> Close {
    (
        close::FORBIDDEN,
        "The token was revoked or has expired".into(),
    )
}

/// The token in a `connection_init` payload: `{"token": …}` or
/// `{"Authorization": "Bearer …"}` (either case of the key).
fn token_in(payload: &Value) -> Option<String> {
    if let Some(token) = payload.get("token").and_then(Value::as_str) {
        return Some(token.to_owned());
    }
    ["Authorization", "authorization"].iter().find_map(|key| {
        payload
            .get(*key)
            .and_then(Value::as_str)
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
    })
}
