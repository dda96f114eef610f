use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ReceiptPreferences {
    Table,
    UserId,
    OnNewShares,
    Daily,
    DigestSentAt,
}

#[derive(DeriveIden)]
enum Shares {
    Table,
    Receipts,
}

#[derive(DeriveIden)]
enum DownloadReceipts {
    Table,
    Id,
    OwnerId,
    ShareId,
    FileName,
    Recipient,
    DownloadedAt,
    Ip,
    UserAgent,
    SentAt,
}

/// Download receipts: a share may tell its owner when a recipient completes a download, at
/// once or in one email a day (the owner's preference, in `receipt_preferences`, which also says
/// whether new shares ask for receipts; no row: off, at once). Each receipt waits in
/// `download_receipts` until its email went out.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReceiptPreferences::Table)
                    .col(uuid(ReceiptPreferences::UserId).primary_key())
                    .col(boolean(ReceiptPreferences::OnNewShares).default(false))
                    .col(boolean(ReceiptPreferences::Daily).default(false))
                    .col(timestamp_with_time_zone_null(
                        ReceiptPreferences::DigestSentAt,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Shares::Table)
                    .add_column(boolean(Shares::Receipts).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DownloadReceipts::Table)
                    .col(uuid(DownloadReceipts::Id).primary_key())
                    .col(uuid(DownloadReceipts::OwnerId))
                    .col(uuid(DownloadReceipts::ShareId))
                    .col(string(DownloadReceipts::FileName))
                    .col(string_null(DownloadReceipts::Recipient))
                    .col(timestamp_with_time_zone(DownloadReceipts::DownloadedAt))
                    .col(string_null(DownloadReceipts::Ip))
                    .col(string_null(DownloadReceipts::UserAgent))
                    .col(timestamp_with_time_zone_null(DownloadReceipts::SentAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("download_receipts_waiting")
                    .table(DownloadReceipts::Table)
                    .col(DownloadReceipts::SentAt)
                    .col(DownloadReceipts::OwnerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DownloadReceipts::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Shares::Table)
                    .drop_column(Shares::Receipts)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ReceiptPreferences::Table).to_owned())
            .await
    }
}
