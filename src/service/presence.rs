//! Presence (CONTRACT.md "Real time"): online on a member's first connection, offline
//! after its last closes, idle after a quiet period; a status set by the member (`dnd`,
//! `idle`, `offline`) sticks until the member changes it, across reconnections.
//!
//! Tracked per node in memory on a single node; with Redis, across nodes in Redis (see
//! [`crate::cluster::presence`]), where the same rules hold for the member's connections
//! on every node. Changes are published as `communication:presence_changed`
//! to the member and everyone sharing a group or channel with it. The event is ephemeral:
//! it goes straight on the bus, addressed by the member's contexts
//! ([`crate::events::Audience::Sharing`]); the router resolves the recipients from its
//! index, and gathers changes for a short window (see [`crate::events::router`]).
//!
//! Ordering: a change only marks the member's entry; the event is then decided and
//! published under the presence lock, and shows the status *at that moment*, not at the
//! change. So when a socket closes and another opens at once, whichever event is published
//! last shows the real status; an event whose status equals the last one published is
//! skipped. The bus and the router keep publication order, so the last event a peer
//! receives shows the real status.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use entity::context_member;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Actor;
use crate::cluster::presence as cluster;
use crate::error::ServiceResult;
use crate::events::{Event, EventType};
use crate::state::AppState;

/// A member's status.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Idle,
    Dnd,
    Offline,
}

#[derive(Debug)]
struct Entry {
    connections: u32,
    status: PresenceStatus,
    /// Set by the member; overrides the automatic online/idle.
    chosen: Option<PresenceStatus>,
    last_active: Instant,
    /// The status of the last event published for the member (decided under the presence
    /// lock, see the module docs).
    published: PresenceStatus,
}

impl Entry {
    /// Nothing left to remember: offline, nothing chosen, offline as last published.
    fn settled(&self) -> bool {
        self.connections == 0
            && self.chosen.is_none()
            && self.status == PresenceStatus::Offline
            && self.published == PresenceStatus::Offline
    }
}

/// Statuses by member, on this node.
#[derive(Default)]
pub struct Presence {
    members: Mutex<HashMap<Uuid, Entry>>,
}

impl Presence {
    /// Applies `change` to the member's entry and returns whether the status changed.
    fn update(&self, member: Uuid, change: impl FnOnce(&mut Entry)) -> bool {
        let mut members = self
            .members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = members.entry(member).or_insert_with(|| Entry {
            connections: 0,
            status: PresenceStatus::Offline,
            chosen: None,
            last_active: Instant::now(),
            published: PresenceStatus::Offline,
        });
        let before = entry.status;
        change(entry);
        entry.status != before
    }

    /// Calls `publish` with the status to publish now, if it differs from the last one
    /// published, and marks it published: all under the lock, so publications follow the
    /// order of the decisions.
    fn publish_unpublished(&self, member: Uuid, publish: impl FnOnce(PresenceStatus)) {
        let mut members = self
            .members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = members.get_mut(&member)
            && entry.status != entry.published
        {
            entry.published = entry.status;
            publish(entry.status);
        }
    }

    /// The member's current status.
    pub fn get(&self, member: Uuid) -> PresenceStatus {
        let members = self
            .members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        members
            .get(&member)
            .map_or(PresenceStatus::Offline, |e| e.status)
    }

    fn connected(&self, member: Uuid) -> bool {
        self.update(member, |e| {
            e.connections += 1;
            e.last_active = Instant::now();
            e.status = e.chosen.unwrap_or(PresenceStatus::Online);
        })
    }

    fn disconnected(&self, member: Uuid) -> bool {
        self.update(member, |e| {
            e.connections = e.connections.saturating_sub(1);
            if e.connections == 0 {
                e.status = PresenceStatus::Offline;
            }
        })
    }

    fn active(&self, member: Uuid) -> bool {
        self.update(member, |e| {
            e.last_active = Instant::now();
            if e.chosen.is_none() && e.connections > 0 && e.status == PresenceStatus::Idle {
                e.status = PresenceStatus::Online;
            }
        })
    }

    fn choose(&self, member: Uuid, status: PresenceStatus) -> bool {
        self.update(member, |e| {
            e.last_active = Instant::now();
            e.chosen = (status != PresenceStatus::Online).then_some(status);
            e.status = status;
        })
    }

