//! Subscriptions: one stream of every event the member may see, filterable by type and
//! context, with the same delivery rules as `/api/events` (the same snapshot, filter and
//! bus).

use async_graphql::{
    Context, ErrorExtensions, Json, SimpleObject, Subscription as SubscriptionDerive,
};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use super::{actor, gql, state};
use serde::Deserialize;

use crate::error::ServiceError;
use crate::events::stream::{EventStream, StreamEnd};
use crate::events::{ContextType, Event, EventType};
use crate::service::channels::ChannelSettings;
use crate::service::contexts::RoleAssigned;
use crate::service::contexts::messages::{MessageView, ReactionView};
use crate::service::conversations::DirectMessageView;
use crate::service::groups::GroupView;
use crate::service::presence::PresenceStatus;
use crate::service::roles::Role;

/// One event, as the WebSocket frame carries it.
#[derive(SimpleObject, Clone)]
#[graphql(name = "CommunicationEvent")]
pub struct EventPayload {
    /// e.g. `communication:message_sent`.
    #[graphql(name = "type")]
    pub event_type: String,
    /// `conversation`, `group`, `channel` or `member`.
    pub context_type: String,
    pub context_id: Uuid,
    /// The resource, as REST returns it (JSON).
    pub data: Json<serde_json::Value>,
    /// The same resource, typed.
    pub payload: Option<EventData>,
    /// The member the event is about (membership, typing, presence, roles, mutes).
    pub member_id: Option<Uuid>,
    /// The message the event is about (sent, edited, deleted, pinned, reactions).
    pub message_id: Option<Uuid>,
    /// `presence_changed`: the new status.
    pub status: Option<PresenceStatus>,
    /// `role_changed`: the new role.
    pub role: Option<Role>,
    /// `key_rotated`: the new key epoch.
    pub epoch: Option<i32>,
    pub timestamp: String,
    pub seq: i64,
}

fn field<T: serde::de::DeserializeOwned>(data: &serde_json::Value, name: &str) -> Option<T> {
    data.get(name)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn payload(event: &Event, member: Uuid, seq: i64) -> EventPayload {
    let data = event.data_for(member);
    let message_id = match event.event_type {
        EventType::MessageSent | EventType::MessageEdited => field(data, "id"),
        _ => field(data, "messageId"),
    };
    EventPayload {
        member_id: field(data, "memberId"),
        message_id,
        status: field(data, "status"),
        role: field(data, "role"),
        epoch: field(data, "epoch"),
        event_type: event.event_type.as_str().to_owned(),
        context_type: serde_json::to_value(event.context_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        context_id: event.context_id,
        payload: typed(event, data),
        data: Json(data.clone()),
        timestamp: crate::time::rfc3339(event.timestamp),
        seq,
    }
}

/// `{messageId}`: deletes and pins.
#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct MessageRefData {
    pub message_id: Uuid,
}

/// `{memberId}`: joins, departures, unmutes, typing.
#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct MemberRefData {
    pub member_id: Uuid,
}

/// `{memberId, until}`: `member_muted`.
#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct MemberMutedData {
    pub member_id: Uuid,
    pub until: String,
}

/// `{epoch}`: `key_rotated`.
#[derive(SimpleObject, Deserialize, Clone)]
pub struct KeyRotatedData {
    pub epoch: i32,
}

/// `{channelId}`: `channel_deleted`.
#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ChannelDeletedData {
    pub channel_id: Uuid,
}

/// `{memberId, status}`: `presence_changed`.
#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct PresenceChangedData {
    pub member_id: Uuid,
    pub status: PresenceStatus,
}

/// `{lockedUntil, lockReason, slowModeSeconds, slowModeUntil}`: `restrictions_changed`, a
/// group's or channel's restrictions as they now stand (`null`: not in force).
#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RestrictionsData {
    pub locked_until: Option<String>,
    pub lock_reason: Option<String>,
    pub slow_mode_seconds: Option<i32>,
    pub slow_mode_until: Option<String>,
}

