//! What one member may receive: its groups and channels, kept current by applying the
//! membership changes carried by events in `seq` order, so a member who leaves or is
//! kicked receives the event of its departure and nothing after it. Events about a
//! message the member may not see (sent before it joined a channel that hides history)
//! are held back too.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Audience, Event};

/// One member's view of the event stream.
#[derive(Debug, Clone)]
pub struct Subscriber {
    member: Uuid,
    /// Context → the id above which messages are visible (`None`: all of them).
    contexts: HashMap<Uuid, Option<Uuid>>,
}

impl Subscriber {
    /// A subscriber whose member belongs to `contexts` (with each membership's
    /// `history_after`) as of the snapshot it was read in.
    pub fn new(member: Uuid, contexts: HashMap<Uuid, Option<Uuid>>) -> Self {
        Self { member, contexts }
    }

    /// The member this subscriber serves.
    pub fn member(&self) -> Uuid {
        self.member
    }

    /// Whether the member belongs to `context`.
    pub fn belongs_to(&self, context: Uuid) -> bool {
        self.contexts.contains_key(&context)
    }

    /// The groups and channels the member belongs to.
    pub fn contexts(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.contexts.keys().copied()
    }

    /// Undoes the membership changes of `events` (newest last), turning the membership of
    /// the snapshot into the membership before the first of them: for resuming.
    pub fn rewind(&mut self, events: &[Event]) {
        for event in events.iter().rev() {
            if event.left.contains(&self.member) {
                self.contexts.insert(event.context_id, event.history_after);
            }
            if event.joined.contains(&self.member) {
                self.contexts.remove(&event.context_id);
            }
        }
    }

    /// Applies `event` and says whether the member receives it. Joins apply before the
    /// check, departures after it.
    pub fn admit(&mut self, event: &Event) -> bool {
        if event.joined.contains(&self.member) {
            self.contexts.insert(event.context_id, event.history_after);
        }
        let entitled = match &event.audience {
            Audience::Context => match self.contexts.get(&event.context_id) {
                None => false,
                Some(after) => match (after, event.message_id) {
                    (Some(after), Some(message)) => message > *after,
                    _ => true,
                },
            },
            Audience::Members { ids } => ids.binary_search(&self.member).is_ok(),
            Audience::Sharing { member, contexts } => {
                *member == self.member || contexts.iter().any(|c| self.contexts.contains_key(c))
            }
        } && event.exclude != Some(self.member);
        if event.left.contains(&self.member) {
            self.contexts.remove(&event.context_id);
        }
        entitled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_history_holds_back_events_about_older_messages() {
        let me = Uuid::new_v4();
        let ctx = Uuid::new_v4();
        let old = Uuid::now_v7();
        let boundary = Uuid::now_v7();
        let new = Uuid::now_v7();
        let mut sub = Subscriber::new(me, HashMap::from([(ctx, Some(boundary))]));
        let edit_old = Event::for_context(EventType::MessageEdited, ContextType::Channel, ctx, ())
            .about_message(old);
        let edit_new = Event::for_context(EventType::MessageEdited, ContextType::Channel, ctx, ())
            .about_message(new);
        let rotated = Event::for_context(EventType::KeyRotated, ContextType::Channel, ctx, ());
        assert!(!sub.admit(&edit_old));
        assert!(sub.admit(&edit_new));
        assert!(sub.admit(&rotated));
    }
    use crate::events::{ContextType, EventType};

    #[test]
    fn departure_is_the_last_event_received_and_rewind_restores() {
        let me = Uuid::new_v4();
        let ctx = Uuid::new_v4();
        let sent = Event::for_context(EventType::MessageSent, ContextType::Channel, ctx, ());
        let kicked = Event::for_context(EventType::MemberKicked, ContextType::Channel, ctx, ())
            .leaving(vec![me]);
        let after = Event::for_context(EventType::KeyRotated, ContextType::Channel, ctx, ());
        let mut sub = Subscriber::new(me, HashMap::from([(ctx, None)]));
        assert!(sub.admit(&sent));
        assert!(sub.admit(&kicked));
        assert!(!sub.admit(&after));

        let mut resumed = Subscriber::new(me, HashMap::new());
        resumed.rewind(&[sent.clone(), kicked.clone(), after.clone()]);
        assert!(resumed.admit(&sent));
        assert!(resumed.admit(&kicked));
        assert!(!resumed.admit(&after));
    }

    #[test]
    fn joins_apply_before_delivery_and_exclusions_hold() {
        let me = Uuid::new_v4();
        let ctx = Uuid::new_v4();
        let created = Event::for_context(EventType::GroupCreated, ContextType::Group, ctx, ())
            .joining(vec![me]);
        let typing =
            Event::for_context(EventType::TypingStart, ContextType::Group, ctx, ()).excluding(me);
        let mut sub = Subscriber::new(me, HashMap::new());
        assert!(sub.admit(&created));
        assert!(!sub.admit(&typing));
        let dm = Event::for_members(
            EventType::MessageSent,
            ContextType::Conversation,
            Uuid::new_v4(),
            vec![me],
            (),
        );
        assert!(sub.admit(&dm));
        let other = Event::for_members(
            EventType::MessageSent,
            ContextType::Conversation,
            Uuid::new_v4(),
            vec![Uuid::new_v4()],
            (),
        );
        assert!(!sub.admit(&other));
    }
}
