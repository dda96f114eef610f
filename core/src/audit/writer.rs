//! The audit writer: events that are the whole of their action (a download, a view, a
//! refusal), and changes that an event records (a download counted against its share),
//! committed together with the events of the requests that arrive with them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, EntityTrait as _};
use tokio::sync::{mpsc, oneshot};

use entity::audit_event;

use super::repeats::{Repeat, Repeats};
use super::{Event, authenticated_row};
use crate::crypto::KeyStore;

/// A change that an event records, made in the writer's transaction just before the event is
/// inserted, in the order the requests arrived. It answers whether it applied: only then is
/// its event recorded (a download refused because its share was used up meanwhile records
/// nothing here; the caller records the refusal).
pub type Change = Box<
    dyn for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, Result<bool, sea_orm::DbErr>>
        + Send,
>;

/// An event waiting for the writer, with its change (if any) and the request that waits for
/// the commit.
struct Pending {
    row: audit_event::ActiveModel,
    change: Option<Change>,
    done: oneshot::Sender<Result<bool, sea_orm::DbErr>>,
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

/// Commits one batch: the changes in order, then every event whose change applied (or that
/// had none) in one insert. Answers for each whether its change applied.
async fn commit(
    db: &DatabaseConnection,
    gate: &crate::db::WriteGate,
    batch: Vec<Pending>,
) -> (
    Vec<oneshot::Sender<Result<bool, sea_orm::DbErr>>>,
    Result<Vec<bool>, sea_orm::DbErr>,
) {
    let mut rows = Vec::with_capacity(batch.len());
    let mut changes = Vec::new();
    let mut waiting = Vec::with_capacity(batch.len());
    for (i, pending) in batch.into_iter().enumerate() {
        waiting.push(pending.done);
        if let Some(change) = pending.change {
            changes.push((i, change));
        }
        rows.push(pending.row);
    }
    let entered = gate.enter().await;
    let result = async {
        let mut applied = vec![true; rows.len()];
        if changes.is_empty() {
            // One statement commits on its own.
            audit_event::Entity::insert_many(rows).exec(db).await?;
            return Ok(applied);
        }
        let txn = crate::db::begin_write(db).await?;
        for (i, change) in changes {
            applied[i] = change(&txn).await?;
        }
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
    drop(entered);
    (waiting, result)
}

impl AuditWriter {
    /// Starts the writer on the current runtime; it stops when the last handle is dropped.
    /// `repeat_window` is the window of [`AuditWriter::record_repeatable`].
    pub fn start(
        db: DatabaseConnection,
        gate: crate::db::WriteGate,
        keys: Arc<KeyStore>,
        repeat_window: Duration,
    ) -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<Pending>();
        let repeats = Arc::new(Repeats::new(repeat_window));
        let closing = repeats.clone();
        let signing = keys.clone();
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
                        let (waiting, result) = commit(&db, &gate, std::mem::take(&mut batch)).await;
                        for (i, request) in waiting.into_iter().enumerate() {
                            let _ = request.send(match &result {
                                Ok(applied) => Ok(applied[i]),
                                Err(err) => Err(copy_of(err)),
                            });
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
