//! The audit writer: events that are the whole of their action (a download, a view, a
//! refusal), and changes that an event records (a download counted against its share),
//! committed together with the events of the requests that arrive with them.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, Query};
use sea_orm::{
    ColumnTrait as _, Condition, DatabaseConnection, DatabaseTransaction, DbBackend,
    EntityTrait as _, QueryFilter as _,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use entity::{audit_event, share, share_file};

use super::link::{self, Head};
use super::repeats::{Repeat, Repeats};
use super::{Event, authenticated_row};
use crate::crypto::KeyStore;
use crate::types::ShareState;

/// A change that an event records, made in the writer's transaction just before the events
/// are inserted. Only an event whose change applied is recorded (a claim refused because its
/// share was used up meanwhile records nothing here; the caller records the refusal).
///
/// Each names the files of the share it counts against: one for a download of a file, all of
/// a bundle's for a "Download all". The changes of one kind to the same files that arrive
/// together are made with one `UPDATE … n`: a row is written once per commit instead of once
/// per download. Releases come first, then completions, then claims, so that a place given back
/// is free for a claim in the same commit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Downloads given back their places when they stopped short. Always applies.
    ReleaseDownload { share: Uuid, files: Vec<Uuid> },
    /// Downloads that delivered their files to the last byte. Always applies.
    CompleteDownload { share: Uuid, files: Vec<Uuid> },
    /// A download takes a place of each of its files, all or none, only while the share allows
    /// it (live, unexpired, and each file below `max_downloads` if it has one). When the share
    /// has room for fewer than arrived together, the first ones in arrival order take it.
    ClaimDownload { share: Uuid, files: Vec<Uuid> },
}

impl Change {
    fn files(&self) -> (Uuid, &[Uuid]) {
        match self {
            Self::ReleaseDownload { share, files }
            | Self::CompleteDownload { share, files }
            | Self::ClaimDownload { share, files } => (*share, files),
        }
    }
}

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

/// Commits one batch: the changes (see [`Change`]), then every event whose change applied (or
/// that had none) in one insert. Answers for each whether its change applied.
async fn commit(
    db: &DatabaseConnection,
    gate: &crate::db::WriteGate,
    linking: Option<(&KeyStore, &mut Option<Head>)>,
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
            if let Some((keys, head)) = linking
                && link::insert_linked(db, keys, head, &rows).await?
            {
                return Ok(applied);
            }
            audit_event::Entity::insert_many(rows).exec(db).await?;
            return Ok(applied);
        }
        let txn = crate::db::begin_write(db).await?;
        // By kind, then share id: two writers (two API instances) lock the rows of the shares
        // they both change in the same order.
        let mut grouped: BTreeMap<Change, Vec<usize>> = BTreeMap::new();
        for (i, change) in changes {
            grouped.entry(change).or_default().push(i);
        }
        let now = Utc::now();
        for (change, waiting) in grouped {
            let Change::ClaimDownload { share, files } = &change else {
                adjust(&txn, &change, waiting.len()).await?;
                continue;
            };
            if claim_downloads(&txn, *share, files, waiting.len(), now).await? {
                continue;
            }
            // Not room for all of them: the first ones, as far as there is room.
            let mut room = waiting.len() > 1;
            for i in waiting {
                room = room && claim_downloads(&txn, *share, files, 1, now).await?;
                applied[i] = room;
            }
        }
        let kept: Vec<_> = rows
            .into_iter()
            .zip(&applied)
            .filter_map(|(row, applied)| applied.then_some(row))
            .collect();
        let linked = match linking {
            Some((keys, head)) if !kept.is_empty() => {
                link::insert_linked(&txn, keys, head, &kept).await?
            }
            _ => false,
        };
        if !kept.is_empty() && !linked {
            audit_event::Entity::insert_many(kept).exec(&txn).await?;
        }
        txn.commit().await?;
        Ok(applied)
    }
    .await;
    drop(entered);
    (waiting, result)
}

