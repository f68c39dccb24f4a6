//! Presence across nodes, kept in Redis (after Revolt's per-session model):
//!
//! - `{prefix}:presence:{member}`, a hash: `n:{node}` = the member's live connections on
//!   that node, `q:{node}` = `1` while all of them have been quiet for `idle_after`,
//!   `chosen` = the status the member chose (`dnd`, `idle`, `offline`; `online` clears
//!   it), `published` = the last status announced, `ver` = its version.
//! - `{prefix}:node:{node}:members`, a set: the members with connections on that node.
//! - `{prefix}:node:{node}`, the node's heartbeat, with a TTL of `BRIGHTCHAT_REDIS_NODE_TTL_SECS`
//!   refreshed every third of it; `{prefix}:nodes`, the set of nodes ever registered.
//!
//! Every change runs one Lua script ([`APPLY`]) that updates the hash and returns the
//! member's effective status and a version only when it differs from the last one
//! announced. Redis runs scripts one at a time, so across nodes each change is announced
//! once, and the versions order the announcements: every node drops a
//! `presence_changed` older than one it has already delivered.
//!
//! The effective status: `offline` without connections anywhere; else the chosen status if
//! any; else `idle` when every node holding a connection has marked it quiet (no activity
//! on any of its connections there for `idle_after`); else `online`.
//!
//! A node that dies stops refreshing its heartbeat. Every live node sweeps every third of
//! the TTL: a node without heartbeat has its connections dropped (by the same script,
//! which does nothing if the heartbeat came back) and the resulting changes announced.
//! So a dead node's members show offline within TTL + TTL/3 of its last heartbeat. A node
//! that finds its own heartbeat gone (it was swept, or Redis restarted) registers its
//! connections again, as it does after every (re)subscription.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Cluster, timed};
use crate::error::ServiceResult;
use crate::service::presence::{PresenceStatus, presence_event};
use crate::state::{AppState, WeakState};

/// Updates one member's presence; see the module docs. KEYS: the member's hash, the
/// node's member set, the node's heartbeat. ARGV: node, member, count (`` = unchanged),
/// quiet (``, `0`, `1`), chosen (``, `none`, a status), mode (`live` or `sweep`).
const APPLY: &str = r"
local h, set, beat = KEYS[1], KEYS[2], KEYS[3]
local node, member, count, quiet, chosen, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if mode == 'sweep' and redis.call('EXISTS', beat) == 1 then return {} end
if count ~= '' then
  if tonumber(count) > 0 then
    redis.call('HSET', h, 'n:' .. node, count)
    redis.call('SADD', set, member)
  else
    redis.call('HDEL', h, 'n:' .. node, 'q:' .. node)
    redis.call('SREM', set, member)
  end
end
if quiet ~= '' and redis.call('HEXISTS', h, 'n:' .. node) == 1 then
  redis.call('HSET', h, 'q:' .. node, quiet)
end
if chosen == 'none' then
  redis.call('HDEL', h, 'chosen')
elseif chosen ~= '' then
  redis.call('HSET', h, 'chosen', chosen)
end
local f = redis.call('HGETALL', h)
local map = {}
for i = 1, #f, 2 do map[f[i]] = f[i + 1] end
local total, allquiet = 0, true
for k, v in pairs(map) do
  if string.sub(k, 1, 2) == 'n:' then
    total = total + tonumber(v)
    if map['q:' .. string.sub(k, 3)] ~= '1' then allquiet = false end
  end
end
local status = 'offline'
if total > 0 then
  if map['chosen'] then status = map['chosen']
  elseif allquiet then status = 'idle'
  else status = 'online' end
end
local settled = total == 0 and not map['chosen']
if status == (map['published'] or 'offline') then
  if settled then redis.call('DEL', h) end
  return {}
end
local t = redis.call('TIME')
local ver = tonumber(t[1]) * 1000000 + tonumber(t[2])
local prev = tonumber(map['ver'] or '0')
if ver <= prev then ver = prev + 1 end
local v = string.format('%.0f', ver)
if settled then
  redis.call('DEL', h)
