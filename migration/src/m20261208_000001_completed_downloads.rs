use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Shares {
    Table,
    DownloadsUsed,
    DownloadsCompleted,
}

/// A share's downloads that delivered the file to its last byte. `downloads_used` counts those
/// and the downloads under way (each claims its place when it starts and gives it back if it
/// stops short), so `max_downloads` holds under concurrency and means complete downloads. Every
/// download before counted at its start and is taken as complete.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Shares::Table)
                    .add_column(integer(Shares::DownloadsCompleted).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(Shares::Table)
                    .value(Shares::DownloadsCompleted, Expr::col(Shares::DownloadsUsed))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Shares::Table)
                    .drop_column(Shares::DownloadsCompleted)
                    .to_owned(),
            )
            .await
    }
}
