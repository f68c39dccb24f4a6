//! Every request to Meilisearch goes through [`call`], which bounds it in time, and every
//! failure becomes a [`SearchError`]: what a retry may cure is `Unavailable`.

use std::future::Future;
use std::time::Duration;

use meilisearch_sdk::client::Client;
use meilisearch_sdk::errors::{Error, ErrorCode, ErrorType};
use meilisearch_sdk::tasks::{Task, TasksSearchQuery};
use tokio::time::{Instant, sleep, timeout};

use crate::search::SearchError;

/// The longest one HTTP request may take; a Meilisearch that is down answers at once
/// (connection refused), one that hangs is given up after this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Task uids asked about in one `GET /tasks` (keeps the URL short).
const TASKS_PER_QUERY: usize = 100;

/// Runs one request with [`REQUEST_TIMEOUT`].
pub async fn call<T>(request: impl Future<Output = Result<T, Error>>) -> Result<T, SearchError> {
    call_within(REQUEST_TIMEOUT, request).await
}

/// Runs one request, giving up after `limit`.
pub async fn call_within<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, Error>>,
) -> Result<T, SearchError> {
    match timeout(limit, request).await {
        Ok(result) => result.map_err(to_search_error),
        Err(_) => Err(SearchError::Unavailable(format!(
            "meilisearch did not answer within {} ms",
            limit.as_millis()
        ))),
    }
}

/// Like [`call`], but a missing index is `Ok(None)` rather than an error.
pub async fn call_if_index_exists<T>(
    request: impl Future<Output = Result<T, Error>>,
) -> Result<Option<T>, SearchError> {
    match timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(found)) => Ok(Some(found)),
        Ok(Err(Error::Meilisearch(e))) if e.error_code == ErrorCode::IndexNotFound => Ok(None),
        Ok(Err(e)) => Err(to_search_error(e)),
        Err(_) => Err(SearchError::Unavailable(format!(
            "meilisearch did not answer within {} ms",
            REQUEST_TIMEOUT.as_millis()
        ))),
    }
}

/// Network failures, time-outs, 429 and 5xx answers are `Unavailable`; a refused request
/// (bad key, bad setting, bad filter) is `Internal`.
pub fn to_search_error(error: Error) -> SearchError {
    match &error {
        Error::HttpError(_) | Error::Timeout => SearchError::Unavailable(error.to_string()),
        // 429 (too many requests) and 5xx: the server is there but cannot take it now.
        Error::MeilisearchCommunication(e) if e.status_code >= 500 || e.status_code == 429 => {
            SearchError::Unavailable(error.to_string())
        }
        Error::Meilisearch(e) if e.error_type == ErrorType::Internal => {
            SearchError::Unavailable(error.to_string())
        }
        _ => SearchError::Internal(error.to_string()),
    }
}

/// Waits until every task in `uids` has finished (succeeded or failed) and returns them,
/// polling `GET /tasks`. A task Meilisearch no longer knows (pruned from its task queue)
/// finished long ago and is left out. Gives up with `Unavailable` after `limit`.
pub async fn wait_for_tasks(
    client: &Client,
    uids: &[u32],
    limit: Duration,
) -> Result<Vec<Task>, SearchError> {
    let deadline = Instant::now() + limit;
    let mut interval = Duration::from_millis(10);
    let mut finished = Vec::with_capacity(uids.len());
    let mut waiting: Vec<u32> = uids.to_vec();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for chunk in waiting.chunks(TASKS_PER_QUERY) {
            let mut query = TasksSearchQuery::new(client);
            query.with_uids(chunk).with_limit(chunk.len() as u32);
            let page = call(query.execute()).await?;
            for task in page.results {
                match task {
                    Task::Enqueued { .. } | Task::Processing { .. } => still.push(task.get_uid()),
                    Task::Failed { .. } | Task::Succeeded { .. } => finished.push(task),
                }
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if Instant::now() + interval > deadline {
            return Err(SearchError::Unavailable(format!(
                "{} meilisearch task(s) still pending after {} ms",
                waiting.len(),
                limit.as_millis()
            )));
        }
        sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(50));
    }
    Ok(finished)
}

/// The first failure among `tasks`, as an `Internal` error.
pub fn first_failure(tasks: &[Task]) -> Result<(), SearchError> {
    for task in tasks {
        if let Task::Failed { content } = task {
            return Err(SearchError::Internal(format!(
                "meilisearch task {} failed: {}",
                content.task.uid, content.error
            )));
        }
    }
    Ok(())
}
