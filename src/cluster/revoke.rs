//! Sign-out across nodes: the revoking node publishes the token's hash; every subscribed
//! node (itself included) evicts it from its cache and counts itself on a short-lived
//! acknowledgement key. The revoking node waits until the count reaches the number of
//! receivers `PUBLISH` reported, for [`ACK_WAIT`] at most, then answers anyway: a node
//! that did not acknowledge in time has its subscription down, and such a node trusts no
//! cached token (see [`super::Cluster::healthy`]).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Cluster, timed};
use crate::state::AppState;

/// The longest a sign-out waits for the other nodes.
pub const ACK_WAIT: Duration = Duration::from_millis(250);
/// How long an acknowledgement key lives.
const ACK_TTL_MS: u64 = 10_000;

#[derive(Serialize, Deserialize)]
struct Revocation {
    node: String,
    /// SHA-256 of the token, hex.
    hash: String,
    /// The acknowledgement key's id.
    ack: String,
}

impl Cluster {
    /// Tells every node to forget the token and waits (bounded) until they have.
    pub async fn revoke(&self, hash: &[u8; 32]) {
        if tokio::time::timeout(ACK_WAIT, self.revoke_and_wait(hash))
            .await
            .is_err()
        {
            tracing::warn!("Redis: not every node acknowledged a sign-out in time");
        }
    }

    async fn revoke_and_wait(&self, hash: &[u8; 32]) {
        let ack = Uuid::new_v4().simple().to_string();
        let message = Revocation {
            node: self.node.clone(),
            hash: hex::encode(hash),
            ack: ack.clone(),
        };
        let Ok(text) = serde_json::to_string(&message) else {
            return;
        };
        let mut conn = self.conn();
        let receivers = match timed(
            redis::cmd("PUBLISH")
                .arg(self.key("revoke"))
                .arg(text)
                .query_async::<i64>(&mut conn),
        )
        .await
        {
            Ok(n) => n,
            Err(err) => {
                self.log_failure("publishing a sign-out", &err);
                return;
            }
        };
        let key = self.key(&format!("ack:{ack}"));
        loop {
            let count = timed(
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<i64>>(&mut conn),
            )
            .await;
            match count {
                Ok(count) if count.unwrap_or(0) >= receivers => return,
                Ok(_) => {}
                Err(err) => {
                    self.log_failure("waiting for sign-out acknowledgements", &err);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A node signed a token out: forget it and acknowledge.
pub(super) fn received(state: &AppState, cluster: &Arc<Cluster>, payload: &str) {
    let Ok(message) = serde_json::from_str::<Revocation>(payload) else {
        tracing::warn!("Redis: a sign-out message does not parse");
        return;
    };
    let Some(hash) = hex::decode(&message.hash)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
    else {
        return;
    };
    state.tokens.evict(&hash);
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let key = cluster.key(&format!("ack:{}", message.ack));
        let mut conn = cluster.conn();
        let acked = timed(
            redis::pipe()
                .cmd("INCR")
                .arg(&key)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ACK_TTL_MS)
                .ignore()
                .query_async::<()>(&mut conn),
        )
        .await;
        if let Err(err) = acked {
            cluster.log_failure("acknowledging a sign-out", &err);
        }
    });
}
