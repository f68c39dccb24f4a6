//! Database connections, migrations and the server-key check.
//!
//! SQLite (the default) runs in WAL mode with one writer connection, so writes are
//! serialised in the pool rather than failing with `SQLITE_BUSY`, and a pool of readers.
//! PostgreSQL uses two pools, one for writes and one for reads, so writes queued on a
//! busy context never starve reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait, Set,
    TransactionTrait,
};

use crate::config::Config;
use crate::crypto::ServerKey;

/// The connections the service layer uses.
#[derive(Clone, Debug)]
pub struct Db {
    /// For transactions and writes.
    pub write: DatabaseConnection,
    /// For reads that need no transaction.
    pub read: DatabaseConnection,
    /// Statements run so far on both (for metrics, and for tests that count queries).
    pub statements: Arc<AtomicU64>,
}

impl Db {
    /// The backend in use.
    pub fn backend(&self) -> DbBackend {
        self.write.get_database_backend()
    }

    /// Statements run so far.
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        self.read.ping().await.is_ok()
    }
}

/// Connects to the configured database, creating the data dir and SQLite file as needed.
pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    let url = config.effective_database_url();
    let statements = Arc::new(AtomicU64::new(0));
    let count = |conn: &mut DatabaseConnection| {
        let statements = statements.clone();
        conn.set_metric_callback(move |_| {
            statements.fetch_add(1, Ordering::Relaxed);
        });
    };
    if config.is_sqlite() {
        let mut writer = Database::connect(sqlite_options(&url, 1)).await?;
        let mut reader = Database::connect(sqlite_options(&url, 4)).await?;
        count(&mut writer);
        count(&mut reader);
        Ok(Db {
            write: writer,
            read: reader,
            statements,
        })
    } else {
        // Two pools: writes (which may wait on a context's row lock) can never use up the
        // connections reads need.
        let mut writer = Database::connect(postgres_options(&url, config)).await?;
        let mut reader = Database::connect(postgres_options(&url, config)).await?;
        count(&mut writer);
        count(&mut reader);
        Ok(Db {
            write: writer,
            read: reader,
            statements,
        })
    }
}

/// PostgreSQL pool settings. Waits are bounded so an overloaded server answers 503 instead
/// of queueing without end: a connection within 5 s, a row lock within `lock_wait`
/// (`lock_timeout`).
fn postgres_options(url: &str, config: &Config) -> ConnectOptions {
    let lock_timeout = format!("{}ms", config.lock_wait.as_millis());
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(config.db_pool)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(move |opts| {
            opts.options([("lock_timeout", lock_timeout.as_str())])
        });
    options
}

fn sqlite_options(url: &str, connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .create_if_missing(true)
        });
    options
}

/// Runs pending migrations. On PostgreSQL an advisory lock makes concurrent starts of
/// several nodes safe: one migrates, the others wait and find nothing left to do.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    match db.backend() {
        DbBackend::Postgres => {
            let txn = db.write.begin().await?;
            // Another node may be migrating: wait for it as long as it takes.
            txn.execute_unprepared("SET LOCAL lock_timeout = 0").await?;
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7342001)")
                .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await?;
        }
        _ => Migrator::up(&db.write, None).await?,
    }
    Ok(())
}

/// Records the server's public key on first use and refuses a different key afterwards,
/// so a node with the wrong key cannot write data the others cannot read.
pub async fn check_server_key(db: &Db, key: &ServerKey) -> anyhow::Result<()> {
    use entity::server_meta;
    const NAME: &str = "server_public_key";
    let ours = hex::encode(key.public_key());
    let stored = server_meta::Entity::find_by_id(NAME.to_owned())
        .one(&db.write)
        .await?;
    match stored {
        Some(row) if row.value == ours => Ok(()),
        Some(row) => anyhow::bail!(
            "the server key does not match the one this database was first used with \
             (expected public key {}, have {ours}); set BRIGHTCHAT_SERVER_KEY or restore server.key",
            row.value
        ),
        None => {
            let row = server_meta::ActiveModel {
                name: Set(NAME.to_owned()),
                value: Set(ours),
            };
            server_meta::Entity::insert(row)
                .on_conflict_do_nothing()
                .exec_without_returning(&db.write)
                .await?;
            // Another node may have won the race with a different key: check again.
            let row = server_meta::Entity::find_by_id(NAME.to_owned())
                .one(&db.write)
                .await?
                .ok_or_else(|| anyhow::anyhow!("server key record vanished"))?;
            anyhow::ensure!(
                row.value == hex::encode(key.public_key()),
                "another node recorded a different server key for this database"
            );
            Ok(())
        }
    }
}

/// Rows (or ids in an `IN` list) per statement. SQLite binds at most 32,766 parameters and
/// PostgreSQL 65,535, so a statement about every member of a large channel is cut into
/// pieces of this size (at 10 columns a row, 10,000 parameters).
pub const ROWS_PER_STATEMENT: usize = 1_000;
