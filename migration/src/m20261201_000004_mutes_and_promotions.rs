//! Mutes that outlive a membership, and at most one group promoted from a conversation.
//!
//! A mute belongs to the member and the context until it expires, whatever membership
//! does in between (leaving and joining again does not lift it), so it is kept in its own
//! table rather than only on the membership row. Promotion is guarded by a unique index on
//! `contexts.promoted_from` (NULLs are distinct on SQLite and PostgreSQL alike).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Contexts {
    Table,
    Id,
    PromotedFrom,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ContextMutes {
    Table,
    ContextId,
    MemberId,
    MutedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ContextMutes::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ContextMutes::ContextId).uuid().not_null())
                    .col(ColumnDef::new(ContextMutes::MemberId).uuid().not_null())
                    .col(
                        ColumnDef::new(ContextMutes::MutedUntil)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ContextMutes::ContextId)
                            .col(ContextMutes::MemberId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContextMutes::Table, ContextMutes::ContextId)
                            .to(Contexts::Table, Contexts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContextMutes::Table, ContextMutes::MemberId)
                            .to(Members::Table, Members::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Mutes running at the upgrade become standing mutes too.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO context_mutes (context_id, member_id, muted_until) \
                 SELECT context_id, member_id, muted_until FROM context_members \
                 WHERE muted_until IS NOT NULL",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_context_mutes_until")
                    .table(ContextMutes::Table)
                    .col(ContextMutes::MutedUntil)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_contexts_promoted_from")
                    .table(Contexts::Table)
                    .col(Contexts::PromotedFrom)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("uq_contexts_promoted_from")
                    .table(Contexts::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ContextMutes::Table).to_owned())
            .await?;
        Ok(())
    }
}
