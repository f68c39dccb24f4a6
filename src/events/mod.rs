//! Real-time events: one typed [`Event`] per state change.
//!
//! The service layer writes each event to the outbox (`events` table) in the same
//! transaction as the change ([`outbox::record`]); after commit it wakes the relay, which
//! publishes committed rows in `seq` order on the [`EventBus`]. The node's [`router`]
//! consumes the bus and hands each event only to the connections whose member may see it
//! (by the rules of [`filter::Subscriber`]); a resuming client is served from the outbox.
//! So an event is never lost between commit and publish, even if the process dies in
//! between.
//!
//! Typing and presence are ephemeral ([`Event::ephemeral`]): published straight on the bus,
//! never written to the outbox, never replayed.

pub mod bus;
pub mod connections;
pub mod filter;
pub mod on_event;
pub mod outbox;
pub mod positions;
pub mod router;
pub mod stream;

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::ws::Utf8Bytes;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use bus::{EventBus, InProcessBus};

/// Every event type (the reference's sixteen, CONTRACT.md's additions, and the moderation
/// events of plugins' actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "communication:message_sent")]
    MessageSent,
    #[serde(rename = "communication:message_edited")]
    MessageEdited,
    #[serde(rename = "communication:message_deleted")]
    MessageDeleted,
    #[serde(rename = "communication:typing_start")]
    TypingStart,
    #[serde(rename = "communication:typing_stop")]
    TypingStop,
    #[serde(rename = "communication:reaction_added")]
    ReactionAdded,
    #[serde(rename = "communication:reaction_removed")]
    ReactionRemoved,
    #[serde(rename = "communication:message_pinned")]
    MessagePinned,
    #[serde(rename = "communication:message_unpinned")]
    MessageUnpinned,
    #[serde(rename = "communication:member_muted")]
    MemberMuted,
    #[serde(rename = "communication:member_unmuted")]
    MemberUnmuted,
    #[serde(rename = "communication:member_kicked")]
    MemberKicked,
    #[serde(rename = "communication:member_joined")]
    MemberJoined,
    #[serde(rename = "communication:member_left")]
    MemberLeft,
    #[serde(rename = "communication:group_created")]
    GroupCreated,
    #[serde(rename = "communication:channel_updated")]
    ChannelUpdated,
    #[serde(rename = "communication:channel_deleted")]
    ChannelDeleted,
    #[serde(rename = "communication:presence_changed")]
    PresenceChanged,
    #[serde(rename = "communication:key_rotated")]
    KeyRotated,
    #[serde(rename = "communication:role_changed")]
    RoleChanged,
    /// A group's or channel's lock or slow mode changed.
    #[serde(rename = "communication:restrictions_changed")]
    RestrictionsChanged,
    /// A moderation plugin's note to the context's moderators, admins and owner.
    #[serde(rename = "communication:moderation_alert")]
    ModerationAlert,
    /// A moderation plugin's warning to one member.
    #[serde(rename = "communication:moderation_warning")]
    ModerationWarning,
}

impl EventType {
    /// Every type, for documentation and tests.
    pub const ALL: [EventType; 23] = [
        EventType::MessageSent,
        EventType::MessageEdited,
        EventType::MessageDeleted,
        EventType::TypingStart,
        EventType::TypingStop,
        EventType::ReactionAdded,
        EventType::ReactionRemoved,
        EventType::MessagePinned,
        EventType::MessageUnpinned,
        EventType::MemberMuted,
        EventType::MemberUnmuted,
        EventType::MemberKicked,
        EventType::MemberJoined,
        EventType::MemberLeft,
        EventType::GroupCreated,
        EventType::ChannelUpdated,
        EventType::ChannelDeleted,
        EventType::PresenceChanged,
        EventType::KeyRotated,
        EventType::RoleChanged,
        EventType::RestrictionsChanged,
        EventType::ModerationAlert,
        EventType::ModerationWarning,
    ];

    /// The wire name, e.g. `communication:message_sent`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageSent => "communication:message_sent",
            EventType::MessageEdited => "communication:message_edited",
            EventType::MessageDeleted => "communication:message_deleted",
            EventType::TypingStart => "communication:typing_start",
            EventType::TypingStop => "communication:typing_stop",
            EventType::ReactionAdded => "communication:reaction_added",
            EventType::ReactionRemoved => "communication:reaction_removed",
            EventType::MessagePinned => "communication:message_pinned",
            EventType::MessageUnpinned => "communication:message_unpinned",
            EventType::MemberMuted => "communication:member_muted",
            EventType::MemberUnmuted => "communication:member_unmuted",
            EventType::MemberKicked => "communication:member_kicked",
            EventType::MemberJoined => "communication:member_joined",
            EventType::MemberLeft => "communication:member_left",
            EventType::GroupCreated => "communication:group_created",
            EventType::ChannelUpdated => "communication:channel_updated",
            EventType::ChannelDeleted => "communication:channel_deleted",
            EventType::PresenceChanged => "communication:presence_changed",
            EventType::KeyRotated => "communication:key_rotated",
            EventType::RoleChanged => "communication:role_changed",
            EventType::RestrictionsChanged => "communication:restrictions_changed",
            EventType::ModerationAlert => "communication:moderation_alert",
            EventType::ModerationWarning => "communication:moderation_warning",
        }
    }
}

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextType {
    /// A direct conversation (`contextId` is the conversation id).
    Conversation,
    Group,
    Channel,
    /// A member (presence; `contextId` is the member id).
    Member,
}

