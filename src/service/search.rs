//! Searching a channel's messages (CONTRACT.md "Search").
//!
//! The same access rules as history: members only (403, or 404 for an invisible channel),
//! and a member never finds a message sent before it joined a channel that hides history.
//! The index answers with message ids; the messages themselves come from the database,
//! so a deleted message is never returned even while the index lags, and each is shown as
//! history shows it, encrypted for the reader, plus its `relevanceScore`.
//!
//! Paging: the first page fixes the result. It runs the query for up to
//! [`MAX_SNAPSHOT_HITS`] hits over the messages that exist at that moment, keeps that
//! ordered list on this node for [`SNAPSHOT_TTL`] under a random nonce, and every further
//! page is a slice of it, so no hit is repeated or skipped however the index changes
//! meanwhile. The cursor carries the bound (the newest message id at the first page), the
//! nonce and the offset; should the snapshot be gone (expired, or the next page reached
//! another node), the query runs again within the same bound (best effort: the index may
//! have changed). A first page always asks the index afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use super::Actor;
use super::contexts::messages::{self, MessageView};
use super::contexts::{Kind, require_member};
use super::pagination::{CursorKey, Page, PageParams};
use crate::error::{ServiceError, ServiceResult};
use crate::search::{MAX_SNAPSHOT_HITS, ResultSnapshot, SearchError, SearchRequest};
use crate::state::AppState;

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// How long a result snapshot serves further pages.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(600);

/// `GET /api/channels/:id/messages/search` parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The words to find, 1..=200 characters; every word must occur.
    pub query: Option<String>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size, 1..=100, default 50.
    pub limit: Option<i64>,
}

/// One hit: the message as history shows it, plus its relevance.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[serde(rename_all = "camelCase")]
#[graphql(name = "SearchHit")]
pub struct SearchResult {
    #[serde(flatten)]
    #[graphql(flatten)]
    pub message: MessageView,
    /// In 0..=1, higher is more relevant.
    pub relevance_score: f64,
}

impl From<SearchError> for ServiceError {
    fn from(err: SearchError) -> Self {
        match err {
            SearchError::Unavailable(detail) => {
                tracing::warn!(%detail, "search backend unavailable");
                ServiceError::Unavailable("Search is unavailable right now; retry shortly".into())
            }
            SearchError::Internal(detail) => ServiceError::internal(format!("search: {detail}")),
        }
    }
}

/// The query, checked: 1..=200 characters, not blank.
pub fn validate_query(query: Option<&str>) -> ServiceResult<String> {
    let query = query.unwrap_or_default();
    if query.trim().is_empty() {
        return Err(ServiceError::validation(
            "query is required and must not be blank",
        ));
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(ServiceError::validation(
            "query must be at most 200 characters",
        ));
    }
    Ok(query.to_owned())
}

/// Searches a channel the actor belongs to.
pub async fn search(
    state: &AppState,
    actor: &Actor,
    channel_id: Uuid,
    params: &SearchParams,
) -> ServiceResult<Page<SearchResult>> {
    let query = validate_query(params.query.as_deref())?;
    let access = require_member(&state.db.read, Kind::Channel, channel_id, actor).await?;
    let after_id = access.membership.history_after;
    // The list this cursor belongs to: this member, this channel, these words.
    let digest = hex::encode(sha2::Sha256::digest(query.as_bytes()));
    let scope = format!("channel:{channel_id}:search:{}:{digest}", actor.member_id);
    let page_params = PageParams {
        cursor: params.cursor.clone(),
        limit: params.limit,
        direction: None,
    };
    let request = state.cursors.request(&scope, &page_params, false)?;
    // A cursor's `time` holds the snapshot's nonce (high 32 bits) and the offset (low).
    let (bound, nonce, offset, fresh) = match request.after {
        Some(CursorKey { time, id }) => {
            let packed = time as u64;
            (
                Some(id),
                (packed >> 32) as u32,
                (packed & 0xFFFF_FFFF) as usize,
                false,
            )
        }
        None => (
            access.context.last_issued_id,
            u32::from_be_bytes(crate::crypto::random_bytes::<4>()),
            0,
            true,
        ),
    };
    let Some(bound) = bound else {
        // No message was ever sent here.
        return Ok(Page {
            items: Vec::new(),
            cursor: None,
            has_more: false,
        });
    };
    let key = format!("{scope}:{bound}:{nonce}");
    let snapshot = snapshot(state, &key, fresh, channel_id, &query, after_id, bound).await?;
    let limit = request.limit as usize;
    let end = offset.saturating_add(limit).min(snapshot.hits.len());
    let slice = snapshot.hits.get(offset..end).unwrap_or_default();
    let ids: Vec<Uuid> = slice.iter().map(|hit| hit.message_id).collect();
    let mut views: HashMap<Uuid, MessageView> =
        messages::views_by_id(state, Kind::Channel, channel_id, &ids, after_id).await?;
    let items = slice
        .iter()
        .filter_map(|hit| {
            views.remove(&hit.message_id).map(|message| SearchResult {
                message,
                relevance_score: f64::from(hit.score.clamp(0.0, 1.0)),
            })
        })
        .collect();
    let has_more = end < snapshot.hits.len();
    let cursor = (end > offset).then(|| {
        state.cursors.encode(
            &scope,
            super::pagination::Direction::Forward,
            CursorKey {
                time: ((u64::from(nonce) << 32) | end as u64) as i64,
                id: bound,
            },
        )
    });
    Ok(Page {
        items,
        cursor,
        has_more,
    })
}

/// The frozen result of this search: made now for a first page (`fresh`), else from this
/// node's cache (made again, within the same bound, when it is gone).
async fn snapshot(
    state: &AppState,
    key: &str,
    fresh: bool,
    channel_id: Uuid,
    query: &str,
    after_id: Option<Uuid>,
    bound: Uuid,
) -> ServiceResult<Arc<ResultSnapshot>> {
    if !fresh
        && let Some(snapshot) = state.search.snapshots.get(key)
        && snapshot.made.elapsed() < SNAPSHOT_TTL
    {
        return Ok(snapshot);
    }
    let request = SearchRequest {
        channel_id,
        query: query.to_owned(),
        after_id,
        until_id: Some(bound),
        limit: MAX_SNAPSHOT_HITS,
    };
    let hits = state.search.index.search(&request).await?;
    let snapshot = Arc::new(ResultSnapshot {
        hits,
        made: Instant::now(),
    });
    state
        .search
        .snapshots
        .insert(key.to_owned(), snapshot.clone());
    Ok(snapshot)
}
