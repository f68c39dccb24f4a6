//! Groups and channels ("contexts"): members and roles, key epochs, messages, edits,
//! reactions, channel invites.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Contexts {
    Table,
    Id,
    Kind,
    Name,
    UniqueName,
    CreatorId,
    CreatedAt,
    LastMessageAt,
    ActivityAt,
    LastIssuedId,
    CurrentEpoch,
    PromotedFrom,
    Topic,
    Visibility,
    HistoryVisible,
}

#[derive(DeriveIden)]
enum ContextMembers {
    Table,
    ContextId,
    MemberId,
    Role,
    JoinedAt,
    MutedUntil,
    HistoryAfter,
}

#[derive(DeriveIden)]
enum Invites {
    Table,
    TokenHash,
    ChannelId,
    CreatedBy,
    CreatedAt,
    MaxUses,
    Uses,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum EpochKeys {
    Table,
    ContextId,
    Epoch,
    CreatedAt,
    WrappedForServer,
}

#[derive(DeriveIden)]
enum MemberKeys {
    Table,
    ContextId,
    MemberId,
    Epoch,
    CreatedAt,
    Wrapped,
}

#[derive(DeriveIden)]
enum ContextMessages {
    Table,
    Id,
    ContextId,
    SenderId,
    CreatedAt,
    EditedAt,
    KeyEpoch,
    Ciphertext,
    PinnedAt,
    PinnedBy,
}

#[derive(DeriveIden)]
enum MessageEdits {
    Table,
    Id,
    MessageId,
    WrittenAt,
    KeyEpoch,
    Ciphertext,
}

#[derive(DeriveIden)]
enum Reactions {
    Table,
    Id,
    MessageId,
    MemberId,
    Emoji,
    CreatedAt,
}

fn cascade(
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Contexts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Contexts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Contexts::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(Contexts::Name).string().not_null())
                    .col(
                        ColumnDef::new(Contexts::UniqueName)
                            .string()
                            .null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Contexts::CreatorId).uuid().not_null())
                    .col(ColumnDef::new(Contexts::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Contexts::LastMessageAt).big_integer().null())
                    .col(
                        ColumnDef::new(Contexts::ActivityAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Contexts::LastIssuedId).uuid().null())
                    .col(ColumnDef::new(Contexts::CurrentEpoch).integer().not_null())
                    .col(ColumnDef::new(Contexts::PromotedFrom).uuid().null())
                    .col(ColumnDef::new(Contexts::Topic).text().null())
                    .col(ColumnDef::new(Contexts::Visibility).string_len(16).null())
                    .col(
                        ColumnDef::new(Contexts::HistoryVisible)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_contexts_kind_activity")
                    .table(Contexts::Table)
                    .col(Contexts::Kind)
                    .col(Contexts::ActivityAt)
                    .col(Contexts::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ContextMembers::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ContextMembers::ContextId).uuid().not_null())
                    .col(ColumnDef::new(ContextMembers::MemberId).uuid().not_null())
                    .col(
                        ColumnDef::new(ContextMembers::Role)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContextMembers::JoinedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContextMembers::MutedUntil)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(ContextMembers::HistoryAfter).uuid().null())
                    .primary_key(
                        Index::create()
                            .col(ContextMembers::ContextId)
                            .col(ContextMembers::MemberId),
                    )
                    .foreign_key(&mut cascade(
                        (ContextMembers::Table, ContextMembers::ContextId),
                        (Contexts::Table, Contexts::Id),
                    ))
                    .foreign_key(&mut cascade(
                        (ContextMembers::Table, ContextMembers::MemberId),
                        (Members::Table, Members::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_context_members_member")
                    .table(ContextMembers::Table)
                    .col(ContextMembers::MemberId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EpochKeys::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(EpochKeys::ContextId).uuid().not_null())
                    .col(ColumnDef::new(EpochKeys::Epoch).integer().not_null())
                    .col(
                        ColumnDef::new(EpochKeys::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EpochKeys::WrappedForServer)
                            .binary()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(EpochKeys::ContextId)
                            .col(EpochKeys::Epoch),
                    )
                    .foreign_key(&mut cascade(
                        (EpochKeys::Table, EpochKeys::ContextId),
                        (Contexts::Table, Contexts::Id),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MemberKeys::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(MemberKeys::ContextId).uuid().not_null())
                    .col(ColumnDef::new(MemberKeys::MemberId).uuid().not_null())
                    .col(ColumnDef::new(MemberKeys::Epoch).integer().not_null())
                    .col(
                        ColumnDef::new(MemberKeys::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MemberKeys::Wrapped).binary().not_null())
                    .primary_key(
                        Index::create()
                            .col(MemberKeys::ContextId)
                            .col(MemberKeys::MemberId)
                            .col(MemberKeys::Epoch),
                    )
                    .foreign_key(&mut cascade(
                        (MemberKeys::Table, MemberKeys::ContextId),
                        (Contexts::Table, Contexts::Id),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ContextMessages::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ContextMessages::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ContextMessages::ContextId).uuid().not_null())
                    .col(ColumnDef::new(ContextMessages::SenderId).uuid().not_null())
                    .col(
                        ColumnDef::new(ContextMessages::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContextMessages::EditedAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ContextMessages::KeyEpoch)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContextMessages::Ciphertext)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContextMessages::PinnedAt)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(ContextMessages::PinnedBy).uuid().null())
                    .foreign_key(&mut cascade(
                        (ContextMessages::Table, ContextMessages::ContextId),
                        (Contexts::Table, Contexts::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_context_messages_context")
                    .table(ContextMessages::Table)
                    .col(ContextMessages::ContextId)
                    .col(ContextMessages::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MessageEdits::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(MessageEdits::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(MessageEdits::MessageId).uuid().not_null())
                    .col(
                        ColumnDef::new(MessageEdits::WrittenAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MessageEdits::KeyEpoch).integer().not_null())
                    .col(ColumnDef::new(MessageEdits::Ciphertext).binary().not_null())
                    .foreign_key(&mut cascade(
                        (MessageEdits::Table, MessageEdits::MessageId),
                        (ContextMessages::Table, ContextMessages::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_message_edits_message")
                    .table(MessageEdits::Table)
                    .col(MessageEdits::MessageId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Reactions::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Reactions::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Reactions::MessageId).uuid().not_null())
                    .col(ColumnDef::new(Reactions::MemberId).uuid().not_null())
                    .col(ColumnDef::new(Reactions::Emoji).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Reactions::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(&mut cascade(
                        (Reactions::Table, Reactions::MessageId),
                        (ContextMessages::Table, ContextMessages::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_reactions_message_member_emoji")
                    .table(Reactions::Table)
                    .col(Reactions::MessageId)
                    .col(Reactions::MemberId)
                    .col(Reactions::Emoji)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Invites::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Invites::TokenHash)
                            .binary()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Invites::ChannelId).uuid().not_null())
                    .col(ColumnDef::new(Invites::CreatedBy).uuid().not_null())
                    .col(ColumnDef::new(Invites::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Invites::MaxUses).integer().null())
                    .col(
                        ColumnDef::new(Invites::Uses)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Invites::ExpiresAt).big_integer().null())
                    .foreign_key(&mut cascade(
                        (Invites::Table, Invites::ChannelId),
                        (Contexts::Table, Contexts::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Invites::Table.into_iden(),
            Reactions::Table.into_iden(),
            MessageEdits::Table.into_iden(),
            ContextMessages::Table.into_iden(),
            MemberKeys::Table.into_iden(),
            EpochKeys::Table.into_iden(),
            ContextMembers::Table.into_iden(),
            Contexts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
