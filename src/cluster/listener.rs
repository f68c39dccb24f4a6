//! The subscription to the other nodes, on its own connection: reconnects with backoff,
//! and marks the node [`Cluster::healthy`] only while subscribed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;

use super::{Cluster, Envelope, presence, revoke};
use crate::state::{AppState, WeakState};

/// The first pause before subscribing again; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a quiet subscription checks that the server is still there.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// How long a ping of a quiet subscription may take before it counts as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Marks the subscription down when the listener ends, however it ends (a panic or an
/// abort included), so the token cache is not trusted while nobody listens.
struct Unhealthy(Arc<Cluster>);

impl Drop for Unhealthy {
    fn drop(&mut self) {
        self.0.healthy.store(false, Ordering::SeqCst);
    }
}

/// Starts the listener under the supervisor (see [`crate::supervise`]).
pub(super) fn spawn(cluster: Arc<Cluster>, state: &AppState) {
    crate::supervise::supervise(state, "cluster listener", move |weak| {
        listen(cluster.clone(), weak)
    });
}

async fn listen(cluster: Arc<Cluster>, weak: WeakState) {
    let _unhealthy = Unhealthy(cluster.clone());
    {
        let channels = [
            cluster.key("wake"),
            cluster.key("ephemeral"),
            cluster.key("revoke"),
        ];
        let mut backoff = MIN_BACKOFF;
        let mut was_healthy = false;
        loop {
            if weak.upgrade().is_none() {
                break;
            }
            match subscribe(&cluster, &channels).await {
                Ok(pubsub) => {
                    backoff = MIN_BACKOFF;
                    if was_healthy {
                        tracing::info!("Redis: subscribed again");
                    }
                    was_healthy = true;
                    cluster.healthy.store(true, Ordering::SeqCst);
                    if let Some(state) = weak.upgrade() {
                        resubscribed(&state, &cluster);
                    }
                    let (mut sink, mut messages) = pubsub.split();
                    loop {
                        tokio::select! {
                            message = messages.next() => {
                                let Some(message) = message else { break };
                                let Some(state) = weak.upgrade() else { return };
                                handle(&state, &cluster, &channels, &message);
                            }
                            () = tokio::time::sleep(IDLE_CHECK) => {
                                if weak.upgrade().is_none() {
                                    return;
                                }
                                // Quiet for a while: make sure the connection is alive (a
                                // peer that vanished without a reset is otherwise noticed
                                // only when the kernel gives up on it).
                                let alive = tokio::time::timeout(
                                    PING_TIMEOUT,
                                    sink.ping::<redis::Value>(),
                                )
                                .await;
                                if !matches!(alive, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    cluster.healthy.store(false, Ordering::SeqCst);
                    tracing::warn!(
                        "Redis: the subscription was lost; delivery across nodes falls back to polling"
                    );
                }
                Err(err) => cluster.log_failure("subscribing", &err),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        cluster.healthy.store(false, Ordering::SeqCst);
    }
}

async fn subscribe(cluster: &Cluster, channels: &[String]) -> Result<redis::aio::PubSub, String> {
    let connect = async {
        let mut pubsub = cluster.client.get_async_pubsub().await?;
        pubsub.subscribe(channels).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// What may have been missed while unsubscribed is dropped or fetched again.
fn resubscribed(state: &AppState, cluster: &Arc<Cluster>) {
    state.tokens.clear();
    state.gates.clear();
    state.events.wake_local();
    let state = state.clone();
    let cluster = cluster.clone();
    tokio::spawn(async move {
        presence::register_all(&state, &cluster).await;
    });
}

fn handle(state: &AppState, cluster: &Arc<Cluster>, channels: &[String], message: &redis::Msg) {
    let channel = message.get_channel_name();
    let Ok(payload) = message.get_payload::<String>() else {
        return;
    };
    if channel == channels[0] {
        if payload != cluster.node {
            state.events.wake_local();
        }
    } else if channel == channels[1] {
        let Ok(envelope) = serde_json::from_str::<Envelope>(&payload) else {
            tracing::warn!("Redis: an ephemeral event does not parse");
            return;
        };
        if envelope.node == cluster.node {
            return;
        }
        if let Some(version) = envelope.version
            && !cluster.fresh_presence(envelope.event.context_id, version)
        {
            return;
        }
        state.events.bus.publish(Arc::new(envelope.event));
    } else if channel == channels[2] {
        revoke::received(state, cluster, &payload);
    }
}
