//! The audit writer: events that are the whole of their action (a download, a view, a
//! refusal), and changes that an event records (a download counted against its share),
//! committed together with the events of the requests that arrive with them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait as _, Statement};
use tokio::sync::{mpsc, oneshot};

use entity::audit_event;

use super::repeats::{Repeat, Repeats};
use super::{Event, authenticated_row};
use crate::crypto::KeyStore;

mod changes;
mod on_sqlite;

pub use changes::Change;
pub(crate) use on_sqlite::{execute, stored};

/// What a request waiting for a commit is told: whether its change applied.
type Answers = Result<bool, DbErr>;

/// An event waiting for the writer, with its change (if any) and the request that waits for
/// the commit.
struct Pending {
    row: audit_event::ActiveModel,
    change: Option<Change>,
    done: oneshot::Sender<Answers>,
}

/// Most events one insert takes (13 columns each: far below every database's parameter limit).
const MOST_PER_INSERT: usize = 256;

/// Records events that are the whole of their action, and changes with the event that records
/// them: every request still waits until its event is committed, but the events of requests
/// that arrive together are committed together, in one transaction. Under load that is one
/// commit (one WAL write, one fsync on PostgreSQL) for many downloads instead of one each.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    queue: mpsc::UnboundedSender<Pending>,
    repeats: Arc<Repeats>,
    keys: Arc<KeyStore>,
}

/// A batch taken apart: the requests waiting, the events' rows, and the changes with the place
/// of their event.
struct Parts {
    waiting: Vec<oneshot::Sender<Answers>>,
    rows: Vec<audit_event::ActiveModel>,
    changes: Vec<(usize, Change)>,
}

fn split(batch: Vec<Pending>) -> Parts {
    let mut parts = Parts {
        waiting: Vec::with_capacity(batch.len()),
        rows: Vec::with_capacity(batch.len()),
        changes: Vec::new(),
    };
    for (i, pending) in batch.into_iter().enumerate() {
        parts.waiting.push(pending.done);
        if let Some(change) = pending.change {
            parts.changes.push((i, change));
        }
        parts.rows.push(pending.row);
    }
    parts
}

/// Tells each request of a batch how its commit went.
fn answer(waiting: Vec<oneshot::Sender<Answers>>, result: &Result<Vec<bool>, DbErr>) {
    for (i, request) in waiting.into_iter().enumerate() {
        let _ = request.send(match result {
            Ok(applied) => Ok(applied[i]),
            Err(err) => Err(copy_of(err)),
        });
    }
}

/// Commits one batch through sea-orm (PostgreSQL; SQLite when the writer has no connection of
/// its own): the changes, then every event whose change applied (or that had none) in one
/// insert, left for the sealer to link. Answers for each whether its change applied.
async fn commit(db: &DatabaseConnection, batch: Vec<Pending>) {
    let Parts {
        waiting,
        rows,
        changes,
    } = split(batch);
    let result = async {
        if changes.is_empty() {
            // One statement commits on its own.
            audit_event::Entity::insert_many(rows).exec(db).await?;
            return Ok(vec![true; waiting.len()]);
        }
        let txn = crate::db::begin_write(db).await?;
        let applied =
            changes::make(&mut &txn, db.get_database_backend(), changes, rows.len()).await?;
        let kept: Vec<_> = rows
            .into_iter()
            .zip(&applied)
            .filter_map(|(row, applied)| applied.then_some(row))
            .collect();
        if !kept.is_empty() {
            audit_event::Entity::insert_many(kept).exec(&txn).await?;
        }
        txn.commit().await?;
        Ok(applied)
    }
    .await;
    answer(waiting, &result);
}

impl changes::Run for &sea_orm::DatabaseTransaction {
    async fn run(&mut self, statement: Statement) -> Result<u64, DbErr> {
        use sea_orm::ConnectionTrait as _;
        Ok(self.execute_raw(statement).await?.rows_affected())
    }
}

