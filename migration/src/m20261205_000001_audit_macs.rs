use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    MacVersion,
    Mac,
}

#[derive(DeriveIden)]
enum AuditKeys {
    Table,
    Version,
    PublicKey,
    RecordedAt,
}

#[derive(DeriveIden)]
enum AuditCheckpoints {
    Table,
    Seq,
    Hash,
    KeyVersion,
    WrittenAt,
}

/// Audit events carry a MAC under the audit key (kept with the master keys, never here) from
/// the moment they are written; events written before this migration have none and keep the
/// first encoding. `audit_keys` records each audit-key version's public key, so a process
/// given another audit key refuses to start; `audit_checkpoints` records the signed
/// checkpoints the sealer wrote to the blob store.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        for mut column in [
            integer_null(AuditEvents::MacVersion),
            binary_null(AuditEvents::Mac),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditEvents::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(AuditKeys::Table)
                    .col(integer(AuditKeys::Version).primary_key())
                    .col(string(AuditKeys::PublicKey))
                    .col(timestamp_with_time_zone(AuditKeys::RecordedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditCheckpoints::Table)
                    .col(big_integer(AuditCheckpoints::Seq).primary_key())
                    .col(binary(AuditCheckpoints::Hash))
                    .col(integer(AuditCheckpoints::KeyVersion))
                    .col(timestamp_with_time_zone(AuditCheckpoints::WrittenAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditCheckpoints::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuditKeys::Table).to_owned())
            .await?;
        for column in [AuditEvents::Mac, AuditEvents::MacVersion] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditEvents::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
