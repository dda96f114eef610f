//! On SQLite, the audit writer's batches committed by a connection of its own, on a thread of
//! its own.
//!
//! Through sea-orm each statement of a batch (`BEGIN`, a download's claim, the ends counted,
//! the events' insert, `COMMIT`) is handed to one of sqlx-sqlite's connection threads, and the
//! writer's task waits to be run again between each two: behind the requests on a busy
//! runtime, while it holds SQLite's one write lock and the downloads of the next batch wait
//! for it. Here the whole batch is one hand-off: the thread makes it, commits, answers each
//! request, and lets the next writer in. Values are stored as sqlx stores them (see [`bind`]),
//! so every other reader reads them alike; a test holds the two to each other.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::types::Value as Stored;
use rusqlite::{OpenFlags, TransactionBehavior};
use sea_orm::sea_query::{OptionEnum, Value};
use sea_orm::{DbBackend, DbErr, EntityTrait as _, QueryTrait as _, RuntimeErr, Statement};
use tokio::sync::OwnedMutexGuard;

use entity::audit_event;

use super::changes::{self, Run};
use super::{Answers, Parts, Pending, answer, split};
use crate::audit::link::{self, Head};
use crate::crypto::KeyStore;

/// How long a commit waits for another process's write (as sqlx's connections do).
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// A batch for the thread, with the write gate the writer entered for it (released once the
/// batch is committed).
struct Job {
    batch: Vec<Pending>,
    entered: Option<OwnedMutexGuard<()>>,
}

/// The writer's own connection: a thread that commits the batches it is handed, in order.
pub(super) struct OwnConnection {
    jobs: mpsc::Sender<Job>,
}

impl OwnConnection {
    /// Opens a connection to `file` on a thread of its own; `None` (logged) if it cannot be
    /// opened, and the writer commits through sea-orm instead.
    pub(super) fn open(file: &Path, keys: Arc<KeyStore>) -> Option<Self> {
        let mut connection = match connect(file) {
            Ok(connection) => connection,
            Err(err) => {
                tracing::warn!(error = %err, "the audit writer commits through the pool instead");
                return None;
            }
        };
        let (jobs, incoming) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("coffer-audit".into())
            .spawn(move || {
                // The head of the chain as this connection last linked it (`link`).
                let mut head = None;
                while let Ok(Job { batch, entered }) = incoming.recv() {
                    let (waiting, result) = commit(&mut connection, &keys, &mut head, batch);
                    drop(entered);
                    answer(waiting, &result);
                }
            });
        match spawned {
            Ok(_) => Some(Self { jobs }),
            Err(err) => {
                tracing::warn!(error = %err, "the audit writer commits through the pool instead");
                None
            }
        }
    }

    /// Hands `batch` to the thread, which answers its requests once committed and then drops
    /// `entered`.
    pub(super) fn commit(&self, batch: Vec<Pending>, entered: Option<OwnedMutexGuard<()>>) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { batch, entered }) {
            // The thread is gone (it panicked): the requests get an error, not a hang.
            let stopped = DbErr::Custom("the audit writer's connection has stopped".into());
            answer(split(job.batch).waiting, &Err(stopped));
        }
    }
}