impl AuditWriter {
    /// Starts the writer on the current runtime; it stops when the last handle is dropped.
    /// `repeat_window` is the window of [`AuditWriter::record_repeatable`]. `sqlite_file` is the
    /// database's file on SQLite: the writer commits through a connection of its own to it
    /// (`on_sqlite`) and links its events as it inserts them (`super::link`).
    pub fn start(
        db: DatabaseConnection,
        gate: crate::db::WriteGate,
        keys: Arc<KeyStore>,
        repeat_window: Duration,
        sqlite_file: Option<&std::path::Path>,
    ) -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<Pending>();
        let repeats = Arc::new(Repeats::new(repeat_window));
        let closing = repeats.clone();
        let signing = keys.clone();
        let own = sqlite_file.and_then(|file| on_sqlite::OwnConnection::open(file, keys.clone()));
        tokio::spawn(async move {
            let insert = |rows: Vec<audit_event::ActiveModel>| {
                let (db, gate) = (&db, &gate);
                async move {
                    let entered = gate.enter().await;
                    let result = audit_event::Entity::insert_many(rows).exec(db).await;
                    drop(entered);
                    result
                }
            };
            let mut closes = tokio::time::interval(closing.window / 2);
            closes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut batch = Vec::new();
            loop {
                tokio::select! {
                    received = incoming.recv_many(&mut batch, MOST_PER_INSERT) => {
                        if received == 0 {
                            break;
                        }
                        let entered = gate.enter().await;
                        // What arrived while the commit before held the gate joins this one.
                        while batch.len() < MOST_PER_INSERT
                            && let Ok(pending) = incoming.try_recv()
                        {
                            batch.push(pending);
                        }
                        let batch = std::mem::take(&mut batch);
                        match &own {
                            // The thread lets the next batch in once this one is committed.
                            Some(own) => own.commit(batch, entered),
                            None => {
                                commit(&db, batch).await;
                                drop(entered);
                            }
                        }
                    }
                    _ = closes.tick() => {
                        let rows = closing.close(Some(Utc::now()), &signing);
                        if !rows.is_empty() && let Err(err) = insert(rows).await {
                            tracing::warn!(error = %err, "could not record repeated audit events");
                        }
                    }
                }
            }
            // The last handle is gone: what the open windows counted is recorded now.
            let rows = closing.close(None, &signing);
            if !rows.is_empty()
                && let Err(err) = insert(rows).await
            {
                tracing::warn!(error = %err, "could not record repeated audit events");
            }
        });
        Self {
            queue,
            repeats,
            keys,
        }
    }
    /// The row of `event`, with its MAC under the newest audit key.
    pub fn row(&self, event: Event) -> Result<audit_event::ActiveModel, sea_orm::DbErr> {
        authenticated_row(&self.keys, event)
    }

    /// Records `event` on its own; returns once it is committed.
    pub async fn record(&self, event: Event) -> Result<(), sea_orm::DbErr> {
        self.insert(self.row(event)?).await
    }

    /// Makes `change` and records `event` with it, committed with the events of the requests
    /// that arrive together; returns once committed, with whether the change applied (the
    /// event is recorded only if it did).
    pub async fn record_with(&self, change: Change, event: Event) -> Result<bool, sea_orm::DbErr> {
        self.submit(self.row(event)?, Some(change)).await
    }

    async fn insert(&self, row: audit_event::ActiveModel) -> Result<(), sea_orm::DbErr> {
        self.submit(row, None).await.map(|_| ())
    }

    async fn submit(
        &self,
        row: audit_event::ActiveModel,
        change: Option<Change>,
    ) -> Result<bool, sea_orm::DbErr> {
        let (done, committed) = oneshot::channel();
        let stopped = || sea_orm::DbErr::Custom("the audit writer has stopped".into());
        self.queue
            .send(Pending { row, change, done })
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }

    /// Records an event that anyone on the internet can cause as often as they like (a view of
    /// a link, a hit on a dead one, a failed sign-in). The first [`RECORDED_PER_WINDOW`] of each
    /// `key` in a window are recorded one by one, as [`AuditWriter::record`] would; the rest are
    /// counted, and recorded as one event of the same action when the window closes, with
    /// `details.repeated` (how many), `details.from` and `details.to` (their first and last
    /// time), and the last one's actor, target and address.
    pub async fn record_repeatable(&self, key: String, event: Event) -> Result<(), sea_orm::DbErr> {
        match self.repeats.count(key, event, Utc::now(), &self.keys)? {
            Repeat::Record(event, closed) => {
                if let Some(row) = closed {
                    self.insert(row).await?;
                }
                self.record(*event).await
            }
            Repeat::Counted(Some(row)) => self.insert(row).await,
            Repeat::Counted(None) => Ok(()),
        }
    }
}

/// The same failure for every request of a batch, of the same kind (an unreachable database
/// must stay a 503 for each of them).
fn copy_of(err: &sea_orm::DbErr) -> sea_orm::DbErr {
    use sea_orm::DbErr;
    match err {
        DbErr::ConnectionAcquire(e) => DbErr::ConnectionAcquire(*e),
        DbErr::Conn(e) => DbErr::Conn(e.clone()),
        DbErr::Exec(e) => DbErr::Exec(e.clone()),
        DbErr::Query(e) => DbErr::Query(e.clone()),
        other => DbErr::Custom(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
