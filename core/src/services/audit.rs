//! The tamper-evident chain over audit events: sealing (sequence numbers and hashes, one
//! writer at a time) and verification. Sealing only ever touches unsealed rows; nothing in
//! Coffer updates or deletes a sealed one.

use chrono::SecondsFormat;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, SqliteTransactionMode,
    TransactionOptions, TransactionTrait as _,
};
use sha2::{Digest as _, Sha256};
use tokio_util::task::AbortOnDropHandle;

use entity::audit_event;

use crate::Core;

/// Events sealed per transaction.
const SEAL_BATCH: u64 = 1000;
/// Rows read per page while verifying.
const VERIFY_PAGE: u64 = 10_000;
/// Key of the PostgreSQL advisory lock that serialises sealers across processes.
const SEAL_LOCK: i64 = 0x636f_6666_6572_5331; // "cofferS1"

/// The canonical bytes an event's hash covers: a JSON object with a fixed field order,
/// timestamps in RFC 3339 with microseconds, `details` with sorted keys.
pub fn canonical(event: &audit_event::Model, seq: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(&mut out, event, seq);
    out
}

/// Appends the canonical bytes to `out`: a JSON array written straight from the fields (a
/// tuple serialises as an array; `details` has sorted keys as serde_json keeps them).
fn write_canonical(out: &mut Vec<u8>, event: &audit_event::Model, seq: i64) {
    let fields = (
        seq,
        &event.id, // a UUID serialises as its hyphenated lowercase text
        event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        &event.actor_kind,
        &event.actor_id,
        &event.ip,
        &event.user_agent,
        &event.action,
        &event.target_kind,
        &event.target_id,
        &event.outcome,
        &event.details,
    );
    // Writing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &fields);
}

pub fn chain_hash(previous: &[u8], event: &audit_event::Model, seq: i64) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(256);
    chain_hash_with(&mut buffer, previous, event, seq).to_vec()
}

/// [`chain_hash`] reusing `buffer` for the canonical bytes.
fn chain_hash_with(
    buffer: &mut Vec<u8>,
    previous: &[u8],
    event: &audit_event::Model,
    seq: i64,
) -> [u8; 32] {
    buffer.clear();
    write_canonical(buffer, event, seq);
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(&buffer);
    hasher.finalize().into()
}

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

async fn begin_locked(core: &Core) -> Result<DatabaseTransaction, sea_orm::DbErr> {
    let txn = core
        .db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({SEAL_LOCK})"))
            .await?;
    }
    Ok(txn)
}

/// Seals pending events in batches until none is left; returns how many were sealed. Cheap
/// when there is nothing to seal: the lock is only taken once pending events are seen.
pub async fn seal(core: &Core) -> Result<u64, sea_orm::DbErr> {
    let pending = audit_event::Entity::find()
        .filter(audit_event::Column::Seq.is_null())
        .limit(1)
        .all(&core.db)
        .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut sealed = 0;
    loop {
        // Held until this batch commits or rolls back.
        let _entered = core.write_gate.enter().await;
        let txn = begin_locked(core).await?;
        let head = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.is_not_null())
            .order_by_desc(audit_event::Column::Seq)
            .one(&txn)
            .await?;
        let (mut seq, previous) = match head {
            Some(h) => (h.seq.unwrap_or(0), h.hash.unwrap_or_default()),
            None => (0, GENESIS.to_vec()),
        };
        let pending = audit_event::Entity::find()
            .filter(audit_event::Column::Seq.is_null())
            .order_by_asc(audit_event::Column::Id)
            .limit(SEAL_BATCH)
            .all(&txn)
            .await?;
        if pending.is_empty() {
            txn.commit().await?;
            return Ok(sealed);
        }
        let mut links: Vec<(uuid::Uuid, i64, Vec<u8>)> = Vec::with_capacity(pending.len());
        let mut buffer = Vec::with_capacity(256);
        for event in &pending {
            seq += 1;
            let previous = links.last().map_or(&previous[..], |(_, _, hash)| hash);
            let hash = chain_hash_with(&mut buffer, previous, event, seq).to_vec();
            links.push((event.id, seq, hash));
        }
        let linked = link(&txn, links).await?;
        if linked != pending.len() as u64 {
            // Only a writer outside Coffer could have sealed them meanwhile: leave the chain as
            // it was (the transaction rolls back) rather than fork it.
            return Err(sea_orm::DbErr::Custom(format!(
                "sealing: {linked} of {} pending audit events were still unsealed",
                pending.len()
            )));
        }
        txn.commit().await?;
        sealed += pending.len() as u64;
    }
}

