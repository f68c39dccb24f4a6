//! What moderation plugins need: their persistent state, a context's raid lock and slow
//! mode, and indexes for the facts a hook gets without queries of its own (a member's
//! messages in a context, a context's recent joins).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Contexts {
    Table,
    LockedUntil,
    LockReason,
    SlowModeSecs,
    SlowModeUntil,
}

#[derive(DeriveIden)]
enum ContextMessages {
    Table,
    ContextId,
    SenderId,
    Id,
}

#[derive(DeriveIden)]
enum ContextMembers {
    Table,
    ContextId,
    JoinedAt,
}

#[derive(DeriveIden)]
enum PluginState {
    Table,
    Plugin,
    Name,
    Value,
    Counter,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PluginState::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PluginState::Plugin)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(PluginState::Name).string_len(256).not_null())
                    .col(ColumnDef::new(PluginState::Value).text().null())
                    .col(
                        ColumnDef::new(PluginState::Counter)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(PluginState::ExpiresAt).big_integer().null())
                    .primary_key(
                        Index::create()
                            .col(PluginState::Plugin)
                            .col(PluginState::Name),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_plugin_state_expiry")
                    .table(PluginState::Table)
                    .col(PluginState::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite adds one column at a time.
        for column in [
            ColumnDef::new(Contexts::LockedUntil)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Contexts::LockReason)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(Contexts::SlowModeSecs)
                .integer()
                .null()
                .to_owned(),
            ColumnDef::new(Contexts::SlowModeUntil)
                .big_integer()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Contexts::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_context_messages_sender")
                    .table(ContextMessages::Table)
                    .col(ContextMessages::ContextId)
                    .col(ContextMessages::SenderId)
                    .col(ContextMessages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_context_members_joined")
                    .table(ContextMembers::Table)
                    .col(ContextMembers::ContextId)
                    .col(ContextMembers::JoinedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PluginState::Table).to_owned())
            .await?;
        Ok(())
    }
}
