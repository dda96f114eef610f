use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyVersions {
    Table,
    Version,
    State,
    CreatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum KeyRotations {
    Table,
    Id,
    FromVersion,
    ToVersion,
    Total,
    Done,
    State,
    StartedAt,
    UpdatedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KeyVersions::Table)
                    .col(integer(KeyVersions::Version).primary_key())
                    .col(string(KeyVersions::State))
                    .col(timestamp_with_time_zone(KeyVersions::CreatedAt))
                    .col(timestamp_with_time_zone_null(KeyVersions::RetiredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(KeyRotations::Table)
                    .col(pk_uuid(KeyRotations::Id))
                    .col(integer(KeyRotations::FromVersion))
                    .col(integer(KeyRotations::ToVersion))
                    .col(big_integer(KeyRotations::Total))
                    .col(big_integer(KeyRotations::Done))
                    .col(string(KeyRotations::State))
                    .col(timestamp_with_time_zone(KeyRotations::StartedAt))
                    .col(timestamp_with_time_zone(KeyRotations::UpdatedAt))
                    .col(timestamp_with_time_zone_null(KeyRotations::FinishedAt))
                    .to_owned(),
            )
            .await?;
        // Rotation looks for keys wrapped under other versions.
        for (name, column) in [
            ("idx_files_dek_kek_version", "dek_kek_version"),
            ("idx_files_quarantine_kek_version", "quarantine_kek_version"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Alias::new("files"))
                        .col(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KeyRotations::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(KeyVersions::Table).to_owned())
            .await
    }
}
