use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    UserId,
    Id,
    LastSeenAt,
    Ip,
    UserAgent,
}

/// What a person's list of sessions shows, and what ends an idle one: when each was last used
/// (written at most once a minute; a session unused for `COFFER_SESSION_IDLE_MINUTES` ends),
/// and where it was opened from. Sessions from before have none and count as seen when they
/// were opened. A person's sessions are listed and ended by account: an index for that.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for column in [
            timestamp_with_time_zone_null(Sessions::LastSeenAt),
            string_null(Sessions::Ip),
            string_null(Sessions::UserAgent),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_id")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .col(Sessions::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_sessions_user_id")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Sessions::LastSeenAt, Sessions::Ip, Sessions::UserAgent] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
