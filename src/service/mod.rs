//! The one place with rules. REST handlers and GraphQL resolvers call these functions and
//! only translate input and output, so the two APIs cannot drift.
//!
//! Every function takes the [`AppState`](crate::state::AppState), the [`Actor`] where the
//! action needs a signed-in member, and its input; it returns a
//! [`ServiceResult`](crate::error::ServiceResult).

pub mod audit;
pub mod auth;
pub mod channels;
pub mod contexts;
pub mod conversations;
pub mod facts;
pub mod gates;
pub mod groups;
pub mod hooks;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod lookups;
pub mod members;
pub mod message_facts;
pub mod moderation;
pub mod pagination;
pub mod posting;
pub mod presence;
pub mod roles;
pub mod search;
pub mod typing;
pub mod validate;
pub mod writer;

use uuid::Uuid;

/// The signed-in member making a request, resolved once from its bearer token.
#[derive(Clone, Debug)]
pub struct Actor {
    pub member_id: Uuid,
    /// SHA-256 of the bearer token in use (sign-out revokes exactly this token).
    pub token_hash: [u8; 32],
}

/// Maps a unique-constraint violation to `conflict`, anything else to an internal error.
pub(crate) fn unique_violation_or(
    err: sea_orm::DbErr,
    conflict: crate::error::ServiceError,
) -> crate::error::ServiceError {
    match err.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => conflict,
        _ => err.into(),
    }
}
