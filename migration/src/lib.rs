//! Database migrations, run on every start (`brightchat migrate` runs them alone).

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_members_and_dms;
mod m20261129_000002_contexts;
mod m20261129_000003_events;
mod m20261201_000004_mutes_and_promotions;
mod m20261201_000005_audit_log;
mod m20261201_000006_plugins;
mod m20261201_000007_key_entitlement;
mod m20261201_000008_event_positions;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_members_and_dms::Migration),
            Box::new(m20261129_000002_contexts::Migration),
            Box::new(m20261129_000003_events::Migration),
            Box::new(m20261201_000004_mutes_and_promotions::Migration),
            Box::new(m20261201_000005_audit_log::Migration),
            Box::new(m20261201_000006_plugins::Migration),
            Box::new(m20261201_000007_key_entitlement::Migration),
            Box::new(m20261201_000008_event_positions::Migration),
        ]
    }
}
