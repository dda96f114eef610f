use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KmsWrappedKeys {
    Table,
    Kind,
    Version,
    WrappedBy,
    Wrapped,
    WrappedAt,
}

/// Master and audit keys wrapped by an HSM or KMS (`COFFER_KMS`): one row per key, naming the
/// HSM or KMS key that wrapped it. Empty while the keys are in a keyring file.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KmsWrappedKeys::Table)
                    .col(string(KmsWrappedKeys::Kind))
                    .col(integer(KmsWrappedKeys::Version))
                    .col(string(KmsWrappedKeys::WrappedBy))
                    .col(binary(KmsWrappedKeys::Wrapped))
                    .col(timestamp_with_time_zone(KmsWrappedKeys::WrappedAt))
                    .primary_key(
                        Index::create()
                            .col(KmsWrappedKeys::Kind)
                            .col(KmsWrappedKeys::Version),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KmsWrappedKeys::Table).to_owned())
            .await
    }
}