/// Gives each event its sequence number and hash in one statement (`UPDATE … FROM (VALUES …)`):
/// one round trip per batch, so the write lock every other writer waits for is held for a
/// moment. Updating event by event held it for up to 1,000 round trips, and concurrent
/// downloads waited that long to commit their own events. Returns how many rows it sealed.
async fn link(
    txn: &DatabaseTransaction,
    links: Vec<(uuid::Uuid, i64, Vec<u8>)>,
) -> Result<u64, sea_orm::DbErr> {
    let backend = txn.get_database_backend();
    let rows = crate::db::values_rows(backend, links.len(), &["uuid", "bigint", "bytea"]);
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(links.len() * 3);
    for (id, seq, hash) in links {
        values.extend([id.into(), seq.into(), hash.into()]);
    }
    let sql = match backend {
        DbBackend::Postgres => format!(
            "UPDATE audit_events AS a SET seq = v.seq, hash = v.hash \
             FROM (VALUES {rows}) AS v(id, seq, hash) \
             WHERE a.id = v.id AND a.seq IS NULL"
        ),
        _ => format!(
            "WITH v(id, seq, hash) AS (VALUES {rows}) \
             UPDATE audit_events SET seq = v.seq, hash = v.hash \
             FROM v WHERE audit_events.id = v.id AND audit_events.seq IS NULL"
        ),
    };
    let result = txn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await?;
    Ok(result.rows_affected())
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub ok: bool,
    pub checked: u64,
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    /// The first sequence number whose row is missing, altered or out of place.
    pub first_bad_seq: Option<i64>,
}

/// Where a verification has got to.
#[derive(Debug)]
struct Walk {
    /// The hash the next event must chain from.
    previous: Vec<u8>,
    /// The sequence number the next event must have.
    expected: i64,
    checked: u64,
    /// The first sequence number that did not check out.
    bad: Option<i64>,
}

impl Walk {
    /// Checks one page of events, in order, stopping at the first bad one.
    fn check(mut self, page: &[audit_event::Model]) -> Self {
        let mut buffer = Vec::with_capacity(256);
        for event in page {
            let seq = event.seq.unwrap_or(-1);
            let stored = event.hash.as_deref().unwrap_or_default();
            if seq != self.expected
                || chain_hash_with(&mut buffer, &self.previous, event, seq)[..] != *stored
            {
                self.bad = Some(self.expected);
                return self;
            }
            self.checked += 1;
            self.expected += 1;
            self.previous.clear();
            self.previous.extend_from_slice(stored);
        }
        self
    }
}

/// The sealed events numbered `from..from + VERIFY_PAGE`, in order (fewer where rows are
/// missing, or past the head).
async fn sealed_range(
    db: &DatabaseConnection,
    from: i64,
) -> Result<Vec<audit_event::Model>, sea_orm::DbErr> {
    audit_event::Entity::find()
        .filter(audit_event::Column::Seq.gte(from))
        .filter(audit_event::Column::Seq.lt(from + VERIFY_PAGE as i64))
        .order_by_asc(audit_event::Column::Seq)
        .all(db)
        .await
}

/// Pages being read, each on a task of its own, so that decoding rows uses every core while
/// the page before is hashed.
const PAGES_AHEAD: i64 = 2;

