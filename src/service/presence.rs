//! Presence: each member's status as others see it.
//!
//! Held in memory on this node; the real-time issue adds connection tracking, idle
//! detection and fan-out (across nodes through Redis).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Actor;
use crate::error::ServiceResult;
use crate::state::AppState;

/// A member's status (CONTRACT.md "Real time").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Idle,
    Dnd,
    Offline,
}

/// Statuses by member.
#[derive(Default)]
pub struct Presence {
    statuses: Mutex<HashMap<Uuid, PresenceStatus>>,
}

impl Presence {
    /// The member's current status (`offline` when never set).
    pub fn get(&self, member: Uuid) -> PresenceStatus {
        self.statuses
            .lock()
            .map(|map| map.get(&member).copied().unwrap_or(PresenceStatus::Offline))
            .unwrap_or(PresenceStatus::Offline)
    }

    fn set(&self, member: Uuid, status: PresenceStatus) {
        if let Ok(mut map) = self.statuses.lock() {
            map.insert(member, status);
        }
    }
}

/// `PUT /api/presence` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SetPresence {
    pub status: PresenceStatus,
}

/// The status as set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PresenceView {
    pub status: PresenceStatus,
}

/// Sets the actor's status.
pub async fn set(
    state: &AppState,
    actor: &Actor,
    input: SetPresence,
) -> ServiceResult<PresenceView> {
    state.presence.set(actor.member_id, input.status);
    Ok(PresenceView {
        status: input.status,
    })
}
