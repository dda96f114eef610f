//! A bulk load's usual preparation: the secondary indexes of the tables it fills are set aside
//! while it runs and built again, from their own definitions, once it is done. Inserting 20
//! million audit events into an index keyed by a random file id dirties a random page of it per
//! row, and a commit writes every page it dirtied: on SQLite that wrote the store many times
//! over. Indexes that back a constraint (primary keys, unique columns) stay, so every row is
//! still checked as it goes in.

use sea_orm::{
    ConnectionTrait as _, DatabaseConnection, DbBackend, Statement, TransactionTrait as _,
};

/// The definitions of the indexes set aside, to build again.
pub struct SetAside(Vec<String>);

/// Drops the secondary indexes of `tables` that no constraint needs and returns their
/// definitions.
pub async fn set_aside(db: &DatabaseConnection, tables: &[&str]) -> SetAside {
    let backend = db.get_database_backend();
    let list = tables
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = match backend {
        // An index SQLite made for a constraint has no SQL of its own.
        DbBackend::Sqlite => format!(
            "SELECT name, sql AS definition FROM sqlite_master \
             WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({list})"
        ),
        _ => format!(
            "SELECT indexname AS name, indexdef AS definition FROM pg_indexes i \
             WHERE schemaname = current_schema() AND tablename IN ({list}) \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
             WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)"
        ),
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .expect("the secondary indexes");
    let mut definitions = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get("", "name").expect("an index's name");
        let definition: String = row.try_get("", "definition").expect("its definition");
        db.execute_unprepared(&format!("DROP INDEX \"{name}\""))
            .await
            .expect("drop an index");
        definitions.push(definition);
    }
    SetAside(definitions)
}

/// Builds the indexes set aside again, in one transaction given room to sort in memory. On
/// SQLite the connection's page cache is set back afterwards: what is measured later reads with
/// the service's settings, not the loader's.
pub async fn restore(db: &DatabaseConnection, indexes: SetAside) {
    let sqlite = db.get_database_backend() == DbBackend::Sqlite;
    let txn = db.begin().await.expect("begin");
    let mut usual = None;
    if sqlite {
        let row = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA cache_size",
            ))
            .await
            .expect("the page cache's size")
            .expect("a row");
        usual = Some(row.try_get_by_index::<i64>(0).expect("a number"));
        txn.execute_unprepared("PRAGMA cache_size = -1048576")
            .await
            .expect("room to sort");
    } else {
        txn.execute_unprepared("SET LOCAL maintenance_work_mem = '1GB'")
            .await
            .expect("room to sort");
    }
    for definition in &indexes.0 {
        txn.execute_unprepared(definition)
            .await
            .expect("build an index again");
    }
    if let Some(usual) = usual {
        txn.execute_unprepared(&format!("PRAGMA cache_size = {usual}"))
            .await
            .expect("the usual page cache");
    }
    txn.commit().await.expect("commit the indexes");
}
