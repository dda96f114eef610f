use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Shares {
    Table,
    Id,
    FileId,
    OwnerId,
    Recipient,
    TokenHash,
    State,
    ExpiresAt,
    MaxDownloads,
    DownloadsUsed,
    PasswordHash,
    Message,
    LastError,
    CreatedAt,
    EmailedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Files {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Shares::Table)
                    .col(pk_uuid(Shares::Id))
                    .col(uuid(Shares::FileId))
                    .col(uuid(Shares::OwnerId))
                    .col(string_null(Shares::Recipient))
                    .col(blob_null(Shares::TokenHash).unique_key())
                    .col(string(Shares::State))
                    .col(timestamp_with_time_zone(Shares::ExpiresAt))
                    .col(integer_null(Shares::MaxDownloads))
                    .col(integer(Shares::DownloadsUsed).default(0))
                    .col(string_null(Shares::PasswordHash))
                    .col(text_null(Shares::Message))
                    .col(text_null(Shares::LastError))
                    .col(timestamp_with_time_zone(Shares::CreatedAt))
                    .col(timestamp_with_time_zone_null(Shares::EmailedAt))
                    .col(timestamp_with_time_zone_null(Shares::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Shares::Table, Shares::FileId)
                            .to(Files::Table, Files::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_shares_file_id")
                    .table(Shares::Table)
                    .col(Shares::FileId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_shares_state_expires")
                    .table(Shares::Table)
                    .col(Shares::State)
                    .col(Shares::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Shares::Table).to_owned())
            .await
    }
}
