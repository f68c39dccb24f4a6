//! Black-box tests over real HTTP against the real router, one binary for all of them.
//!
//! Each test gets a fresh database: SQLite in a temporary directory by default, or a new
//! PostgreSQL database when `BRIGHTCHAT_TEST_DATABASE_URL` is set.

mod common;

mod audit;
mod auth;
mod binary;
mod bounded;
mod channel_invites;
mod channel_visibility;
mod channels;
mod cluster;
mod cluster_latency;
mod conversations;
mod cors;
mod crash;
mod crypto_vectors;
mod graphql;
mod group_commit;
mod group_concurrency;
mod group_messages;
mod group_roles;
mod groups;
mod hardening;
mod hardening_gql;
mod hardening_net;
mod large_contexts;
mod large_rotation;
mod load_smoke;
mod member_pages;
mod members;
mod metrics;
mod pagination;
mod plugin_examples;
mod plugins_actions;
mod plugins_hooks;
mod plugins_host;
mod positions;
mod rate_limits;
mod read_cache;
mod realtime;
mod routing;
mod search;
mod security;
mod startup;
mod supervise;
mod two_nodes;
mod wire;
