//! Database connection and migrations.

pub(crate) mod in_place;
pub(crate) mod kept;

use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait as _};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait, Select};

/// A pooled connection idle for this long is tested with a round trip before it is used again;
/// a busier one is not. sqlx tests every connection as it goes back to the pool, and by default
/// again as it comes out: on PostgreSQL that made three round trips of every query, and on
/// SQLite two more hand-offs to its thread. A connection that the database dropped while it was
/// busy (a restart, a terminated backend) fails its next statement instead, which is a 503 to
/// the client like any other outage ([`connection_lost`]).
pub(crate) const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Whether `err` says the database could not be reached, or dropped the connection the
/// statement was sent on (a restart, a terminated backend, a cut network), rather than
/// refusing the statement: the request may succeed if tried again.
pub fn connection_lost(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx::Error};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                Error::Io(_) | Error::PoolClosed | Error::PoolTimedOut | Error::WorkerCrashed => {
                    true
                }
                // SQLSTATE class 08 (connection exception), and 57P01–57P03: the server is
                // shutting down, crashed, or not yet taking connections.
                Error::Database(e) => e
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Connects to Coffer's database. On SQLite, in WAL mode, every commit is synced to the disk
/// before it returns (`synchronous = FULL`): a download's audit event, a counted download, a
/// file's row are not lost to a power cut or a crash of the machine once the request that made
/// them has been answered. (`NORMAL` only survives a crash of the process.) The audit writer
/// commits the events of requests that arrive together at once, so under load one sync serves
/// many of them. PostgreSQL syncs each commit by default (`synchronous_commit = on`).
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(16)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire_if_idle_for(PING_AFTER_IDLE)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(15))
        });
    Database::connect(options)
        .await
        .context("connecting to the database (COFFER_DATABASE_URL)")
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("applying database migrations")
}

/// Queues this process's writers of a SQLite database before SQLite sees them. SQLite lets one
/// writer in at a time and puts the others to sleep in its default busy handler for 1, 2, 5 …
/// up to 100 ms at a time, however soon the lock is released: under load every sleep a
/// download's audit insert caught there was tens of milliseconds of tail latency. Writers that
/// hold the gate for their write are woken in turn the moment the one before is done. On
/// PostgreSQL there is no gate: writers do not exclude each other there.
#[derive(Clone, Debug, Default)]
pub struct WriteGate(Option<std::sync::Arc<tokio::sync::Mutex<()>>>);

impl WriteGate {
    pub fn for_db(db: &DatabaseConnection) -> Self {
        Self(
            (db.get_database_backend() == sea_orm::DbBackend::Sqlite)
                .then(|| std::sync::Arc::new(tokio::sync::Mutex::new(()))),
        )
    }

    /// Waits for this process's writers ahead (first come, first served); hold what it returns
    /// until the write has committed.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }
}

/// A transaction that will write. On SQLite it takes the write lock at `BEGIN`: a deferred
/// transaction that reads and then writes fails at once with "database is locked" when another
/// writer (the audit sealer, a job) committed in between — the busy timeout covers waiting
/// for the lock, not upgrading a stale read snapshot. Elsewhere it is a plain transaction.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait as _};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// How often [`checkpoints`] copies SQLite's write-ahead log into the database file. The
/// owner's 4 KiB download at concurrency 1 adds about 1,000 pages to the log in 100 ms; at half
/// that the log stays under the 1,000 pages at which a commit would copy it itself.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// Copies SQLite's write-ahead log into the database file from a task of its own, so that no
/// request waits for it. By default SQLite does it in the commit that takes the log past 1,000
/// pages (`wal_autocheckpoint`): that commit writes the pages into the database file and syncs
/// it before it returns, and every request whose event the audit writer is committing waits
/// with it. The owner's 4 KiB download at concurrency 16 ran 5,803–5,876/s that way and
/// 6,462–6,469/s with this task. A passive checkpoint blocks no writer and no reader; the
/// automatic one remains for a burst this task does not keep up with. On PostgreSQL there is
/// nothing to do: `None`. The task stops when the handle is dropped.
pub fn checkpoints(db: &DatabaseConnection) -> Option<tokio_util::task::AbortOnDropHandle<()>> {
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return None;
    }
    let db = db.clone();
    Some(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // Busy is another process's checkpoint running: that one does the work.
                if let Err(err) = db
                    .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                    .await
                {
                    tracing::debug!(error = %err, "no checkpoint this time");
                }
            }
        },
    )))
}

