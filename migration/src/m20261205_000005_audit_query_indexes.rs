use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Seq,
    Action,
    ActorId,
    TargetId,
    OccurredAt,
}

/// The admin's audit query filters on one column and pages in chain order (`seq`). With an
/// index on the column alone, the database either sorts every match (a common action: millions
/// of rows) or walks the chain until enough match (a rare one: the whole log); with `seq`
/// second in the index it reads one page of matches in order (issue 17, BENCHMARKS.md section
/// 8). Each new index covers what the old one on its first column did.
const INDEXES: [(&str, AuditEvents, &str); 4] = [
    (
        "idx_audit_action_seq",
        AuditEvents::Action,
        "idx_audit_action",
    ),
    (
        "idx_audit_actor_seq",
        AuditEvents::ActorId,
        "idx_audit_actor",
    ),
    (
        "idx_audit_target_seq",
        AuditEvents::TargetId,
        "idx_audit_target",
    ),
    (
        "idx_audit_occurred_seq",
        AuditEvents::OccurredAt,
        "idx_audit_occurred",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column, old) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(column)
                        .col(AuditEvents::Seq)
                        .to_owned(),
                )
                .await?;
            manager
                .drop_index(Index::drop().name(old).table(AuditEvents::Table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column, old) in INDEXES {
            manager
                .create_index(
                    Index::create()
                        .name(old)
                        .table(AuditEvents::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(AuditEvents::Table)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
