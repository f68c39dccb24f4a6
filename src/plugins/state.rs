//! Plugins' persistent state (`state_get`, `state_set`, `state_incr`), scoped per plugin.
//!
//! The server keeps it in the database ([`DbStateStore`]): `state_incr` is one atomic
//! upsert, so counts are exact under concurrency and across nodes. `plugins run` uses
//! [`MemoryStateStore`], which touches no database.

use std::collections::HashMap;
use std::sync::Mutex;

use entity::plugin_state;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, Set,
    Statement,
};
use serde_json::Value;

/// Where plugin state lives. Calls are blocking: hooks run on blocking threads.
pub trait StateStore: Send + Sync {
    /// The value or counter under `key`, unless missing or expired.
    fn get(&self, plugin: &str, key: &str, now_ms: i64) -> Result<Option<Value>, String>;
    /// Stores a value (a `ttl_ms` makes it expire that long from now).
    fn set(
        &self,
        plugin: &str,
        key: &str,
        value: &Value,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), String>;
    /// Adds `by` to the counter under `key` and returns the new count. A `ttl_ms` runs
    /// from the key's creation: an expired key starts again from zero.
    fn incr(
        &self,
        plugin: &str,
        key: &str,
        by: i64,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<i64, String>;
}

/// State in the server's database.
pub struct DbStateStore {
    db: DatabaseConnection,
    runtime: tokio::runtime::Handle,
}

impl DbStateStore {
    /// Needs the runtime the database connection runs on; call it from inside it.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn block<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, sea_orm::DbErr>>,
    ) -> Result<T, String> {
        self.runtime.block_on(future).map_err(|err| {
            tracing::warn!(error = %err, "plugin state could not be read or written");
            "plugin state is unavailable right now".to_owned()
        })
    }

    /// Deletes expired keys.
    pub async fn prune(db: &DatabaseConnection, now_ms: i64) -> Result<u64, sea_orm::DbErr> {
        let done = plugin_state::Entity::delete_many()
            .filter(plugin_state::Column::ExpiresAt.lte(now_ms))
            .exec(db)
            .await?;
        Ok(done.rows_affected)
    }
}

fn live(row: &plugin_state::Model, now_ms: i64) -> bool {
    row.expires_at.is_none_or(|at| at > now_ms)
}

impl StateStore for DbStateStore {
    fn get(&self, plugin: &str, key: &str, now_ms: i64) -> Result<Option<Value>, String> {
        let row = self.block(
            plugin_state::Entity::find_by_id((plugin.to_owned(), key.to_owned())).one(&self.db),
        )?;
        Ok(row
            .filter(|row| live(row, now_ms))
            .map(|row| match row.value {
                Some(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
                None => Value::from(row.counter),
            }))
    }

    fn set(
        &self,
        plugin: &str,
        key: &str,
        value: &Value,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), String> {
        let row = plugin_state::ActiveModel {
            plugin: Set(plugin.to_owned()),
            name: Set(key.to_owned()),
            value: Set(Some(value.to_string())),
            // An integer set here counts on from itself under `state_incr`.
            counter: Set(value.as_i64().unwrap_or(0)),
            expires_at: Set(ttl_ms.map(|ttl| now_ms.saturating_add(ttl))),
        };
        self.block(async {
            plugin_state::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([plugin_state::Column::Plugin, plugin_state::Column::Name])
                        .update_columns([
                            plugin_state::Column::Value,
                            plugin_state::Column::Counter,
                            plugin_state::Column::ExpiresAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await
                .map(|_| ())
        })
    }

    fn incr(
        &self,
        plugin: &str,
        key: &str,
        by: i64,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<i64, String> {
        let backend = self.db.get_database_backend();
        // One statement: insert, or add to a live counter, or start an expired one again.
        let sql = |p: &dyn Fn(usize) -> String| {
            format!(
                "INSERT INTO plugin_state (plugin, name, value, counter, expires_at) \
                 VALUES ({}, {}, NULL, {}, {}) \
                 ON CONFLICT (plugin, name) DO UPDATE SET \
                 counter = CASE WHEN plugin_state.expires_at IS NOT NULL AND plugin_state.expires_at <= {now} \
                   THEN excluded.counter ELSE plugin_state.counter + excluded.counter END, \
                 expires_at = CASE WHEN plugin_state.expires_at IS NOT NULL AND plugin_state.expires_at <= {now} \
                   THEN excluded.expires_at ELSE plugin_state.expires_at END, \
                 value = NULL \
                 RETURNING counter",
                p(1),
                p(2),
                p(3),
                p(4),
                now = p(5),
            )
        };
        let text = match backend {
            DbBackend::Postgres => sql(&|n| format!("${n}")),
            _ => sql(&|n| format!("?{n}")),
        };
        let statement = Statement::from_sql_and_values(
            backend,
            text,
            [
                plugin.into(),
                key.into(),
                by.into(),
                ttl_ms.map(|ttl| now_ms.saturating_add(ttl)).into(),
                now_ms.into(),
            ],
        );
        let row = self.block(self.db.query_one_raw(statement))?;
        let row = row.ok_or_else(|| "plugin state returned nothing".to_owned())?;
        row.try_get::<i64>("", "counter")
            .map_err(|err| format!("plugin state: {err}"))
    }
}

/// Rows of the in-memory store: (plugin, key) → (value, expiry).
type MemoryRows = HashMap<(String, String), (Value, Option<i64>)>;

/// State in memory, for `plugins run` and unit tests.
#[derive(Default)]
pub struct MemoryStateStore {
    rows: Mutex<MemoryRows>,
}

impl MemoryStateStore {
    /// Seeds a key (from `plugins run --state`).
    pub fn insert(&self, plugin: &str, key: &str, value: Value) {
        self.lock()
            .insert((plugin.to_owned(), key.to_owned()), (value, None));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryRows> {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl StateStore for MemoryStateStore {
    fn get(&self, plugin: &str, key: &str, now_ms: i64) -> Result<Option<Value>, String> {
        Ok(self
            .lock()
            .get(&(plugin.to_owned(), key.to_owned()))
            .filter(|(_, exp)| exp.is_none_or(|at| at > now_ms))
            .map(|(v, _)| v.clone()))
    }

    fn set(
        &self,
        plugin: &str,
        key: &str,
        value: &Value,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), String> {
        self.lock().insert(
            (plugin.to_owned(), key.to_owned()),
            (value.clone(), ttl_ms.map(|t| now_ms + t)),
        );
        Ok(())
    }

    fn incr(
        &self,
        plugin: &str,
        key: &str,
        by: i64,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<i64, String> {
        let mut rows = self.lock();
        let entry = rows
            .entry((plugin.to_owned(), key.to_owned()))
            .or_insert((Value::from(0), ttl_ms.map(|t| now_ms + t)));
        if entry.1.is_some_and(|at| at <= now_ms) {
            *entry = (Value::from(0), ttl_ms.map(|t| now_ms + t));
        }
        let next = entry.0.as_i64().unwrap_or(0).saturating_add(by);
        entry.0 = Value::from(next);
        Ok(next)
    }
}
