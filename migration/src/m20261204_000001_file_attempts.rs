use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Files {
    Table,
    Attempts,
    LeaseHolder,
    LeaseUntil,
}

/// How often validate and encrypt have run on a file, and which run holds it until when: a run
/// keeps its lease fresh while it works, so the sweep never queues a second copy of live work,
/// and a file whose runs keep failing ends `rejected` instead of being retried for ever.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        let columns = [
            integer(Files::Attempts).default(0).to_owned(),
            uuid_null(Files::LeaseHolder),
            timestamp_with_time_zone_null(Files::LeaseUntil),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Files::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Files::LeaseUntil, Files::LeaseHolder, Files::Attempts] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Files::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