else
  redis.call('HSET', h, 'published', status, 'ver', v)
end
return {status, v}
";

/// Drops a dead node's bookkeeping unless its heartbeat came back. KEYS: heartbeat, member
/// set, node set. ARGV: node.
const FORGET_NODE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
";

/// Locks that keep one member's updates from this node in order (by member).
const STRIPES: usize = 64;
/// Presence versions remembered, at most (then forgotten all at once).
const VERSIONS: usize = 100_000;

/// This node's connections per member, and the newest presence version seen per member.
pub(crate) struct Local {
    sessions: Mutex<HashMap<Uuid, Session>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    versions: Mutex<HashMap<Uuid, u64>>,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            sessions: Mutex::default(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            versions: Mutex::default(),
        }
    }
}

#[derive(Clone, Copy)]
struct Session {
    count: u32,
    last_active: Instant,
    quiet: bool,
}

impl Local {
    fn stripe(&self, member: Uuid) -> &tokio::sync::Mutex<()> {
        &self.stripes[(member.as_u128() % STRIPES as u128) as usize]
    }

    /// Changes the member's local session and returns it (`None` once no connection is
    /// left, which also forgets it).
    fn update(&self, member: Uuid, change: impl FnOnce(&mut Session)) -> Session {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.entry(member).or_insert(Session {
            count: 0,
            last_active: Instant::now(),
            quiet: false,
        });
        change(session);
        let copy = *session;
        if copy.count == 0 {
            sessions.remove(&member);
        }
        copy
    }

    pub(crate) fn fresh(&self, member: Uuid, version: u64) -> bool {
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        if versions.get(&member).is_some_and(|seen| *seen >= version) {
            return false;
        }
        if versions.len() >= VERSIONS {
            versions.clear();
        }
        versions.insert(member, version);
        true
    }
}

/// One change to a member's hash.
#[derive(Default)]
struct Change {
    count: Option<u32>,
    quiet: Option<bool>,
    chosen: Option<Option<PresenceStatus>>,
}

fn status_name(status: PresenceStatus) -> &'static str {
    match status {
        PresenceStatus::Online => "online",
        PresenceStatus::Idle => "idle",
        PresenceStatus::Dnd => "dnd",
        PresenceStatus::Offline => "offline",
    }
}

fn parse_status(name: &str) -> Option<PresenceStatus> {
    Some(match name {
        "online" => PresenceStatus::Online,
        "idle" => PresenceStatus::Idle,
        "dnd" => PresenceStatus::Dnd,
        "offline" => PresenceStatus::Offline,
        _ => return None,
    })
}

impl Cluster {
    fn beat_key(&self, node: &str) -> String {
        self.key(&format!("node:{node}"))
    }

    fn members_key(&self, node: &str) -> String {
        self.key(&format!("node:{node}:members"))
    }

    /// Runs [`APPLY`] for `node`; the announced status and version when it changed.
    async fn apply(
        &self,
        node: &str,
        member: Uuid,
        change: Change,
        sweep: bool,
    ) -> Option<(PresenceStatus, u64)> {
        let script = redis::Script::new(APPLY);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.key(&format!("presence:{member}")))
            .key(self.members_key(node))
            .key(self.beat_key(node))
            .arg(node)
            .arg(member.to_string())
            .arg(change.count.map(|c| c.to_string()).unwrap_or_default())
            .arg(match change.quiet {
                None => "",
                Some(true) => "1",
                Some(false) => "0",
            })
            .arg(match change.chosen {
                None => "",
                Some(None) => "none",
                Some(Some(status)) => status_name(status),
            })
            .arg(if sweep { "sweep" } else { "live" });
        let mut conn = self.conn();
        match timed(invocation.invoke_async::<Vec<String>>(&mut conn)).await {
            Ok(reply) => match reply.as_slice() {
                [status, version] => Some((parse_status(status)?, version.parse().ok()?)),
                _ => None,
            },
            Err(err) => {
                self.log_failure("updating presence", &err);
                None
            }
        }
    }
}

