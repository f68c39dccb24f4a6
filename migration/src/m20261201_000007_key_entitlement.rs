//! Key entitlement on the membership: `context_members.key_epoch_from`, the first epoch a
//! member may read. Wrapped copies of epoch keys are made lazily, on a member's first read
//! of `…/keys`, so rotation no longer writes a copy for every member; the listing reads
//! this column to know which epochs a member is entitled to.
//!
//! Existing rows are backfilled from the copies they hold (their oldest epoch: copies were
//! made for every epoch from there on), or the context's current epoch when they hold none.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ContextMembers {
    Table,
    ContextId,
    Role,
    JoinedAt,
    MemberId,
    KeyEpochFrom,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The default only serves rows present now (backfilled below); every insert sets it.
        manager
            .alter_table(
                Table::alter()
                    .table(ContextMembers::Table)
                    .add_column(
                        ColumnDef::new(ContextMembers::KeyEpochFrom)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE context_members SET key_epoch_from = COALESCE( \
                   (SELECT MIN(mk.epoch) FROM member_keys mk \
                     WHERE mk.context_id = context_members.context_id \
                       AND mk.member_id = context_members.member_id), \
                   (SELECT c.current_epoch FROM contexts c \
                     WHERE c.id = context_members.context_id), \
                   0)",
            )
            .await?;
        // Finding an heir when the owner goes: the first member of a role, by seniority.
        manager
            .create_index(
                Index::create()
                    .name("idx_context_members_role")
                    .table(ContextMembers::Table)
                    .col(ContextMembers::ContextId)
                    .col(ContextMembers::Role)
                    .col(ContextMembers::JoinedAt)
                    .col(ContextMembers::MemberId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_context_members_role")
                    .table(ContextMembers::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ContextMembers::Table)
                    .drop_column(ContextMembers::KeyEpochFrom)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
