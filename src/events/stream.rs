//! One member's stream of events, shared by the REST WebSocket and GraphQL subscriptions
//! so both deliver by the same rules: replay after a resume point, then live events in
//! `seq` order without repeats, as the node's [`router`](super::router) routes them to this
//! connection, ending when the connection falls behind or the member's token stops being
//! valid.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::router::{Delivery, Registration};
use super::{Event, outbox};
use crate::error::ServiceResult;
use crate::service::{Actor, auth};
use crate::state::AppState;

/// How often an open connection checks that its token is still valid.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(2);

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The consumer's queue overflowed (it fell `BRIGHTCHAT_WS_BUFFER` entries behind);
    /// resume from `last`.
    Lagged { last: i64 },
    /// The member's token was revoked or has expired.
    Unauthorized,
    /// The server is shutting down.
    Closed,
}

/// One event as this connection delivers it.
pub struct Delivered {
    pub event: Arc<Event>,
    /// The event's own `seq`, or for an ephemeral event the newest durable `seq` this
    /// connection had delivered (so `seq` never goes backwards for a client).
    pub seq: i64,
}

impl Delivered {
    /// The wire frame for `member`.
    pub fn frame_for(&self, member: Uuid) -> Utf8Bytes {
        self.event.frame_at(member, self.seq)
    }
}

/// Events for one signed-in member.
pub struct EventStream {
    state: AppState,
    actor: Actor,
    registration: Registration,
    live: mpsc::Receiver<Delivery>,
    /// Live events received in one queue entry, not yet handed out.
    batch: VecDeque<Arc<Event>>,
    /// Replayed events read and admitted, not yet handed out.
    replay: VecDeque<Event>,
    /// The rest of the replay, read a page at a time as the stream drains.
    pending: Option<outbox::Replay>,
    last: i64,
    /// `None` where the connection carrying the stream re-checks the token itself (a
    /// `/graphql/ws` connection checks once for all its subscriptions).
    recheck: Option<tokio::time::Interval>,
    /// Sign-outs seen by this node, so a revoked token ends the stream at once rather than
    /// at the next periodic check; `None` with `recheck`.
    revocations: Option<auth::Revocations>,
    /// The newest event at the moment the stream opened.
    pub start_seq: i64,
    /// The resume point was older than the retention window, further back than the replay
    /// cap, or past the newest event: the client must refetch.
    pub resync_required: bool,
}

impl EventStream {
    /// Opens the stream: registers with the router first, then takes the snapshot, then
    /// starts live delivery from the snapshot's view, so nothing falls between the two.
    ///
    /// A negative `resume` is refused (`VALIDATION_ERROR`); one past the newest event
    /// yields `resync_required`, like one older than the retention window or further back
    /// than [`outbox::REPLAY_LIMIT`] events. The replay itself is read a page at a time by
    /// [`EventStream::next`].
    pub async fn open(state: &AppState, actor: &Actor, resume: Option<i64>) -> ServiceResult<Self> {
        check_resume(resume)?;
        let (registration, live) = state.events.router.register(actor.member_id);
        let snapshot = outbox::snapshot(state, actor.member_id, resume).await?;
        state
            .events
            .router
            .activate(&registration, snapshot.subscriber, snapshot.seq);
        let mut recheck = tokio::time::interval(TOKEN_RECHECK);
        recheck.reset();
        Ok(Self {
            state: state.clone(),
            actor: actor.clone(),
            registration,
            live,
            batch: VecDeque::new(),
            replay: VecDeque::new(),
            pending: snapshot.replay,
            last: snapshot.seq,
            recheck: Some(recheck),
            revocations: Some(state.tokens.revocations()),
            start_seq: snapshot.seq,
            resync_required: snapshot.resync_required,
        })
    }

    /// Leaves token re-checks to the connection that carries this stream.
    pub fn without_token_recheck(mut self) -> Self {
        self.recheck = None;
        self.revocations = None;
        self
    }

    /// The next event the member may see. Cancel-safe: dropping the future loses nothing.
    ///
    /// The replay comes first, read a page at a time; should it fail (the database, or
    /// pruning overtaking it), the stream ends as `Lagged` at the replay's position, so
    /// the client resumes from there (and is told to resync if events are gone).
    pub async fn next(&mut self) -> Result<Delivered, StreamEnd> {
        loop {
            if let Some(event) = self.replay.pop_front() {
                let seq = event.seq;
                return Ok(Delivered {
                    event: Arc::new(event),
                    seq,
                });
            }
            let Some(pending) = self.pending.as_mut() else {
                break;
            };
            match pending.next_page(&self.state.db.read).await {
                Ok(Some(page)) => self.replay.extend(page),
                Ok(None) => {
                    return Err(StreamEnd::Lagged {
                        last: pending.position(),
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "a replay cannot read the outbox");
                    return Err(StreamEnd::Lagged {
                        last: pending.position(),
                    });
                }
            }
            if pending.finished() {
                self.pending = None;
            }
        }
        loop {
            if let Some(event) = self.batch.pop_front() {
                if event.ephemeral {
                    return Ok(Delivered {
                        event,
                        seq: self.last,
                    });
                }
                if event.seq <= self.last {
                    continue;
                }
                self.last = event.seq;
                let seq = event.seq;
                return Ok(Delivered { event, seq });
            }
            if self.registration.lagged() {
                return Err(StreamEnd::Lagged { last: self.last });
            }
            tokio::select! {
                _ = tick(&mut self.recheck) => {
                    if !auth::still_valid(&self.state, &self.actor).await.unwrap_or(true) {
                        return Err(StreamEnd::Unauthorized);
                    }
                }
                () = revoked(&mut self.revocations, &self.actor.token_hash) => {
                    if !auth::still_valid(&self.state, &self.actor).await.unwrap_or(true) {
                        return Err(StreamEnd::Unauthorized);
                    }
                }
                received = self.live.recv() => match received {
                    Some(Delivery::One(event)) => self.batch.push_back(event),
                    Some(Delivery::Many(events)) => self.batch.extend(events),
                    None if self.registration.lagged() => {
                        return Err(StreamEnd::Lagged { last: self.last });
                    }
                    None => return Err(StreamEnd::Closed),
                },
            }
        }
    }
}

/// Refuses a negative resume point: `seq` starts at 1, so `0` means "from the start".
pub fn check_resume(resume: Option<i64>) -> ServiceResult<()> {
    if resume.is_some_and(|from| from < 0) {
        return Err(crate::error::ServiceError::validation(
            "resume must be a seq of 0 or more",
        ));
    }
    Ok(())
}

/// The next tick of `interval`, or never.
/// [`auth::maybe_revoked`] where the stream watches sign-outs itself; never otherwise.
async fn revoked(revocations: &mut Option<auth::Revocations>, hash: &[u8; 32]) {
    match revocations {
        Some(revocations) => auth::maybe_revoked(revocations, hash).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
