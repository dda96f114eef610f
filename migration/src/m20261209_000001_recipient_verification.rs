use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Shares {
    Table,
    VerifyRecipient,
}

#[derive(DeriveIden)]
enum RecipientVerifications {
    Table,
    Id,
    ShareId,
    SecretHash,
    Kind,
    CreatedAt,
    ExpiresAt,
    Failures,
}

/// A share may ask its recipient to prove the address it was sent to before the download: a
/// six-digit code emailed on request, which, once typed in, gives that browser a verified
/// session of the link. Both are kept as SHA-256 only. Shares made before ask for nothing.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Shares::Table)
                    .add_column(boolean(Shares::VerifyRecipient).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecipientVerifications::Table)
                    .col(uuid(RecipientVerifications::Id).primary_key())
                    .col(uuid(RecipientVerifications::ShareId))
                    .col(string_len(RecipientVerifications::Kind, 16))
                    .col(binary(RecipientVerifications::SecretHash))
                    .col(timestamp_with_time_zone(RecipientVerifications::CreatedAt))
                    .col(timestamp_with_time_zone(RecipientVerifications::ExpiresAt))
                    .col(integer(RecipientVerifications::Failures).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recipient_verifications_share")
                    .table(RecipientVerifications::Table)
                    .col(RecipientVerifications::ShareId)
                    .col(RecipientVerifications::Kind)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RecipientVerifications::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Shares::Table)
                    .drop_column(Shares::VerifyRecipient)
                    .to_owned(),
            )
            .await
    }
}