/// Announces a change decided by [`APPLY`].
async fn announce(
    state: &AppState,
    member: Uuid,
    decided: Option<(PresenceStatus, u64)>,
) -> ServiceResult<()> {
    if let Some((status, version)) = decided {
        let event = presence_event(state, member, status).await?;
        state.events.publish_versioned(event, Some(version));
    }
    Ok(())
}

/// Applies `local` to this node's session and `change` (with the session's count and
/// quietness) to Redis, in order with this node's other updates of the member.
async fn update(
    state: &AppState,
    cluster: &Cluster,
    member: Uuid,
    local: impl FnOnce(&mut Session) -> bool,
    mut change: Change,
) -> ServiceResult<()> {
    let decided = {
        let _order = cluster.presence.stripe(member).lock().await;
        let mut send = true;
        let session = cluster.presence.update(member, |s| send = local(s));
        if !send && change.chosen.is_none() {
            return Ok(());
        }
        if send {
            change.count = Some(session.count);
            change.quiet = (session.count > 0).then_some(session.quiet);
        }
        cluster.apply(&cluster.node, member, change, false).await
    };
    announce(state, member, decided).await
}

/// A connection of the member opened on this node.
pub async fn connected(state: &AppState, cluster: &Cluster, member: Uuid) -> ServiceResult<()> {
    let local = |s: &mut Session| {
        s.count += 1;
        s.last_active = Instant::now();
        s.quiet = false;
        true
    };
    update(state, cluster, member, local, Change::default()).await
}

/// A connection of the member closed on this node.
pub async fn disconnected(state: &AppState, cluster: &Cluster, member: Uuid) -> ServiceResult<()> {
    let local = |s: &mut Session| {
        s.count = s.count.saturating_sub(1);
        true
    };
    update(state, cluster, member, local, Change::default()).await
}

/// The member did something on a connection here (Redis hears of it only when it was
/// quiet).
pub async fn active(state: &AppState, cluster: &Cluster, member: Uuid) -> ServiceResult<()> {
    let local = |s: &mut Session| {
        s.last_active = Instant::now();
        std::mem::replace(&mut s.quiet, false) && s.count > 0
    };
    update(state, cluster, member, local, Change::default()).await
}

/// The member chose a status (`online` clears the choice).
pub async fn choose(
    state: &AppState,
    cluster: &Cluster,
    member: Uuid,
    status: PresenceStatus,
) -> ServiceResult<()> {
    let local = |s: &mut Session| {
        s.last_active = Instant::now();
        std::mem::replace(&mut s.quiet, false) && s.count > 0
    };
    let change = Change {
        chosen: Some((status != PresenceStatus::Online).then_some(status)),
        ..Change::default()
    };
    update(state, cluster, member, local, change).await
}

/// Marks this node's connections of members quiet for `idle_after` (run periodically).
pub async fn sweep_idle(state: &AppState, cluster: &Cluster) -> ServiceResult<()> {
    let idle_after = state.config.idle_after;
    let quiet: Vec<Uuid> = {
        let sessions = cluster
            .presence
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        sessions
            .iter()
            .filter(|(_, s)| !s.quiet && s.last_active.elapsed() >= idle_after)
            .map(|(member, _)| *member)
            .collect()
    };
    for member in quiet {
        let local = |s: &mut Session| {
            let now_quiet = !s.quiet && s.count > 0 && s.last_active.elapsed() >= idle_after;
            if now_quiet {
                s.quiet = true;
            }
            now_quiet
        };
        update(state, cluster, member, local, Change::default()).await?;
    }
    Ok(())
}

