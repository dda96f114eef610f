use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Shares {
    Table,
    Id,
    FileId,
    DownloadsUsed,
    DownloadsCompleted,
}

#[derive(DeriveIden)]
enum ShareFiles {
    Table,
    ShareId,
    FileId,
    Position,
    DownloadsUsed,
    DownloadsCompleted,
}

/// Shares of several files (bundles): a share names its files in `share_files`, in the order
/// the recipient sees them, and each file of a share counts its own downloads against the
/// share's `max_downloads` (a "Download all" takes one of every file's). `shares.file_id`
/// stays as the share's first file. Every share so far had one file, whose counts move here.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ShareFiles::Table)
                    .col(uuid(ShareFiles::ShareId))
                    .col(uuid(ShareFiles::FileId))
                    .col(integer(ShareFiles::Position))
                    .col(integer(ShareFiles::DownloadsUsed).default(0))
                    .col(integer(ShareFiles::DownloadsCompleted).default(0))
                    .primary_key(
                        Index::create()
                            .col(ShareFiles::ShareId)
                            .col(ShareFiles::FileId),
                    )
                    .to_owned(),
            )
            .await?;
        // The shares of a file (its list, and the links waiting for it to be ready).
        manager
            .create_index(
                Index::create()
                    .name("idx_share_files_file")
                    .table(ShareFiles::Table)
                    .col(ShareFiles::FileId)
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(ShareFiles::Table)
                    .columns([
                        ShareFiles::ShareId,
                        ShareFiles::FileId,
                        ShareFiles::Position,
                        ShareFiles::DownloadsUsed,
                        ShareFiles::DownloadsCompleted,
                    ])
                    .select_from(
                        Query::select()
                            .columns([Shares::Id, Shares::FileId])
                            .expr(Expr::val(0))
                            .columns([Shares::DownloadsUsed, Shares::DownloadsCompleted])
                            .from(Shares::Table)
                            .to_owned(),
                    )
                    .map_err(|e| DbErr::Migration(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        for column in [Shares::DownloadsUsed, Shares::DownloadsCompleted] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Shares::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Shares::DownloadsUsed, Shares::DownloadsCompleted] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Shares::Table)
                        .add_column(integer(column).default(0))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ShareFiles::Table).to_owned())
            .await
    }
}
