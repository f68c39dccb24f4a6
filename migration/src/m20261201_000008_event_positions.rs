//! Event positions without a global lock on PostgreSQL.
//!
//! Until now every event-writing transaction took its sequence numbers from the one
//! `event_seq` row, which stays locked until commit: commits went one at a time across the
//! whole cluster. On PostgreSQL positions now come from the sequence `event_positions`
//! (no lock is held; the outbox relay publishes a position only once every transaction
//! that could still commit a lower one has ended, see `events::outbox`). It starts where
//! the counter stopped. SQLite has one writer and keeps the counter.
//!
//! Both backends also record `events.pruned_through` in `server_meta`, the highest position
//! pruning has deleted: with positions that may have holes (a rolled-back transaction's),
//! a missing row no longer means a pruned one, so readers ask this instead.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            // CACHE 1 (the default) keeps positions increasing in the order they are taken
            // across sessions, which the relay's reasoning relies on.
            db.execute_unprepared("CREATE SEQUENCE IF NOT EXISTS event_positions CACHE 1")
                .await?;
            db.execute_unprepared(
                "SELECT setval('event_positions', GREATEST(value, 1), value > 0) \
                 FROM event_seq WHERE id = 1",
            )
            .await?;
        }
        // Whatever is older than the oldest row left has been pruned.
        db.execute_unprepared(
            "INSERT INTO server_meta (name, value) SELECT 'events.pruned_through', \
               CAST(COALESCE((SELECT MIN(seq) - 1 FROM events), \
                             (SELECT value FROM event_seq WHERE id = 1), 0) AS TEXT)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "UPDATE event_seq SET value = GREATEST(value, \
                   (SELECT COALESCE(MAX(seq), 0) FROM events)) WHERE id = 1",
            )
            .await?;
            db.execute_unprepared("DROP SEQUENCE IF EXISTS event_positions")
                .await?;
        }
        db.execute_unprepared("DELETE FROM server_meta WHERE name = 'events.pruned_through'")
            .await?;
        Ok(())
    }
}