/// Refreshes this node's heartbeat and writes every local connection to Redis again
/// (after a reconnection, or when this node was taken for dead).
pub(super) async fn register_all(state: &AppState, cluster: &Cluster) {
    if !beat(cluster, false).await {
        return;
    }
    let members: Vec<Uuid> = {
        let sessions = cluster
            .presence
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        sessions.keys().copied().collect()
    };
    for member in members {
        let resend = |s: &mut Session| s.count > 0;
        if let Err(err) = update(state, cluster, member, resend, Change::default()).await {
            tracing::warn!(error = %err, "presence update failed");
        }
    }
}

/// Sets the heartbeat (only if it still exists, with `only_refresh`); whether it is set.
async fn beat(cluster: &Cluster, only_refresh: bool) -> bool {
    let ttl = cluster.node_ttl.as_millis() as u64;
    let mut conn = cluster.conn();
    let mut set = redis::cmd("SET");
    set.arg(cluster.beat_key(&cluster.node))
        .arg(1)
        .arg("PX")
        .arg(ttl);
    if only_refresh {
        set.arg("XX");
        return match timed(set.query_async::<Option<String>>(&mut conn)).await {
            Ok(reply) => reply.is_some(),
            Err(err) => {
                cluster.log_failure("refreshing the heartbeat", &err);
                false
            }
        };
    }
    let registered = timed(
        redis::pipe()
            .add_command(set)
            .ignore()
            .cmd("SADD")
            .arg(cluster.key("nodes"))
            .arg(&cluster.node)
            .ignore()
            .query_async::<()>(&mut conn),
    )
    .await;
    match registered {
        Ok(()) => true,
        Err(err) => {
            cluster.log_failure("registering this node", &err);
            false
        }
    }
}

/// Heartbeats and the dead-node sweep, every third of the node TTL.
pub(super) fn spawn_upkeep(cluster: Arc<Cluster>, weak: WeakState) {
    let every = (cluster.node_ttl / 3).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else {
                break;
            };
            if cluster.halted() {
                continue;
            }
            if !beat(&cluster, true).await {
                // Expired (this node was swept, or Redis lost it): register again.
                register_all(&state, &cluster).await;
            }
            sweep_dead(&state, &cluster).await;
        }
    });
}

/// Drops the connections of nodes whose heartbeat expired and announces the changes.
async fn sweep_dead(state: &AppState, cluster: &Cluster) {
    let mut conn = cluster.conn();
    let nodes = match timed(
        redis::cmd("SMEMBERS")
            .arg(cluster.key("nodes"))
            .query_async::<Vec<String>>(&mut conn),
    )
    .await
    {
        Ok(nodes) => nodes,
        Err(err) => {
            cluster.log_failure("listing nodes", &err);
            return;
        }
    };
    for node in nodes.into_iter().filter(|n| *n != cluster.node) {
        let alive = timed(
            redis::cmd("EXISTS")
                .arg(cluster.beat_key(&node))
                .query_async::<i64>(&mut conn),
        )
        .await;
        if !matches!(alive, Ok(0)) {
            continue;
        }
        let members = timed(
            redis::cmd("SMEMBERS")
                .arg(cluster.members_key(&node))
                .query_async::<Vec<String>>(&mut conn),
        )
        .await
        .unwrap_or_default();
        tracing::info!(
            node,
            members = members.len(),
            "Redis: a node stopped; dropping its connections"
        );
        for member in members.iter().filter_map(|m| Uuid::parse_str(m).ok()) {
            let change = Change {
                count: Some(0),
                ..Change::default()
            };
            let decided = cluster.apply(&node, member, change, true).await;
            if let Err(err) = announce(state, member, decided).await {
                tracing::warn!(error = %err, "presence update failed");
            }
        }
        let forgot = timed(
            redis::Script::new(FORGET_NODE)
                .key(cluster.beat_key(&node))
                .key(cluster.members_key(&node))
                .key(cluster.key("nodes"))
                .arg(&node)
                .invoke_async::<i64>(&mut conn),
        )
        .await;
        if let Err(err) = forgot {
            cluster.log_failure("forgetting a stopped node", &err);
        }
    }
}
