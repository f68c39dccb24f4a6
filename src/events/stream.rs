//! One member's stream of events, shared by the REST WebSocket and GraphQL subscriptions
//! so both deliver by the same rules: replay after a resume point, then live events in
//! `seq` order without repeats, filtered by [`Subscriber`], ending when the connection
//! falls behind or the member's token stops being valid.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};

use super::filter::Subscriber;
use super::{Event, outbox};
use crate::error::ServiceResult;
use crate::service::{Actor, auth};
use crate::state::AppState;

/// How often an open connection checks that its token is still valid.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(2);

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The consumer fell more than the bus's capacity behind; resume from `last`.
    Lagged { last: i64 },
    /// The member's token was revoked or has expired.
    Unauthorized,
    /// The server is shutting down.
    Closed,
}

/// Events for one signed-in member.
pub struct EventStream {
    state: AppState,
    actor: Actor,
    live: broadcast::Receiver<Arc<Event>>,
    subscriber: Subscriber,
    replay: VecDeque<Arc<Event>>,
    last: i64,
    /// `None` where the connection carrying the stream re-checks the token itself (a
    /// `/graphql/ws` connection checks once for all its subscriptions).
    recheck: Option<tokio::time::Interval>,
    /// The newest event at the moment the stream opened.
    pub start_seq: i64,
    /// The resume point was older than the retention window: the client must refetch.
    pub resync_required: bool,
}

impl EventStream {
    /// Opens the stream: subscribes to the bus first, then takes the snapshot, so nothing
    /// falls between the two.
    ///
    /// A negative `resume` is refused (`VALIDATION_ERROR`); one past the newest event
    /// yields `resync_required`, like one older than the retention window.
    pub async fn open(state: &AppState, actor: &Actor, resume: Option<i64>) -> ServiceResult<Self> {
        check_resume(resume)?;
        let live = state.events.bus.subscribe();
        let snapshot = outbox::snapshot(state, actor.member_id, resume).await?;
        let mut recheck = tokio::time::interval(TOKEN_RECHECK);
        recheck.reset();
        Ok(Self {
            state: state.clone(),
            actor: actor.clone(),
            live,
            subscriber: snapshot.subscriber,
            replay: snapshot.replay.into_iter().map(Arc::new).collect(),
            last: snapshot.seq,
            recheck: Some(recheck),
            start_seq: snapshot.seq,
            resync_required: snapshot.resync_required,
        })
    }

    /// Leaves token re-checks to the connection that carries this stream.
    pub fn without_token_recheck(mut self) -> Self {
        self.recheck = None;
        self
    }

    /// The next event the member may see. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Arc<Event>, StreamEnd> {
        while let Some(event) = self.replay.pop_front() {
            if self.subscriber.admit(&event) {
                return Ok(event);
            }
        }
        loop {
            tokio::select! {
                _ = tick(&mut self.recheck) => {
                    if !auth::still_valid(&self.state, &self.actor).await.unwrap_or(true) {
                        return Err(StreamEnd::Unauthorized);
                    }
                }
                received = self.live.recv() => match received {
                    Ok(event) => {
                        if event.seq <= self.last {
                            continue;
                        }
                        self.last = event.seq;
                        if self.subscriber.admit(&event) {
                            return Ok(event);
                        }
                    }
                    Err(RecvError::Lagged(_)) => return Err(StreamEnd::Lagged { last: self.last }),
                    Err(RecvError::Closed) => return Err(StreamEnd::Closed),
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
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