/// Claims `n` places of each of `files` of `share`, if the share has room for all of them;
/// answers whether it did. The share's row is not written: each file's row is, under a condition
/// that reads the share (re-checked by PostgreSQL once a concurrent claim of the same row
/// commits), and a file without room undoes the files claimed before it.
async fn claim_downloads(
    txn: &DatabaseTransaction,
    share: Uuid,
    files: &[Uuid],
    n: usize,
    now: DateTime<Utc>,
) -> Result<bool, sea_orm::DbErr> {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    let used = || Expr::col((share_file::Entity, share_file::Column::DownloadsUsed));
    let share_allows = Query::select()
        .expr(Expr::val(1))
        .from(share::Entity)
        .and_where(Expr::col((share::Entity, share::Column::Id)).eq(share))
        .and_where(Expr::col((share::Entity, share::Column::State)).is_in(ShareState::LIVE))
        .and_where(Expr::col((share::Entity, share::Column::ExpiresAt)).gt(now))
        .cond_where(
            Condition::any()
                .add(Expr::col((share::Entity, share::Column::MaxDownloads)).is_null())
                .add(
                    used()
                        .add(n)
                        .lte(Expr::col((share::Entity, share::Column::MaxDownloads))),
                ),
        )
        .to_owned();
    for (claimed, file) in files.iter().enumerate() {
        let counted = share_file::Entity::update_many()
            .col_expr(share_file::Column::DownloadsUsed, used().add(n))
            .filter(share_file::Column::ShareId.eq(share))
            .filter(share_file::Column::FileId.eq(*file))
            .filter(Expr::exists(share_allows.clone()))
            .exec(txn)
            .await?;
        if counted.rows_affected != 1 {
            give_back(txn, share, &files[..claimed], n).await?;
            return Ok(false);
        }
    }
    Ok(true)
}

/// Takes `n` places of each of `files` of `share` back.
async fn give_back(
    txn: &DatabaseTransaction,
    share: Uuid,
    files: &[Uuid],
    n: i32,
) -> Result<(), sea_orm::DbErr> {
    if files.is_empty() {
        return Ok(());
    }
    share_file::Entity::update_many()
        .col_expr(
            share_file::Column::DownloadsUsed,
            Expr::col(share_file::Column::DownloadsUsed).sub(n),
        )
        .filter(share_file::Column::ShareId.eq(share))
        .filter(share_file::Column::FileId.is_in(files.iter().copied()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Gives back `n` places of each of the change's files ([`Change::ReleaseDownload`]), or counts
/// `n` complete downloads of each ([`Change::CompleteDownload`]).
async fn adjust(
    txn: &DatabaseTransaction,
    change: &Change,
    n: usize,
) -> Result<(), sea_orm::DbErr> {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    let (share, files) = change.files();
    match change {
        Change::ReleaseDownload { .. } => give_back(txn, share, files, n).await,
        Change::CompleteDownload { .. } => {
            share_file::Entity::update_many()
                .col_expr(
                    share_file::Column::DownloadsCompleted,
                    Expr::col(share_file::Column::DownloadsCompleted).add(n),
                )
                .filter(share_file::Column::ShareId.eq(share))
                .filter(share_file::Column::FileId.is_in(files.iter().copied()))
                .exec(txn)
                .await?;
            Ok(())
        }
        Change::ClaimDownload { .. } => Ok(()),
    }
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
            // On SQLite the writer links its events as it inserts them (`super::link`).
            let sqlite = db.get_database_backend() == DbBackend::Sqlite;
            let mut head = None;
            let mut closes = tokio::time::interval(closing.window / 2);
            closes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut batch = Vec::new();
            loop {
                tokio::select! {
                    received = incoming.recv_many(&mut batch, MOST_PER_INSERT) => {
                        if received == 0 {
                            break;
                        }
                        let linking = sqlite.then_some((&*signing, &mut head));
                        let (waiting, result) =
                            commit(&db, &gate, linking, std::mem::take(&mut batch)).await;
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
