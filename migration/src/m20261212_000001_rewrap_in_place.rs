use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A rotation rewrites every file's `dek` and `dek_kek_version`. With an index on the version,
/// PostgreSQL cannot update a row in place (a HOT update): each rewrap wrote a new entry into
/// every index of `files`, in the scale store at random pages of the owner and status indexes
/// (issue 17: 43,160 keys/s over 1,000,000, against 50,000 asked). Without that index, and with
/// a fifth of each new page left free, 95 % of the rewraps are in place and the same 1,000,000
/// updates take 18 s instead of 61 s (BENCHMARKS.md, "Rotation of 1,000,000 data keys"). The
/// index served only counts of a version's keys, which read the whole table either way, and
/// the lookup of one key of a version without a check value.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_files_dek_kek_version")
                    .table(Alias::new("files"))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            // Pages written from now on keep room for a row's next version; existing pages
            // gain it as rows move or the table is rewritten (VACUUM FULL).
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE files SET (fillfactor = 80)")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE files RESET (fillfactor)")
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_files_dek_kek_version")
                    .table(Alias::new("files"))
                    .col(Alias::new("dek_kek_version"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