/// The database file behind a `sqlite:` URL, when it is one on disk.
pub(crate) fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let options: sea_orm::sqlx::sqlite::SqliteConnectOptions = url.parse().ok()?;
    let file = options.get_filename();
    file.is_file().then(|| file.to_owned())
}

/// `.one()` for a lookup by a unique key, without the `LIMIT ?` that `.one()` adds. SQLite
/// reads a bound `LIMIT` while planning, so such a statement is parsed and planned again every
/// time it runs: under load that was a seventh of the CPU of a small download.
pub async fn by_key<E: EntityTrait>(
    select: Select<E>,
    db: &impl ConnectionTrait,
) -> Result<Option<E::Model>, sea_orm::DbErr> {
    Ok(select.all(db).await?.into_iter().next())
}

/// The `VALUES` rows of a statement that updates many rows at once (`UPDATE … FROM (VALUES …)`):
/// `rows` tuples of placeholders, cast to `pg_types` on PostgreSQL (its parameters carry no
/// type there), plain `?` elsewhere.
pub fn values_rows(backend: sea_orm::DbBackend, rows: usize, pg_types: &[&str]) -> String {
    let width = pg_types.len();
    let tuple = |row: usize| match backend {
        sea_orm::DbBackend::Postgres => pg_types
            .iter()
            .enumerate()
            .map(|(col, ty)| format!("${}::{ty}", row * width + col + 1))
            .collect::<Vec<_>>()
            .join(", "),
        _ => vec!["?"; width].join(", "),
    };
    (0..rows)
        .map(|row| format!("({})", tuple(row)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The URL of a new SQLite database, `coffer.db` in `dir` (for tests).
#[cfg(test)]
pub(crate) fn sqlite_url_in(dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("coffer.db").display())
}

/// A new SQLite database, migrated, in a temporary directory (kept while the first value
/// lives), with its URL (for tests).
#[cfg(test)]
pub(crate) async fn migrated_sqlite() -> (tempfile::TempDir, String, DatabaseConnection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url_in(dir.path());
    let db = connect(&url).await.expect("a SQLite database");
    migrate(&db).await.expect("migrations");
    (dir, url, db)
}

#[cfg(test)]
mod tests {
    use super::sqlite_url_in;
    use sea_orm::{ConnectionTrait as _, DbBackend, Statement};

    #[tokio::test]
    async fn sqlite_commits_are_synced_to_disk_on_every_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = super::connect(&sqlite_url_in(dir.path()))
            .await
            .expect("a SQLite database");
        let pragma = |name: &'static str| {
            let db = db.clone();
            async move {
                let sql = format!("PRAGMA {name}");
                let row = db
                    .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await
                    .expect("a pragma")
                    .expect("a row");
                row.try_get_by_index::<String>(0)
                    .or_else(|_| row.try_get_by_index::<i32>(0).map(|n| n.to_string()))
                    .expect("its value")
            }
        };
        // Several at once, so that the pool opens several connections.
        let answers = futures::future::join_all(
            (0..8).map(|_| async { (pragma("synchronous").await, pragma("journal_mode").await) }),
        )
        .await;
        for answer in answers {
            // 2 is FULL.
            assert_eq!(
                answer,
                ("2".to_owned(), "wal".to_owned()),
                "FULL, in WAL mode"
            );
        }
    }

    #[tokio::test]
    async fn sqlite_checkpoints_without_waiting_for_a_full_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("coffer.db");
        let db = super::connect(&sqlite_url_in(dir.path()))
            .await
            .expect("a SQLite database");
        let _checkpoints = super::checkpoints(&db).expect("SQLite is checkpointed");
        let before = std::fs::metadata(&path).expect("the database file").len();
        // A few pages, far below the 1,000 at which a commit would copy them itself.
        db.execute_unprepared("CREATE TABLE t (v BLOB); INSERT INTO t VALUES (zeroblob(20000))")
            .await
            .expect("a write");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(&path).expect("the database file").len() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the commit never reached the database file"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn values_rows_number_postgres_parameters_and_cast_them() {
        assert_eq!(
            super::values_rows(DbBackend::Postgres, 2, &["uuid", "int"]),
            "($1::uuid, $2::int), ($3::uuid, $4::int)"
        );
        assert_eq!(
            super::values_rows(DbBackend::Sqlite, 2, &["uuid", "int"]),
            "(?, ?), (?, ?)"
        );
    }
}