/// Who may receive an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Audience {
    /// The members of the group or channel `contextId`, as each connection knows them.
    Context,
    /// Exactly these members (conversation participants, presence watchers), sorted so
    /// that a connection finds its member by binary search.
    Members { ids: Vec<Uuid> },
    /// `member` itself and every member of one of `contexts` (the groups and channels
    /// `member` belongs to): presence. Only ephemeral events use it.
    Sharing { member: Uuid, contexts: Vec<Uuid> },
}

/// One state change, as stored in the outbox and carried by the bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position in the outbox; 0 until recorded.
    #[serde(default)]
    pub seq: i64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub context_type: ContextType,
    pub context_id: Uuid,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The resource as REST returns it.
    pub data: Value,
    pub audience: Audience,
    /// Data for particular members instead of `data` (a DM's copy for each reader).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub per_member: HashMap<Uuid, Value>,
    /// Members who belong to the context from this event on (applied before delivery).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<Uuid>,
    /// The history boundary of the members in `joined` or `left` (a channel that hides
    /// history shows them only messages with ids above this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_after: Option<Uuid>,
    /// The message the event is about, so members who may not see it (hidden history)
    /// do not receive it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    /// Members who no longer belong after this event (applied after delivery, so they
    /// receive the event of their own departure and nothing later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<Uuid>,
    /// A member who does not receive this event (the one typing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Uuid>,
    /// Made by a moderation plugin's action: `on_event` hooks do not see it, so plugins
    /// never call each other in a loop.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_plugin: bool,
    /// Typing and presence: published straight on the bus, never written to the outbox,
    /// never replayed, no `seq` of its own (a connection stamps it with the newest durable
    /// `seq` it has delivered, see [`Event::frame_at`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// The shared wire frame, serialised once for every connection.
    #[serde(skip)]
    frame: OnceLock<Utf8Bytes>,
}

impl Clone for Event {
    fn clone(&self) -> Self {
        Self {
            seq: self.seq,
            event_type: self.event_type,
            context_type: self.context_type,
            context_id: self.context_id,
            timestamp: self.timestamp,
            data: self.data.clone(),
            audience: self.audience.clone(),
            per_member: self.per_member.clone(),
            joined: self.joined.clone(),
            history_after: self.history_after,
            message_id: self.message_id,
            left: self.left.clone(),
            exclude: self.exclude,
            from_plugin: self.from_plugin,
            ephemeral: self.ephemeral,
            frame: OnceLock::new(),
        }
    }
}

/// The frame a client receives.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Frame<'a> {
    #[serde(rename = "type")]
    event_type: &'static str,
    context_type: ContextType,
    context_id: Uuid,
    data: &'a Value,
    timestamp: String,
    seq: i64,
}

impl Event {
    /// An event for the members of a group or channel.
    pub fn for_context(
        event_type: EventType,
        context_type: ContextType,
        context_id: Uuid,
        data: impl Serialize,
    ) -> Self {
        Self::new(
            event_type,
            context_type,
            context_id,
            Audience::Context,
            data,
        )
    }

    /// An event for exactly `members`.
    pub fn for_members(
        event_type: EventType,
        context_type: ContextType,
        context_id: Uuid,
        members: Vec<Uuid>,
        data: impl Serialize,
    ) -> Self {
        {
            let mut ids = members;
            ids.sort_unstable();
            ids.dedup();
            Self::new(
                event_type,
                context_type,
                context_id,
                Audience::Members { ids },
                data,
            )
        }
    }

    /// An ephemeral event for `member` and everyone sharing one of `contexts` with it.
    pub fn for_sharing(
        event_type: EventType,
        member: Uuid,
        contexts: Vec<Uuid>,
        data: impl Serialize,
    ) -> Self {
        Self::new(
            event_type,
            ContextType::Member,
            member,
            Audience::Sharing { member, contexts },
            data,
        )
        .transient()
    }

