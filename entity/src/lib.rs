//! sea-orm entities, one module a table. Times are milliseconds since the Unix epoch.

pub mod auth_challenge;
pub mod auth_token;
pub mod block;
pub mod conversation;
pub mod dm_message;
pub mod member;
pub mod server_meta;
