//! PostgreSQL connections kept out of sqlx's pool for the lookups that every small request
//! makes (the owner's file, a recipient's link).
//!
//! sqlx tests each connection with a round trip (`Sync`, then `ReadyForQuery`) every time it
//! goes back to the pool, whatever the pool's settings: a lookup by key cost two round trips
//! and two wake-ups of its PostgreSQL backend instead of one. A connection taken out of the
//! pool for good (`detach`) is not tested on its way back: these are kept here, up to
//! [`KEPT`], and a lookup that finds none free goes through the pool as before, so it never
//! waits for one. A connection idle for [`PING_AFTER_IDLE`] is tested before it is used again,
//! as the pool's are; one whose statement fails is dropped, never kept (a statement cut short
//! leaves its protocol state unknown), and the failure is the caller's, as through the pool.
//! Rows are read by sea-orm's own conversions from the same statement sea-orm would send.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sea_orm::sqlx::{self, Connection as _, PgConnection, PgPool};
use sea_orm::{
    ConnAcquireErr, DatabaseConnection, DbBackend, DbErr, QueryResult, QueryTrait, RuntimeErr,
    SelectorTrait, Statement,
};
use sea_query_sqlx::SqlxValues;

use super::PING_AFTER_IDLE;

/// Most connections kept (beside the pool's own).
const KEPT: usize = 8;

/// A kept connection is closed once this old, as the pool closes its own (sqlx's default
/// `max_lifetime`): the server's memory for a long-lived backend is given back.
const MOST_AGE: Duration = Duration::from_secs(30 * 60);

struct Idle {
    conn: PgConnection,
    since: Instant,
    opened: Instant,
}

/// One of the [`KEPT`] open connections, counted from before it is opened until it is closed.
/// Dropped (the pool would not give a connection, its statement failed, or the request holding
/// it was cancelled halfway), it counts itself out, and the connection it stood for, if any, is
/// closed with it.
struct Slot<'a>(&'a Kept);

impl Slot<'_> {
    /// Puts `idle` back among the idle connections, still counted.
    fn keep(self, mut idle: Idle) {
        idle.since = Instant::now();
        self.0.lock().push(idle);
        std::mem::forget(self);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A kept connection in use.
struct Lease<'a> {
    slot: Slot<'a>,
    idle: Idle,
}

impl Lease<'_> {
    /// Whether it was used too recently to need testing.
    fn is_fresh(&self) -> bool {
        self.idle.since.elapsed() < PING_AFTER_IDLE
    }

    /// After a statement that succeeded: kept for the next lookup, unless it is too old.
    fn give_back(self) {
        if self.idle.opened.elapsed() < MOST_AGE {
            self.slot.keep(self.idle);
        }
    }
}

/// Connections to one PostgreSQL database, taken from its pool and kept for lookups.
pub struct Kept {
    pool: PgPool,
    idle: Mutex<Vec<Idle>>,
    /// Connections taken out of the pool and not yet dropped: kept idle, or in use.
    open: AtomicUsize,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Kept {
    /// For a PostgreSQL database; `None` for any other.
    pub fn for_db(db: &DatabaseConnection) -> Option<Self> {
        (db.get_database_backend() == DbBackend::Postgres).then(|| Self {
            pool: db.get_postgres_connection_pool().clone(),
            idle: Mutex::default(),
            open: AtomicUsize::new(0),
        })
    }

    /// The rows of `query`, read as `S` reads them; `None` when no kept connection is free and
    /// none may be opened (ask the pool). Boxed: sqlx's future is large, and awaited inline it
    /// made the future of every caller as large, on SQLite too, where this never runs (the
    /// recipient's download lost a fifth to a half of its rate in the harness).
    pub fn rows<'a, S: SelectorTrait + 'a>(
        &'a self,
        query: &impl QueryTrait,
    ) -> BoxFuture<'a, Option<Result<Vec<S::Item>, DbErr>>> {
        Box::pin(self.read::<S>(query.build(DbBackend::Postgres)))
    }

    async fn read<S: SelectorTrait>(
        &self,
        statement: Statement,
    ) -> Option<Result<Vec<S::Item>, DbErr>> {
        let mut lease = match self.take().await? {
            Ok(lease) => lease,
            Err(err) => return Some(Err(err)),
        };
        let query = sqlx::query_with(
            sqlx::AssertSqlSafe(statement.sql),
            SqlxValues(statement.values.unwrap_or(sea_orm::Values(Vec::new()))),
        );
        Some(match query.fetch_all(&mut lease.idle.conn).await {
            Ok(rows) => {
                lease.give_back();
                rows.into_iter()
                    .map(|row| S::from_raw_query_result(QueryResult::from(row)))
                    .collect()
            }
            // Dropped with the lease: closed, never kept (its protocol state is unknown).
            Err(err) => Err(DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))),
        })
    }

    /// A free connection: an idle one (tested first if it idled long), or a new one while
    /// fewer than [`KEPT`] are open. `None` when neither.
    async fn take(&self) -> Option<Result<Lease<'_>, DbErr>> {
        loop {
            let idle = self.lock().pop();
            let Some(idle) = idle else { break };
            let mut lease = Lease {
                slot: Slot(self),
                idle,
            };
            if lease.is_fresh() || lease.idle.conn.ping().await.is_ok() {
                return Some(Ok(lease));
            }
        }
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < KEPT).then_some(n + 1)
            })
            .ok()?;
        let slot = Slot(self);
        match self.pool.acquire().await {
            Ok(conn) => {
                let now = Instant::now();
                let idle = Idle {
                    conn: conn.detach(),
                    since: now,
                    opened: now,
                };
                Some(Ok(Lease { slot, idle }))
            }
            Err(sqlx::Error::PoolTimedOut) => {
                Some(Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)))
            }
            Err(err) => Some(Err(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
