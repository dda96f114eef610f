use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// At most one running rotation, whoever starts it: concurrent `rotate` calls, on one API or
/// many, cannot start two.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_key_rotations_one_running ON key_rotations (state) \
                 WHERE state = 'running'",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX idx_key_rotations_one_running")
            .await
            .map(|_| ())
    }
}