    /// Marks the event ephemeral (see [`Event::ephemeral`]).
    pub fn transient(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    fn new(
        event_type: EventType,
        context_type: ContextType,
        context_id: Uuid,
        audience: Audience,
        data: impl Serialize,
    ) -> Self {
        Self {
            seq: 0,
            event_type,
            context_type,
            context_id,
            timestamp: crate::time::now_ms(),
            data: serde_json::to_value(data).unwrap_or(Value::Null),
            audience,
            per_member: HashMap::new(),
            joined: Vec::new(),
            history_after: None,
            message_id: None,
            left: Vec::new(),
            exclude: None,
            from_plugin: false,
            ephemeral: false,
            frame: OnceLock::new(),
        }
    }

    /// Marks an event made by a plugin's action (see [`Event::from_plugin`]).
    pub fn by_plugin(mut self) -> Self {
        self.from_plugin = true;
        self
    }

    /// Members who join with this event.
    pub fn joining(mut self, members: Vec<Uuid>) -> Self {
        self.joined = members;
        self
    }

    /// Members who join with this event and see only messages after `history_after`.
    pub fn joining_after(mut self, members: Vec<Uuid>, history_after: Option<Uuid>) -> Self {
        self.joined = members;
        self.history_after = history_after;
        self
    }

    /// The event is about this message.
    pub fn about_message(mut self, message_id: Uuid) -> Self {
        self.message_id = Some(message_id);
        self
    }

    /// Members who leave with this event.
    pub fn leaving(mut self, members: Vec<Uuid>) -> Self {
        self.left = members;
        self
    }

    /// One member who leaves with this event, with the history boundary it had.
    pub fn leaving_after(mut self, member: Uuid, history_after: Option<Uuid>) -> Self {
        self.left = vec![member];
        self.history_after = history_after;
        self
    }

    /// Not for `member`.
    pub fn excluding(mut self, member: Uuid) -> Self {
        self.exclude = Some(member);
        self
    }

    /// `data` for one member in particular.
    pub fn with_data_for(mut self, member: Uuid, data: impl Serialize) -> Self {
        self.per_member
            .insert(member, serde_json::to_value(data).unwrap_or(Value::Null));
        self
    }

    /// The wire frame for `member` (shared and serialised once unless the member has its
    /// own data). Cloning it shares the bytes, so every socket sends the same buffer.
    pub fn frame_for(&self, member: Uuid) -> Utf8Bytes {
        if let Some(data) = self.per_member.get(&member) {
            return self.render(data).into();
        }
        self.frame
            .get_or_init(|| self.render(&self.data).into())
            .clone()
    }

    /// The wire frame for `member` carrying `seq`: an ephemeral event goes out with the
    /// newest durable `seq` the connection has delivered. Only the number is written per
    /// connection; the rest is the shared frame.
    pub fn frame_at(&self, member: Uuid, seq: i64) -> Utf8Bytes {
        let shared = self.frame_for(member);
        if seq == self.seq {
            return shared;
        }
        // The frame ends with `"seq":<self.seq>}` (`seq` is the last field).
        let tail = format!("\"seq\":{}}}", self.seq);
        match shared.as_str().strip_suffix(tail.as_str()) {
            Some(head) => format!("{head}\"seq\":{seq}}}").into(),
            None => {
                let mut event = self.clone();
                event.seq = seq;
                event.frame_for(member)
            }
        }
    }

    /// The data `member` receives.
    pub fn data_for(&self, member: Uuid) -> &Value {
        self.per_member.get(&member).unwrap_or(&self.data)
    }

    fn render(&self, data: &Value) -> String {
        let frame = Frame {
            event_type: self.event_type.as_str(),
            context_type: self.context_type,
            context_id: self.context_id,
            data,
            timestamp: crate::time::rfc3339(self.timestamp),
            seq: self.seq,
        };
        serde_json::to_string(&frame).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ephemeral_frame_carries_the_seq_it_is_given() {
        let member = Uuid::new_v4();
        let event = Event::for_sharing(
            EventType::PresenceChanged,
            member,
            vec![],
            serde_json::json!({"memberId": member, "status": "online"}),
        );
        let at: Value = serde_json::from_str(event.frame_at(member, 42).as_str()).expect("json");
        assert_eq!(at["seq"], 42);
        assert_eq!(at["data"]["status"], "online");
        assert_eq!(at["contextType"], "member");
        let zero: Value = serde_json::from_str(event.frame_at(member, 0).as_str()).expect("json");
        assert_eq!(zero["seq"], 0);
        assert!(event.ephemeral);
    }

    #[test]
    fn every_type_is_listed_once_under_its_wire_name() {
        let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        for event_type in EventType::ALL {
            let wire = serde_json::to_value(event_type).expect("serialises");
            assert_eq!(wire, event_type.as_str());
            let back: EventType = serde_json::from_value(wire).expect("parses");
            assert_eq!(back, event_type);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
        for moderation in [
            "communication:restrictions_changed",
            "communication:moderation_alert",
            "communication:moderation_warning",
        ] {
            assert!(names.contains(&moderation), "{moderation}");
        }
    }
}
