//! What an operation may cost (issue 9, item 4), checked by async-graphql before anything
//! runs: over [`MAX_COMPLEXITY`] the whole document is refused with `VALIDATION_ERROR`.
//!
//! A plain field costs 1. A field that calls the service (a database round trip) costs
//! [`CALL`] more. A list costs the number of items it may return times what is selected
//! in each: a page its `limit` (50 when absent, as the service defaults it), a capped list
//! its cap, an unpaged list [`UNPAGED_LIST`]. Ciphertext fields cost [`CONTENT`] (up to
//! ~14 KB each). A mutation costs [`MUTATION`] on top of what it selects; a search costs
//! [`SEARCH`] on top of its page.

use crate::service::pagination::{DEFAULT_LIMIT, PageParams};

/// The budget of one operation: a page of 100 messages with every field (reactions, the
/// capped edit history, senders) fits; fifty 100-message pages in one document do not.
pub const MAX_COMPLEXITY: usize = 20_000;
/// A field resolved by a service call.
pub const CALL: usize = 10;
/// A mutation (a write, events, often crypto).
pub const MUTATION: usize = 50;
/// A ciphertext field.
pub const CONTENT: usize = 10;
/// A search: one query to the index for a whole result snapshot (up to 1,000 hits), so
/// a document holds at most a handful.
pub const SEARCH: usize = 2_000;
/// The assumed length of a list without a page or cap (pins, reactions, participants).
pub const UNPAGED_LIST: usize = 10;

/// A page of up to `limit` items, each costing `child`, plus the call that loads it.
pub fn page(page: &Option<PageParams>, child: usize) -> usize {
    let limit = page
        .as_ref()
        .and_then(|p| p.limit)
        .map_or(DEFAULT_LIMIT as usize, |l| {
            usize::try_from(l.max(1)).unwrap_or(usize::MAX)
        });
    CALL.saturating_add(limit.saturating_mul(child))
}

/// A list of at most `len` items, each costing `child`.
pub fn list(len: usize, child: usize) -> usize {
    len.saturating_mul(child).max(1)
}
