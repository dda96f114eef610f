use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectionTrait as _, DbBackend, EntityTrait as _, IdenStatic as _, Iterable as _,
    QueryOrder as _, QueryTrait as _, Statement,
};
use serde_json::json;
use uuid::Uuid;

use entity::audit_event;

use super::{AuditWriter, on_sqlite};
use crate::audit::encoding::{GENESIS, link_hash_written};
use crate::audit::link::check_pending;
use crate::audit::{Action, Actor, Event, Outcome, RequestMeta, authenticated_row};
use crate::crypto::{KeyStore, Keyring, KeyringSource, SecretKey};

fn keys() -> Arc<KeyStore> {
    let text = format!(
        "1:{}\naudit:1:{}",
        SecretKey::generate().to_base64(),
        SecretKey::generate().to_base64()
    );
    let ring = Keyring::parse(&text, "COFFER_MASTER_KEYS").expect("a keyring");
    Arc::new(KeyStore::new(ring, KeyringSource::Environment, None))
}

async fn database() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    sea_orm::DatabaseConnection,
) {
    let (dir, url, db) = crate::db::migrated_sqlite().await;
    let file = crate::db::sqlite_file(&url).expect("a database on disk");
    (dir, file, db)
}

/// An event with every optional column set, hostile text in each, and one with none.
fn events() -> [Event; 2] {
    let share = Uuid::now_v7();
    let full = Event::new(Action::ShareDownloaded, Actor::Recipient(share))
        .target("share", share)
        .outcome(Outcome::Failure)
        .details(json!({
            "name": "rapport \"1\" 日本語 <script>\u{202e}.pdf",
            "bytes": 4096,
            "range": [0, 4095],
            "nothing": null,
            "ratio": 0.25,
        }))
        .from(&RequestMeta {
            ip: Some("2001:db8::1".into()),
            user_agent: Some("curl/8 'quoted' \"twice\" \\ back".into()),
        });
    [full, Event::new(Action::ShareViewed, Actor::System)]
}

/// The stored form of every column of each event, in insertion order, without its id.
async fn stored(db: &sea_orm::DatabaseConnection) -> Vec<Vec<String>> {
    let columns: Vec<String> = audit_event::Column::iter()
        .filter(|c| !matches!(c, audit_event::Column::Id))
        .map(|c| format!("typeof(\"{0}\") || ':' || quote(\"{0}\")", c.as_str()))
        .collect();
    let sql = format!(
        "SELECT {} AS stored FROM audit_events ORDER BY rowid",
        columns.join(" || '|' || ")
    );
    db.query_all_raw(Statement::from_string(DbBackend::Sqlite, sql))
        .await
        .expect("stored values")
        .iter()
        .map(|row| {
            let stored: String = row.try_get("", "stored").expect("a row");
            stored.split('|').map(str::to_owned).collect()
        })
        .collect()
}

#[tokio::test]
async fn the_writers_own_connection_stores_values_as_sqlx_does() {
    let (_dir, file, db) = database().await;
    let keys = keys();
    let own = on_sqlite::connect(&file).expect("the writer's connection");
    for event in events() {
        let through_sqlx = authenticated_row(&keys, event).expect("a row");
        let mut written = through_sqlx.clone();
        written.id = sea_orm::ActiveValue::Set(Uuid::now_v7());
        audit_event::Entity::insert(through_sqlx)
            .exec(&db)
            .await
            .expect("inserted through sqlx");
        let insert = audit_event::Entity::insert(written).build(DbBackend::Sqlite);
        on_sqlite::execute(&own, insert).expect("inserted on the writer's connection");
    }
    let rows = stored(&db).await;
    assert_eq!(rows.len(), 4);
    for pair in rows.chunks(2) {
        assert_eq!(pair[0], pair[1], "each column stored alike");
    }
    // And read back by sea-orm as the other.
    let read = audit_event::Entity::find()
        .order_by_asc(audit_event::Column::OccurredAt)
        .all(&db)
        .await
        .expect("read back");
    for pair in read.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(
            (&a.details, &a.occurred_at, &a.mac),
            (&b.details, &b.occurred_at, &b.mac)
        );
    }
}

#[tokio::test]
async fn events_committed_on_the_writers_own_connection_are_linked_and_read_back_intact() {
    let (_dir, file, db) = database().await;
    let keys = keys();
    let gate = crate::db::WriteGate::for_db(&db);
    let writer = AuditWriter::start(
        db.clone(),
        gate,
        keys.clone(),
        Duration::from_secs(60),
        Some(&file),
    );
    // Together, as requests arriving at once: one batch or several.
    let recorded = futures::future::join_all(
        events()
            .into_iter()
            .chain(events())
            .map(|event| writer.record(event)),
    )
    .await;
    assert!(recorded.iter().all(Result::is_ok), "{recorded:?}");

    let read = audit_event::Entity::find()
        .order_by_asc(audit_event::Column::Seq)
        .all(&db)
        .await
        .expect("read back");
    assert_eq!(read.len(), 4);
    let ring = keys.ring();
    let mut buffer = Vec::new();
    let mut previous = GENESIS.to_vec();
    for (n, event) in read.iter().enumerate() {
        let seq = i64::try_from(n).expect("small") + 1;
        assert_eq!(event.seq, Some(seq), "linked in order as inserted");
        check_pending(&mut buffer, &ring, event, n > 0).expect("its MAC holds as read back");
        previous = link_hash_written(&mut buffer, &previous, event, seq).to_vec();
        assert_eq!(
            event.hash.as_deref(),
            Some(previous.as_slice()),
            "event {seq}"
        );
    }
    let full = read
        .iter()
        .find(|e| e.ip.is_some())
        .expect("the full event");
    assert_eq!(
        full.user_agent.as_deref(),
        Some("curl/8 'quoted' \"twice\" \\ back")
    );
    assert_eq!(
        full.details["name"],
        "rapport \"1\" 日本語 <script>\u{202e}.pdf"
    );
}

#[tokio::test]
async fn the_writers_own_connection_syncs_every_commit() {
    let (_dir, file, _db) = database().await;
    let own = on_sqlite::connect(&file).expect("the writer's connection");
    let pragma = |name: &str| {
        own.query_row(&format!("PRAGMA {name}"), [], |row| {
            row.get::<_, rusqlite::types::Value>(0)
        })
        .expect("a pragma")
    };
    // 2 is FULL; the database is in WAL mode, as `db::connect` made it.
    assert_eq!(pragma("synchronous"), rusqlite::types::Value::Integer(2));
    assert_eq!(
        pragma("journal_mode"),
        rusqlite::types::Value::Text("wal".into())
    );
}