/// `{plugin, text, memberId?}`: `moderation_alert`, a moderation plugin's note to the
/// context's moderators, admins and owner.
#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ModerationAlertData {
    pub plugin: String,
    pub text: String,
    /// The member the alert is about, if any.
    pub member_id: Option<Uuid>,
}

/// `{plugin, text}`: `moderation_warning`, a moderation plugin's warning to you.
#[derive(SimpleObject, Deserialize, Clone)]
pub struct ModerationWarningData {
    pub plugin: String,
    pub text: String,
}

/// The typed data of an event: one member per shape.
#[derive(async_graphql::Union, Clone)]
pub enum EventData {
    Message(MessageView),
    DirectMessage(DirectMessageView),
    Reaction(ReactionView),
    Group(GroupView),
    ChannelSettings(ChannelSettings),
    RoleChanged(RoleAssigned),
    MessageRef(MessageRefData),
    MemberRef(MemberRefData),
    MemberMuted(MemberMutedData),
    KeyRotated(KeyRotatedData),
    ChannelDeleted(ChannelDeletedData),
    PresenceChanged(PresenceChangedData),
    Restrictions(RestrictionsData),
    ModerationAlert(ModerationAlertData),
    ModerationWarning(ModerationWarningData),
}

fn typed(event: &Event, data: &serde_json::Value) -> Option<EventData> {
    use EventType::*;
    fn parse<T: serde::de::DeserializeOwned>(data: &serde_json::Value) -> Option<T> {
        serde_json::from_value(data.clone()).ok()
    }
    let conversation = event.context_type == ContextType::Conversation;
    match event.event_type {
        MessageSent | MessageEdited if conversation => parse(data).map(EventData::DirectMessage),
        MessageSent | MessageEdited => parse(data).map(EventData::Message),
        MessageDeleted | MessagePinned | MessageUnpinned => parse(data).map(EventData::MessageRef),
        ReactionAdded | ReactionRemoved => parse(data).map(EventData::Reaction),
        TypingStart | TypingStop | MemberJoined | MemberLeft | MemberKicked | MemberUnmuted => {
            parse(data).map(EventData::MemberRef)
        }
        MemberMuted => parse(data).map(EventData::MemberMuted),
        GroupCreated => parse(data).map(EventData::Group),
        ChannelUpdated => parse(data).map(EventData::ChannelSettings),
        ChannelDeleted => parse(data).map(EventData::ChannelDeleted),
        PresenceChanged => parse(data).map(EventData::PresenceChanged),
        KeyRotated => parse(data).map(EventData::KeyRotated),
        RoleChanged => parse(data).map(EventData::RoleChanged),
        RestrictionsChanged => parse(data).map(EventData::Restrictions),
        ModerationAlert => parse(data).map(EventData::ModerationAlert),
        ModerationWarning => parse(data).map(EventData::ModerationWarning),
    }
}

/// The filters a subscription asked for.
struct Wanted {
    types: Option<Vec<String>>,
    context_id: Option<Uuid>,
}

impl Wanted {
    fn matches(&self, event: &Event) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.iter().any(|t| t == event.event_type.as_str()))
            && self.context_id.is_none_or(|c| c == event.context_id)
    }
}

/// Subscriptions of one `/graphql/ws` connection take their starting snapshot one at a
/// time, so a client opening many at once holds at most one database connection for it
/// and other members' requests are not queued behind it.
#[derive(Clone)]
pub struct SnapshotPermits(pub std::sync::Arc<tokio::sync::Semaphore>);

impl SnapshotPermits {
    pub fn one_at_a_time() -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(1)))
    }
}

/// The root of subscriptions.
pub struct Subscription;