pub(super) fn connect(file: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(file, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // Per connection, as `db::connect` sets it for sqlx's: each commit synced before it returns.
    connection.pragma_update(None, "synchronous", "FULL")?;
    Ok(connection)
}

/// Commits one batch: the changes (see [`changes::Change`]) in a transaction with the events
/// whose change applied, linked into the chain where they can be (`link`); events without
/// changes in one statement of their own.
fn commit(
    connection: &mut rusqlite::Connection,
    keys: &KeyStore,
    head: &mut Option<Head>,
    batch: Vec<Pending>,
) -> (
    Vec<tokio::sync::oneshot::Sender<Answers>>,
    Result<Vec<bool>, DbErr>,
) {
    let Parts {
        waiting,
        rows,
        changes,
    } = split(batch);
    let result = (|| {
        if changes.is_empty() {
            insert(connection, keys, head, rows)?;
            return Ok(vec![true; waiting.len()]);
        }
        let txn = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(stored)?;
        let events = rows.len();
        let applied = {
            let mut run = Runner(&txn);
            futures::executor::block_on(changes::make(
                &mut run,
                DbBackend::Sqlite,
                changes,
                events,
            ))?
        };
        let kept: Vec<_> = rows
            .into_iter()
            .zip(&applied)
            .filter_map(|(row, applied)| applied.then_some(row))
            .collect();
        insert(&txn, keys, head, kept)?;
        txn.commit().map_err(stored)?;
        Ok(applied)
    })();
    if result.is_err() {
        // Whatever was linked last may not have been committed.
        *head = None;
    }
    (waiting, result)
}

/// Inserts `rows`, linked after the head where nothing waits for the sealer, else pending.
fn insert(
    connection: &rusqlite::Connection,
    keys: &KeyStore,
    head: &mut Option<Head>,
    rows: Vec<audit_event::ActiveModel>,
) -> Result<(), DbErr> {
    if rows.is_empty() || link::insert_linked(connection, keys, head, &rows)? {
        return Ok(());
    }
    let pending = audit_event::Entity::insert_many(rows).build(DbBackend::Sqlite);
    execute(connection, pending).map(drop)
}

/// The writer's statements run on its own connection (each completes at once).
struct Runner<'a>(&'a rusqlite::Transaction<'a>);

impl Run for Runner<'_> {
    async fn run(&mut self, statement: Statement) -> Result<u64, DbErr> {
        execute(self.0, statement)
    }
}

/// Runs `statement` and answers how many rows it changed.
pub(crate) fn execute(
    connection: &rusqlite::Connection,
    statement: Statement,
) -> Result<u64, DbErr> {
    let values = statement.values.map(|v| v.0).unwrap_or_default();
    let params = values
        .into_iter()
        .map(bind)
        .collect::<Result<Vec<_>, _>>()?;
    let mut prepared = connection.prepare_cached(&statement.sql).map_err(stored)?;
    let changed = prepared
        .execute(rusqlite::params_from_iter(params))
        .map_err(stored)?;
    Ok(changed as u64)
}

/// `value` as sqlx-sqlite stores it (its `Encode` for each type, as sea-query binds them): a
/// UUID as its 16 bytes, a time as RFC 3339 text with `+00:00`, JSON as text, a bool as 0 or 1.
fn bind(value: Value) -> Result<Stored, DbErr> {
    let integer = |n: Option<i64>| n.map_or(Stored::Null, Stored::Integer);
    Ok(match value {
        Value::Bool(b) => integer(b.map(i64::from)),
        Value::TinyInt(n) => integer(n.map(i64::from)),
        Value::SmallInt(n) => integer(n.map(i64::from)),
        Value::Int(n) => integer(n.map(i64::from)),
        Value::BigInt(n) => integer(n),
        Value::TinyUnsigned(n) => integer(n.map(i64::from)),
        Value::SmallUnsigned(n) => integer(n.map(i64::from)),
        Value::Unsigned(n) => integer(n.map(i64::from)),
        Value::String(s) => s.map_or(Stored::Null, Stored::Text),
        Value::Enum(OptionEnum::Some(e)) => Stored::Text(e.value.into_owned()),
        Value::Enum(OptionEnum::None(_)) => Stored::Null,
        Value::Bytes(b) => b.map_or(Stored::Null, Stored::Blob),
        Value::Uuid(u) => u.map_or(Stored::Null, |u| Stored::Blob(u.as_bytes().to_vec())),
        Value::ChronoDateTimeUtc(t) => t.map_or(Stored::Null, |t| {
            Stored::Text(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
        }),
        Value::Json(j) => match j {
            Some(j) => Stored::Text(
                serde_json::to_string(&j)
                    .map_err(|e| DbErr::Custom(format!("an audit value that is not JSON: {e}")))?,
            ),
            None => Stored::Null,
        },
        other => {
            return Err(DbErr::Custom(format!(
                "a value the audit writer does not store: {other:?}"
            )));
        }
    })
}

/// A failure of the writer's connection, of the kind sea-orm would report it: the database
/// unreachable (503 for each request) or a statement's error.
pub(crate) fn stored(err: rusqlite::Error) -> DbErr {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, NotADatabase, SystemIoFailure,
    };
    let unreachable = matches!(
        err.sqlite_error_code(),
        Some(
            CannotOpen | DatabaseBusy | DatabaseLocked | DiskFull | NotADatabase | SystemIoFailure
        )
    );
    let runtime = RuntimeErr::Internal(err.to_string());
    if unreachable {
        DbErr::Conn(runtime)
    } else {
        DbErr::Exec(runtime)
    }
}
