//! Members, sign-in, blocks and direct messages.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ServerMeta {
    Table,
    Name,
    Value,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
    DisplayName,
    PublicKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuthChallenges {
    Table,
    Challenge,
    MemberId,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuthTokens {
    Table,
    TokenHash,
    MemberId,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Blocks {
    Table,
    BlockerId,
    BlockedId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    MemberLow,
    MemberHigh,
    CreatedAt,
    LastMessageAt,
    LastMessageId,
    LastIssuedId,
}

#[derive(DeriveIden)]
enum DmMessages {
    Table,
    Id,
    ConversationId,
    SenderId,
    RecipientId,
    CreatedAt,
    CiphertextSender,
    CiphertextRecipient,
    CiphertextServer,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ServerMeta::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ServerMeta::Name)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ServerMeta::Value).text().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Members::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Members::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Members::DisplayName).string().not_null())
                    .col(
                        ColumnDef::new(Members::PublicKey)
                            .binary()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Members::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthChallenges::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuthChallenges::Challenge)
                            .binary()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuthChallenges::MemberId).uuid().not_null())
                    .col(
                        ColumnDef::new(AuthChallenges::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_auth_challenges_expires")
                    .table(AuthChallenges::Table)
                    .col(AuthChallenges::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthTokens::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AuthTokens::TokenHash)
                            .binary()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AuthTokens::MemberId).uuid().not_null())
                    .col(
                        ColumnDef::new(AuthTokens::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuthTokens::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(AuthTokens::Table, AuthTokens::MemberId)
                            .to(Members::Table, Members::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_auth_tokens_expires")
                    .table(AuthTokens::Table)
                    .col(AuthTokens::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Blocks::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Blocks::BlockerId).uuid().not_null())
                    .col(ColumnDef::new(Blocks::BlockedId).uuid().not_null())
                    .col(ColumnDef::new(Blocks::CreatedAt).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(Blocks::BlockerId)
                            .col(Blocks::BlockedId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Blocks::Table, Blocks::BlockerId)
                            .to(Members::Table, Members::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Blocks::Table, Blocks::BlockedId)
                            .to(Members::Table, Members::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Conversations::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Conversations::MemberLow).uuid().not_null())
                    .col(ColumnDef::new(Conversations::MemberHigh).uuid().not_null())
                    .col(
                        ColumnDef::new(Conversations::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Conversations::LastMessageAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Conversations::LastMessageId).uuid().null())
                    .col(ColumnDef::new(Conversations::LastIssuedId).uuid().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Conversations::Table, Conversations::MemberLow)
                            .to(Members::Table, Members::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Conversations::Table, Conversations::MemberHigh)
                            .to(Members::Table, Members::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_conversations_pair")
                    .table(Conversations::Table)
                    .col(Conversations::MemberLow)
                    .col(Conversations::MemberHigh)
                    .unique()
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_conversations_low_activity", Conversations::MemberLow),
            ("idx_conversations_high_activity", Conversations::MemberHigh),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Conversations::Table)
                        .col(col)
                        .col(Conversations::LastMessageAt)
                        .col(Conversations::Id)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(DmMessages::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(DmMessages::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(DmMessages::ConversationId).uuid().not_null())
                    .col(ColumnDef::new(DmMessages::SenderId).uuid().not_null())
                    .col(ColumnDef::new(DmMessages::RecipientId).uuid().not_null())
                    .col(
                        ColumnDef::new(DmMessages::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DmMessages::CiphertextSender)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DmMessages::CiphertextRecipient)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(DmMessages::CiphertextServer)
                            .binary()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(DmMessages::Table, DmMessages::ConversationId)
                            .to(Conversations::Table, Conversations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_dm_messages_conversation")
                    .table(DmMessages::Table)
                    .col(DmMessages::ConversationId)
                    .col(DmMessages::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DmMessages::Table.into_iden(),
            Conversations::Table.into_iden(),
            Blocks::Table.into_iden(),
            AuthTokens::Table.into_iden(),
            AuthChallenges::Table.into_iden(),
            Members::Table.into_iden(),
            ServerMeta::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
