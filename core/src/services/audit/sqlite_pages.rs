//! Pages of the sealed chain read straight from an SQLite database file, for verification.
//!
//! Through sea-orm a page costs about 9 µs a row on SQLite, most of it not SQLite's: sqlx
//! copies every column of every row into values of its own and sends each row across a
//! channel, and sea-orm then finds each column by its name. Verification reads every event
//! there is, so here a blocking thread steps a read-only connection of its own and builds each
//! event from the row in place (BENCHMARKS.md, "Audit verification on SQLite"). It reads the
//! same columns sea-orm would and decodes them as sqlx encodes them; a test holds the two
//! readers to each other.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use sea_orm::DbErr;

use entity::audit_event;

use crate::db::in_place::{Columns, Unreadable};

/// The events' columns, in the order [`event`] reads them.
const SEALED_RANGE: &str = "SELECT id, occurred_at, actor_kind, actor_id, ip, user_agent, action, \
     target_kind, target_id, outcome, details, seq, hash, mac_version, mac \
     FROM audit_events WHERE seq >= ?1 AND seq < ?2 ORDER BY seq";

/// How long a read waits for a lock (only a checkpoint that restarts the log takes one a
/// reader can meet): as long as the service's own connections wait.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// The sealed events numbered `from..to`, in order, read on the calling thread (a blocking
/// one). Fewer where rows are missing or past the head, as with sea-orm.
pub(super) fn sealed_range(
    file: &Path,
    from: i64,
    to: i64,
) -> Result<Vec<audit_event::Model>, DbErr> {
    let failed = |e: rusqlite::Error| DbErr::Custom(format!("reading the audit log: {e}"));
    let connection = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failed)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
    let mut statement = connection.prepare(SEALED_RANGE).map_err(failed)?;
    let mut rows = statement.query((from, to)).map_err(failed)?;
    let mut page = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0).min(1 << 16));
    while let Some(row) = rows.next().map_err(failed)? {
        page.push(event(row)?);
    }
    Ok(page)
}

/// One row as the event sea-orm would have made of it.
fn event(row: &Row<'_>) -> Result<audit_event::Model, DbErr> {
    read_event(row).map_err(|e| {
        let seq = match row.get_ref(11) {
            Ok(ValueRef::Integer(seq)) => seq.to_string(),
            _ => "?".to_owned(),
        };
        DbErr::Type(format!("audit event {seq}: {e}"))
    })
}

fn read_event(row: &Row<'_>) -> Result<audit_event::Model, Unreadable> {
    let column = Columns::new(row);
    let details = serde_json::from_str(column.text(10)?).map_err(|e| column.wrong(10, &e))?;
    Ok(audit_event::Model {
        id: column.uuid(0)?,
        occurred_at: column.time(1)?,
        actor_kind: column.text(2)?.to_owned(),
        actor_id: column.optional(3, Columns::text)?.map(str::to_owned),
        ip: column.optional(4, Columns::text)?.map(str::to_owned),
        user_agent: column.optional(5, Columns::text)?.map(str::to_owned),
        action: column.text(6)?.to_owned(),
        target_kind: column.optional(7, Columns::text)?.map(str::to_owned),
        target_id: column.optional(8, Columns::text)?.map(str::to_owned),
        outcome: column.text(9)?.to_owned(),
        details,
        seq: column.optional(11, Columns::integer)?,
        hash: column.optional(12, Columns::blob)?.map(<[u8]>::to_vec),
        mac_version: column.optional(13, Columns::int32)?,
        mac: column.optional(14, Columns::blob)?.map(<[u8]>::to_vec),
    })
}

#[cfg(test)]
mod tests {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};

    use entity::audit_event;

    /// Events unlike each other in every way a column can be: absent values, text in several
    /// scripts and with quotes, nested details, with and without MACs, times to the microsecond.
    fn events() -> Vec<audit_event::Model> {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T12:34:56.789012Z")
            .expect("a time")
            .to_utc();
        (1..=5)
            .map(|seq: i64| audit_event::Model {
                id: uuid::Uuid::now_v7(),
                occurred_at: at + chrono::Duration::microseconds(seq * 1_000_001),
                actor_kind: if seq % 2 == 0 { "user" } else { "system" }.into(),
                actor_id: (seq % 2 == 0).then(|| uuid::Uuid::now_v7().to_string()),
                ip: (seq != 3).then(|| "2001:db8::1".into()),
                user_agent: (seq != 4).then(|| format!("Agent \"{seq}\" 日本語 ✓")),
                action: "file.downloaded".into(),
                target_kind: (seq != 5).then(|| "file".into()),
                target_id: (seq != 5).then(|| uuid::Uuid::now_v7().to_string()),
                outcome: if seq == 2 { "denied" } else { "success" }.into(),
                details: serde_json::json!({
                    "name": "<script>\u{202e}.pdf",
                    "range": [0, seq, 1.5],
                    "nested": { "b": null, "a": [true, false] },
                }),
                seq: Some(seq),
                hash: Some(vec![u8::try_from(seq).expect("small"); 32]),
                mac_version: (seq > 2).then_some(i32::try_from(seq).expect("small")),
                mac: (seq > 2).then(|| vec![0xA5; 32]),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_page_read_in_place_is_what_sea_orm_reads() {
        let (_dir, url, db) = crate::db::migrated_sqlite().await;
        let written = events();
        audit_event::Entity::insert_many(
            written.iter().cloned().map(audit_event::ActiveModel::from),
        )
        .exec(&db)
        .await
        .expect("events");
        // One event still waiting for its seal: no page holds it.
        let mut pending = written[0].clone();
        pending.id = uuid::Uuid::now_v7();
        pending.seq = None;
        pending.hash = None;
        audit_event::Entity::insert(audit_event::ActiveModel::from(pending))
            .exec(&db)
            .await
            .expect("a pending event");

        let file = crate::db::sqlite_file(&url).expect("a database file");
        let in_place = super::sealed_range(&file, 1, 1 + 10_000).expect("a page");
        let through_sea_orm = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.gte(1))
            .order_by_asc(audit_event::Column::Seq)
            .all(&db)
            .await
            .expect("a page");
        assert_eq!(in_place, through_sea_orm);
        assert_eq!(in_place, written);
        let middle = super::sealed_range(&file, 2, 4).expect("a page");
        assert_eq!(middle, written[1..3]);
    }
}