#[SubscriptionDerive]
impl Subscription {
    /// Every `communication:*` event you may see, optionally only of `types` (e.g.
    /// `["communication:message_sent"]`) or about `contextId`; with `resume`, first what you
    /// missed since that `seq`.
    async fn events(
        &self,
        ctx: &Context<'_>,
        types: Option<Vec<String>>,
        context_id: Option<Uuid>,
        resume: Option<i64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<EventPayload>>> {
        let member = actor(ctx)?.member_id;
        // The `/graphql/ws` connection re-checks the token once for all its subscriptions.
        let permit = match ctx.data_opt::<SnapshotPermits>() {
            Some(permits) => Some(permits.0.clone().acquire_owned().await?),
            None => None,
        };
        let events =
            gql(EventStream::open(state(ctx), actor(ctx)?, resume).await)?.without_token_recheck();
        drop(permit);
        let resync = events
            .resync_required
            .then(|| Err(resync_required(events.start_seq)));
        let wanted = Wanted { types, context_id };
        // Pulled one event at a time: a subscriber that stops reading fills its own queue
        // and its stream ends, never holding anyone else up.
        let live = futures_util::stream::unfold(Some((events, wanted)), move |open| async move {
            let (mut events, wanted) = open?;
            loop {
                match events.next().await {
                    Ok(item) if wanted.matches(&item.event) => {
                        let shown = payload(&item.event, member, item.seq);
                        return Some((Ok(shown), Some((events, wanted))));
                    }
                    Ok(_) => continue,
                    Err(end) => {
                        let err = match end {
                            StreamEnd::Lagged { last } => ServiceError::Gone(format!(
                                "The subscription fell behind; resubscribe with resume: {last}"
                            )),
                            StreamEnd::Unauthorized => {
                                ServiceError::unauthorized("The token was revoked or has expired")
                            }
                            StreamEnd::Closed => return None,
                        };
                        return Some((gql(Err(err)), None));
                    }
                }
            }
        });
        Ok(futures_util::stream::iter(resync).chain(live))
    }
}

/// What `/api/events` sends as `{"type":"resync_required","seq"}`: the resume point is
/// older than the retention window, further back than the replay cap
/// ([`crate::events::outbox::REPLAY_LIMIT`]) or past the newest event, so the client refetches;
/// live events follow from `seq`.
fn resync_required(seq: i64) -> async_graphql::Error {
    async_graphql::Error::new(
        "Events since the resume point are not available; refetch, then follow from seq",
    )
    .extend_with(|_, e| {
        e.set("code", "RESYNC_REQUIRED");
        e.set("seq", seq);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moderation_events_carry_typed_data() {
        let context = Uuid::now_v7();
        let member = Uuid::now_v7();
        let alert = Event::for_members(
            EventType::ModerationAlert,
            ContextType::Channel,
            context,
            vec![member],
            serde_json::json!({"plugin": "20_guard", "text": "raid", "memberId": member}),
        );
        let shown = payload(&alert, member, 0);
        assert_eq!(shown.member_id, Some(member));
        assert!(matches!(
            shown.payload,
            Some(EventData::ModerationAlert(ModerationAlertData { ref plugin, .. })) if plugin == "20_guard"
        ));
        let warning = Event::for_members(
            EventType::ModerationWarning,
            ContextType::Group,
            context,
            vec![member],
            serde_json::json!({"plugin": "20_guard", "text": "no links"}),
        );
        assert!(matches!(
            payload(&warning, member, 0).payload,
            Some(EventData::ModerationWarning(ModerationWarningData { ref text, .. })) if text == "no links"
        ));
        let restrictions = Event::for_context(
            EventType::RestrictionsChanged,
            ContextType::Channel,
            context,
            serde_json::json!({"lockedUntil": null, "lockReason": null, "slowModeSeconds": 30, "slowModeUntil": "2026-01-01T00:00:00.000Z"}),
        );
        assert!(matches!(
            payload(&restrictions, member, 0).payload,
            Some(EventData::Restrictions(RestrictionsData {
                slow_mode_seconds: Some(30),
                ..
            }))
        ));
    }
}
