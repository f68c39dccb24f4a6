//! sea-orm entities, one module a table. Times are milliseconds since the Unix epoch.

pub mod audit_entry;
pub mod auth_challenge;
pub mod auth_token;
pub mod block;
pub mod context;
pub mod context_member;
pub mod context_message;
pub mod context_mute;
pub mod conversation;
pub mod dm_message;
pub mod epoch_key;
pub mod event;
pub mod event_seq;
pub mod invite;
pub mod member;
pub mod member_key;
pub mod message_edit;
pub mod plugin_state;
pub mod reaction;
pub mod server_meta;