/// Recomputes the chain from the first sealed event, page by page: each page is hashed on the
/// blocking pool while the next ones are read.
pub async fn verify(db: &DatabaseConnection) -> Result<Verification, sea_orm::DbErr> {
    // Reads still under way when the walk stops are cancelled as they are dropped.
    let read = |from: i64| {
        let db = db.clone();
        AbortOnDropHandle::new(tokio::spawn(async move { sealed_range(&db, from).await }))
    };
    let failed = |e: tokio::task::JoinError| sea_orm::DbErr::Custom(format!("verifying: {e}"));
    let head_before: Option<i64> = audit_event::Entity::find()
        .select_only()
        .column_as(audit_event::Column::Seq.max(), "head")
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten();
    let page_len = VERIFY_PAGE as i64;
    let mut walk = Walk {
        previous: GENESIS.to_vec(),
        expected: 1,
        checked: 0,
        bad: None,
    };
    let mut ahead: std::collections::VecDeque<_> =
        (0..PAGES_AHEAD).map(|k| read(1 + k * page_len)).collect();
    let mut next_from = 1 + PAGES_AHEAD * page_len;
    while let Some(reading) = ahead.pop_front() {
        let page = reading.await.map_err(failed)??;
        let whole = page.len() as i64 == page_len;
        if whole {
            ahead.push_back(read(next_from));
            next_from += page_len;
        }
        walk = tokio::task::spawn_blocking(move || walk.check(&page))
            .await
            .map_err(failed)?;
        if walk.bad.is_some() || !whole {
            break;
        }
    }
    drop(ahead);
    // The walk stopped at a page that was not whole: at the head, or at a gap if the head was
    // further on when the walk began (what the sealer added meanwhile is the next walk's).
    if walk.bad.is_none() && head_before.is_some_and(|head| walk.expected <= head) {
        walk.bad = Some(walk.expected);
    }
    let head = (walk.checked > 0).then(|| (walk.expected - 1, hex::encode(&walk.previous)));
    Ok(Verification {
        ok: walk.bad.is_none(),
        checked: walk.checked,
        head_seq: head.as_ref().map(|h| h.0),
        head_hash: head.map(|h| h.1),
        first_bad_seq: walk.bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> audit_event::Model {
        audit_event::Model {
            id: uuid::Uuid::nil(),
            occurred_at: chrono::DateTime::from_timestamp(1_800_000_000, 123_456_789)
                .expect("time"),
            actor_kind: "user".into(),
            actor_id: Some("u1".into()),
            ip: None,
            user_agent: None,
            action: "file.uploaded".into(),
            target_kind: Some("file".into()),
            target_id: Some("f1".into()),
            outcome: "success".into(),
            details: serde_json::json!({ "b": 1, "a": [1, 2] }),
            seq: None,
            hash: None,
        }
    }

    #[test]
    fn canonical_form_is_stable_and_covers_every_field() {
        let e = event();
        let text = String::from_utf8(canonical(&e, 7)).expect("utf-8");
        assert_eq!(
            text,
            r#"[7,"00000000-0000-0000-0000-000000000000","2027-01-15T08:00:00.123456Z","user","u1",null,null,"file.uploaded","file","f1","success",{"a":[1,2],"b":1}]"#
        );
        let mut changed = e.clone();
        changed.outcome = "denied".into();
        assert_ne!(
            chain_hash(&GENESIS, &e, 1),
            chain_hash(&GENESIS, &changed, 1)
        );
        assert_ne!(chain_hash(&GENESIS, &e, 1), chain_hash(&GENESIS, &e, 2));
    }
}

/// Filters of the admin audit query; every one optional.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Sealed events after this sequence number (the cursor).
    pub after_seq: Option<i64>,
    pub limit: u64,
}

/// Sealed events matching `query`, in chain order, and the cursor of the next page. Paging by
/// sequence number stays correct while events are appended: new ones only ever come after.
pub async fn query(
    db: &impl ConnectionTrait,
    query: &Query,
) -> Result<(Vec<audit_event::Model>, Option<i64>), sea_orm::DbErr> {
    let mut select = audit_event::Entity::find().filter(audit_event::Column::Seq.is_not_null());
    if let Some(action) = &query.action {
        select = select.filter(audit_event::Column::Action.eq(action.as_str()));
    }
    if let Some(actor) = &query.actor_id {
        select = select.filter(audit_event::Column::ActorId.eq(actor.as_str()));
    }
    if let Some(target) = &query.target_id {
        select = select.filter(audit_event::Column::TargetId.eq(target.as_str()));
    }
    if let Some(since) = query.since {
        select = select.filter(audit_event::Column::OccurredAt.gte(since));
    }
    if let Some(until) = query.until {
        select = select.filter(audit_event::Column::OccurredAt.lt(until));
    }
    if let Some(after) = query.after_seq {
        select = select.filter(audit_event::Column::Seq.gt(after));
    }
    let mut rows = select
        .order_by_asc(audit_event::Column::Seq)
        .limit(query.limit + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > query.limit {
        rows.truncate(query.limit as usize);
        rows.last().and_then(|r| r.seq)
    } else {
        None
    };
    Ok((rows, next))
}

/// The stored hash of event `seq`, hex (to check an anchor kept outside Coffer).
pub async fn hash_at(
    db: &impl ConnectionTrait,
    seq: i64,
) -> Result<Option<String>, sea_orm::DbErr> {
    Ok(audit_event::Entity::find()
        .filter(audit_event::Column::Seq.eq(seq))
        .one(db)
        .await?
        .and_then(|e| e.hash)
        .map(hex::encode))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    JsonLines,
    Csv,
}

const CSV_HEADER: &str = "seq,id,occurred_at,actor_kind,actor_id,ip,user_agent,action,target_kind,target_id,outcome,details,hash\n";

/// A CSV cell: quoted when needed, and defused when a spreadsheet would read it as a formula.
fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn export_line(event: &audit_event::Model, format: ExportFormat) -> String {
    let hash = event.hash.as_deref().map(hex::encode).unwrap_or_default();
    let time = event
        .occurred_at
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    match format {
        ExportFormat::JsonLines => {
            let mut line = serde_json::json!({
                "seq": event.seq, "id": event.id, "occurred_at": time, "actor_kind": event.actor_kind,
                "actor_id": event.actor_id, "ip": event.ip, "user_agent": event.user_agent,
                "action": event.action, "target_kind": event.target_kind, "target_id": event.target_id,
                "outcome": event.outcome, "details": event.details, "hash": hash,
            })
            .to_string();
            line.push('\n');
            line
        }
        ExportFormat::Csv => {
            let cells = [
                event.seq.map(|s| s.to_string()).unwrap_or_default(),
                event.id.to_string(),
                time,
                event.actor_kind.clone(),
                event.actor_id.clone().unwrap_or_default(),
                event.ip.clone().unwrap_or_default(),
                event.user_agent.clone().unwrap_or_default(),
                event.action.clone(),
                event.target_kind.clone().unwrap_or_default(),
                event.target_id.clone().unwrap_or_default(),
                event.outcome.clone(),
                event.details.to_string(),
                hash,
            ];
            let mut line = cells
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(",");
            line.push('\n');
            line
        }
    }
}

/// Streams sealed events (optionally within `[since, until)`) page by page: memory stays flat
/// however long the log is.
pub fn export(
    db: sea_orm::DatabaseConnection,
    format: ExportFormat,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>> {
    use futures::StreamExt as _;
    let header = match format {
        ExportFormat::Csv => Some(bytes::Bytes::from_static(CSV_HEADER.as_bytes())),
        ExportFormat::JsonLines => None,
    };
    let pages = futures::stream::try_unfold(Some(0i64), move |cursor| {
        let db = db.clone();
        async move {
            let Some(after) = cursor else {
                return Ok(None);
            };
            let q = Query {
                since,
                until,
                after_seq: Some(after),
                limit: 1000,
                ..Query::default()
            };
            let (rows, next) = query(&db, &q).await.map_err(std::io::Error::other)?;
            if rows.is_empty() {
                return Ok(None);
            }
            let chunk: String = rows.iter().map(|e| export_line(e, format)).collect();
            Ok(Some((bytes::Bytes::from(chunk), next)))
        }
    });
    futures::stream::iter(header.map(Ok)).chain(pages).boxed()
}

#[cfg(test)]
mod export_tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "'-1");
    }
}

impl ExportFormat {
    /// `jsonl` or `csv`, as clients name them.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "jsonl" => Some(Self::JsonLines),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Csv => "csv",
        }
    }
}

/// An admin's export: recorded in the log itself (`audit.exported`) before the first byte
/// goes out, then streamed as [`export`] does.
pub async fn export_for(
    core: &Core,
    actor: crate::audit::Actor,
    format: ExportFormat,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    meta: &crate::audit::RequestMeta,
) -> crate::ServiceResult<futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>>
{
    crate::audit::Event::new("audit.exported", actor)
        .details(
            serde_json::json!({ "format": format.extension(), "since": since, "until": until }),
        )
        .from(meta)
        .record(&core.db)
        .await?;
    Ok(export(core.db.clone(), format, since, until))
}
