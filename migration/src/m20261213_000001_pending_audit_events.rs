use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The indexes that end in `seq` (the admin's audit query filters on the first column and pages
/// in chain order), with their columns.
const ON_SEQ: [(&str, &str); 4] = [
    ("idx_audit_action_seq", "action, seq"),
    ("idx_audit_actor_seq", "actor_id, seq"),
    ("idx_audit_target_seq", "target_id, seq"),
    ("idx_audit_occurred_seq", "occurred_at, seq"),
];

/// On PostgreSQL the audit writer inserts an event pending (`seq` NULL) and the sealer links it
/// later with an UPDATE that sets `seq`. Every index on `seq` took an entry for the pending row
/// and, since the UPDATE changes an indexed column (no HOT update), another for the linked
/// one: six index entries written twice for each download (BENCHMARKS.md, "Where the owner's
/// download spends PostgreSQL's WAL": 14 WAL records a download). Only linked events are ever
/// looked up by `seq` (every such read says `seq IS NOT NULL`, or compares `seq`, which implies
/// it), so those indexes now hold linked events only, and the sealer finds pending ones through
/// a small index of their ids, in the order it links them.
///
/// SQLite is left as it is: its writer links an event as it inserts it, so it writes each row
/// once, and the `UNIQUE` on `seq` it was created with cannot be dropped without rebuilding the
/// table.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let mut statements = vec![
            "ALTER TABLE audit_events DROP CONSTRAINT audit_events_seq_key".to_owned(),
            "CREATE UNIQUE INDEX audit_events_seq_key ON audit_events (seq) \
             WHERE seq IS NOT NULL"
                .to_owned(),
        ];
        for (name, columns) in ON_SEQ {
            statements.push(format!("DROP INDEX {name}"));
            statements.push(format!(
                "CREATE INDEX {name} ON audit_events ({columns}) WHERE seq IS NOT NULL"
            ));
        }
        statements
            .push("CREATE INDEX idx_audit_pending ON audit_events (id) WHERE seq IS NULL".into());
        run(manager, statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let mut statements = vec!["DROP INDEX idx_audit_pending".to_owned()];
        for (name, columns) in ON_SEQ {
            statements.push(format!("DROP INDEX {name}"));
            statements.push(format!("CREATE INDEX {name} ON audit_events ({columns})"));
        }
        statements.push("DROP INDEX audit_events_seq_key".into());
        statements.push(
            "ALTER TABLE audit_events ADD CONSTRAINT audit_events_seq_key UNIQUE (seq)".into(),
        );
        run(manager, statements).await
    }
}

async fn run(manager: &SchemaManager<'_>, statements: Vec<String>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(&statement).await?;
    }
    Ok(())
}
