//! The one "may post here" rule. Sending, editing, reacting and typing all ask it, so no
//! path lets through what another refuses (typing used to check membership only).
//!
//! - **Conversation**: the actor takes part in it and the other participant has not blocked
//!   it. A block is refused with exactly the 404 a direct message to no one gets
//!   (`NOT_FOUND`, "Recipient not found"), so it is never revealed.
//! - **Group or channel**: the actor is a member (403 otherwise, 404 for an invisible
//!   channel: checked where the membership is read), its role holds `SEND_MESSAGES`, and it
//!   is not muted (403 `FORBIDDEN` "You are muted until …").
//!
//! The checks take what the caller has already read (under its lock for writes, from the
//! gates' cache for typing) and query nothing themselves: the batched send path pays no
//! extra statement for them.

use entity::context_member;

use super::conversations::NOT_REACHABLE;
use super::roles::{Permission, Role};
use crate::error::{ServiceError, ServiceResult};
use crate::time::rfc3339;

/// May the member holding `membership` post in its group or channel at `now` (ms)?
pub fn in_context(membership: &context_member::Model, now: i64) -> ServiceResult<()> {
    let permission = Permission::SendMessages;
    if !Role::parse(&membership.role).can(permission) {
        return Err(ServiceError::forbidden(format!(
            "Missing permission: {}",
            permission.name()
        )));
    }
    match membership.muted_until {
        Some(until) if until > now => Err(ServiceError::forbidden(format!(
            "You are muted until {}",
            rfc3339(until)
        ))),
        _ => Ok(()),
    }
}

/// May a participant post in its conversation, given whether the other participant has
/// blocked it?
pub fn in_conversation(blocked_by_other: bool) -> ServiceResult<()> {
    if blocked_by_other {
        Err(ServiceError::not_found(NOT_REACHABLE))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn row(role: &str, muted_until: Option<i64>) -> context_member::Model {
        context_member::Model {
            context_id: Uuid::now_v7(),
            member_id: Uuid::now_v7(),
            role: role.to_owned(),
            joined_at: 0,
            muted_until,
            history_after: None,
            key_epoch_from: 1,
        }
    }

    #[test]
    fn a_mute_refuses_until_it_ends() {
        assert!(in_context(&row("member", None), 1_000).is_ok());
        let err = in_context(&row("member", Some(2_000)), 1_000).expect_err("muted");
        assert_eq!(err.status().as_u16(), 403);
        assert!(
            in_context(&row("member", Some(1_000)), 1_000).is_ok(),
            "ended"
        );
    }

    #[test]
    fn a_block_answers_as_no_recipient() {
        assert!(in_conversation(false).is_ok());
        let err = in_conversation(true).expect_err("blocked");
        assert_eq!(err.status().as_u16(), 404);
        assert_eq!(err.public_message(), NOT_REACHABLE);
    }
}