    /// Members connected but quiet for `idle_after` who now show idle.
    fn sweep(&self, idle_after: Duration) -> Vec<Uuid> {
        let mut members = self
            .members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut idle = Vec::new();
        for (member, entry) in members.iter_mut() {
            if entry.connections > 0
                && entry.chosen.is_none()
                && entry.status == PresenceStatus::Online
                && entry.last_active.elapsed() >= idle_after
            {
                entry.status = PresenceStatus::Idle;
                idle.push(*member);
            }
        }
        members.retain(|_, e| !e.settled());
        idle
    }
}

/// `PUT /api/presence` body and client frame.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SetPresence {
    pub status: PresenceStatus,
}

/// The status as set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PresenceView {
    pub status: PresenceStatus,
}

/// `{memberId, status}`, the data of `presence_changed`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PresenceData {
    member_id: Uuid,
    status: PresenceStatus,
}

/// The member's own groups and channels (one indexed lookup): a presence event is
/// addressed by them, and each node's router knows who belongs to each.
async fn member_contexts(state: &AppState, member: Uuid) -> ServiceResult<Vec<Uuid>> {
    Ok(context_member::Entity::find()
        .select_only()
        .column(context_member::Column::ContextId)
        .filter(context_member::Column::MemberId.eq(member))
        .into_tuple::<Uuid>()
        .all(&state.db.read)
        .await?)
}

/// Publishes the member's current status, if it differs from the last one published, to
/// it and to everyone sharing a context with it (see the module docs for the ordering).
async fn publish(state: &AppState, member: Uuid) -> ServiceResult<()> {
    let contexts = member_contexts(state, member).await?;
    state.presence.publish_unpublished(member, |status| {
        state.events.publish_ephemeral(Event::for_sharing(
            EventType::PresenceChanged,
            member,
            contexts,
            PresenceData {
                member_id: member,
                status,
            },
        ));
    });
    Ok(())
}

/// The `presence_changed` event announcing `status` to the member and everyone sharing a
/// group or channel with it.
pub(crate) async fn presence_event(
    state: &AppState,
    member: Uuid,
    status: PresenceStatus,
) -> ServiceResult<Event> {
    let contexts = member_contexts(state, member).await?;
    Ok(Event::for_sharing(
        EventType::PresenceChanged,
        member,
        contexts,
        PresenceData {
            member_id: member,
            status,
        },
    ))
}

async fn publish_if(state: &AppState, member: Uuid, changed: bool) -> ServiceResult<()> {
    if changed {
        publish(state, member).await
    } else {
        Ok(())
    }
}

/// Sets the actor's status (REST and the WebSocket `presence` frame).
pub async fn set(
    state: &AppState,
    actor: &Actor,
    input: SetPresence,
) -> ServiceResult<PresenceView> {
    if let Some(cluster) = &state.cluster {
        cluster::choose(state, cluster, actor.member_id, input.status).await?;
        return Ok(PresenceView {
            status: input.status,
        });
    }
    let changed = state.presence.choose(actor.member_id, input.status);
    publish_if(state, actor.member_id, changed).await?;
    Ok(PresenceView {
        status: input.status,
    })
}

/// A connection of the member opened.
pub async fn connected(state: &AppState, member: Uuid) -> ServiceResult<()> {
    if let Some(cluster) = &state.cluster {
        return cluster::connected(state, cluster, member).await;
    }
    let changed = state.presence.connected(member);
    publish_if(state, member, changed).await
}

/// A connection of the member closed.
pub async fn disconnected(state: &AppState, member: Uuid) -> ServiceResult<()> {
    if let Some(cluster) = &state.cluster {
        return cluster::disconnected(state, cluster, member).await;
    }
    let changed = state.presence.disconnected(member);
    publish_if(state, member, changed).await
}

/// The member did something on a connection.
pub async fn active(state: &AppState, member: Uuid) -> ServiceResult<()> {
    if let Some(cluster) = &state.cluster {
        return cluster::active(state, cluster, member).await;
    }
    let changed = state.presence.active(member);
    publish_if(state, member, changed).await
}

/// Marks quiet members idle and publishes it (run periodically).
pub async fn sweep_idle(state: &AppState) -> ServiceResult<()> {
    if let Some(cluster) = &state.cluster {
        return cluster::sweep_idle(state, cluster).await;
    }
    for member in state.presence.sweep(state.config.idle_after) {
        publish(state, member).await?;
    }
    Ok(())
}
