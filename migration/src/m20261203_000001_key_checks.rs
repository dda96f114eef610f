use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyChecks {
    Table,
    Version,
    CheckValue,
    RecordedAt,
}

/// The check value of every master-key version any process has held: a process whose keyring
/// holds the same version number with other key material refuses to start.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyChecks::Table)
                    .col(integer(KeyChecks::Version).primary_key())
                    .col(string(KeyChecks::CheckValue))
                    .col(timestamp_with_time_zone(KeyChecks::RecordedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KeyChecks::Table).to_owned())
            .await
    }
}
