//! Index settings, applied on every start. Meilisearch treats a settings update that
//! changes nothing as a no-op task, so applying them again is cheap and safe.

use std::time::Duration;

use meilisearch_sdk::client::Client;
use meilisearch_sdk::errors::ErrorCode;
use meilisearch_sdk::indexes::Index;
use meilisearch_sdk::settings::{
    PaginationSetting, PrefixSearchSettings, Settings, TypoToleranceSettings,
};
use meilisearch_sdk::tasks::Task;

use super::MAX_HITS;
use super::calls::{call, call_if_index_exists, first_failure, wait_for_tasks};
use crate::search::SearchError;

/// Relevance first (Meilisearch's default rules), then newest first: the trailing
/// `desc` rules order hits of equal relevance by message id, descending. They do not
/// count in `_rankingScore`.
const RANKING_RULES: [&str; 9] = [
    "words",
    "typo",
    "proximity",
    "attribute",
    "sort",
    "exactness",
    "idHi:desc",
    "idMid:desc",
    "idLo:desc",
];

fn message_settings() -> Settings {
    Settings::new()
        .with_searchable_attributes(["text"])
        .with_filterable_attributes([
            "channelId",
            "senderId",
            "createdAt",
            "idHi",
            "idMid",
            "idLo",
        ])
        .with_sortable_attributes(["createdAt", "idHi", "idMid", "idLo"])
        .with_ranking_rules(RANKING_RULES)
        .with_typo_tolerance(TypoToleranceSettings {
            enabled: Some(false),
            ..TypoToleranceSettings::default()
        })
        .with_pagination(PaginationSetting {
            max_total_hits: MAX_HITS,
        })
}

fn meta_settings() -> Settings {
    Settings::new()
        .with_filterable_attributes(["seq"])
        .with_sortable_attributes(["seq"])
}

/// Creates both indexes (primary key `id`) if needed, applies their settings and waits
/// up to `limit` for Meilisearch to take them.
pub async fn apply(
    client: &Client,
    index: &Index,
    meta: &Index,
    limit: Duration,
) -> Result<(), SearchError> {
    let mut tasks = Vec::new();
    for (target, settings) in [(index, message_settings()), (meta, meta_settings())] {
        match call_if_index_exists(client.get_index(&target.uid)).await? {
            Some(found) => check_primary_key(&found)?,
            None => tasks.push(
                call(client.create_index(&target.uid, Some("id")))
                    .await?
                    .task_uid,
            ),
        }
        tasks.push(call(target.set_settings(&settings)).await?.task_uid);
    }
    tasks.push(
        call(index.set_prefix_search(PrefixSearchSettings::Disabled))
            .await?
            .task_uid,
    );
    let done = wait_for_tasks(client, &tasks, limit).await?;
    // Another node may have created an index between our look and our creation.
    let refused: Vec<Task> = done
        .into_iter()
        .filter(|task| !already_exists(task))
        .collect();
    first_failure(&refused)
}

/// The messages are keyed by `id`. `None` is an index made elsewhere and still empty: the
/// first upsert names the key.
fn check_primary_key(found: &Index) -> Result<(), SearchError> {
    match found.primary_key.as_deref() {
        Some(key) if key != "id" => Err(SearchError::Internal(format!(
            "meilisearch index {} has primary key {key:?}, expected \"id\"",
            found.uid
        ))),
        _ => Ok(()),
    }
}

/// An index creation refused because the index is there already.
fn already_exists(task: &Task) -> bool {
    matches!(task, Task::Failed { content } if content.error.error_code == ErrorCode::IndexAlreadyExists)
}
