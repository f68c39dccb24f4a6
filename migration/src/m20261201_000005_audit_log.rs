//! The moderation audit log (CONTRACT.md "Moderation plugins", the audit log lines).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Contexts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    ContextId,
    ContextType,
    Action,
    ActorId,
    TargetId,
    Outcome,
    Reason,
    Plugin,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(AuditLog::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AuditLog::ContextId).uuid().not_null())
                    .col(
                        ColumnDef::new(AuditLog::ContextType)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditLog::Action).string_len(32).not_null())
                    .col(ColumnDef::new(AuditLog::ActorId).uuid().null())
                    .col(ColumnDef::new(AuditLog::TargetId).uuid().null())
                    .col(ColumnDef::new(AuditLog::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(AuditLog::Reason).text().null())
                    .col(ColumnDef::new(AuditLog::Plugin).string_len(128).null())
                    .col(ColumnDef::new(AuditLog::CreatedAt).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(AuditLog::Table, AuditLog::ContextId)
                            .to(Contexts::Table, Contexts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_context")
                    .table(AuditLog::Table)
                    .col(AuditLog::ContextId)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await?;
        Ok(())
    }
}
