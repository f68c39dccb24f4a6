//! What one member may receive: its groups and channels, kept current by applying the
//! membership changes carried by events in `seq` order, so a member who leaves or is
//! kicked receives the event of its departure and nothing after it.

use std::collections::HashSet;

use uuid::Uuid;

use super::{Audience, Event};

/// One member's view of the event stream.
#[derive(Debug, Clone)]
pub struct Subscriber {
    member: Uuid,
    contexts: HashSet<Uuid>,
}

impl Subscriber {
    /// A subscriber whose member belongs to `contexts` as of the snapshot it was read in.
    pub fn new(member: Uuid, contexts: HashSet<Uuid>) -> Self {
        Self { member, contexts }
    }

    /// The member this subscriber serves.
    pub fn member(&self) -> Uuid {
        self.member
    }

    /// Undoes the membership changes of `events` (newest last), turning the membership of
    /// the snapshot into the membership before the first of them: for resuming.
    pub fn rewind(&mut self, events: &[Event]) {
        for event in events.iter().rev() {
            if event.left.contains(&self.member) {
                self.contexts.insert(event.context_id);
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
            self.contexts.insert(event.context_id);
        }
        let entitled = match &event.audience {
            Audience::Context => self.contexts.contains(&event.context_id),
            Audience::Members { ids } => ids.contains(&self.member),
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
    use crate::events::{ContextType, EventType};

    #[test]
    fn departure_is_the_last_event_received_and_rewind_restores() {
        let me = Uuid::new_v4();
        let ctx = Uuid::new_v4();
        let sent = Event::for_context(EventType::MessageSent, ContextType::Channel, ctx, ());
        let kicked = Event::for_context(EventType::MemberKicked, ContextType::Channel, ctx, ())
            .leaving(vec![me]);
        let after = Event::for_context(EventType::KeyRotated, ContextType::Channel, ctx, ());
        let mut sub = Subscriber::new(me, HashSet::from([ctx]));
        assert!(sub.admit(&sent));
        assert!(sub.admit(&kicked));
        assert!(!sub.admit(&after));

        let mut resumed = Subscriber::new(me, HashSet::new());
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
        let mut sub = Subscriber::new(me, HashSet::new());
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
