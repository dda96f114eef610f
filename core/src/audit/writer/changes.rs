//! The changes an event records ([`Change`]), and how a batch's changes are made: written once,
//! run through sea-orm (PostgreSQL) or the writer's own SQLite connection alike.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _, Query, UpdateStatement};
use sea_orm::{ColumnTrait as _, Condition, DbBackend, DbErr, Statement};
use uuid::Uuid;

use entity::{share, share_file};

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

/// Runs one statement in the writer's transaction and answers how many rows it changed.
pub(super) trait Run {
    async fn run(&mut self, statement: Statement) -> Result<u64, DbErr>;
}

/// Makes `changes` (each with its event's place in the batch), grouped by kind and then share
/// id: two writers (two API instances) lock the rows of the shares they both change in the
/// same order. Answers, for each of the batch's `events`, whether its change applied.
pub(super) async fn make(
    run: &mut impl Run,
    backend: DbBackend,
    changes: Vec<(usize, Change)>,
    events: usize,
) -> Result<Vec<bool>, DbErr> {
    let mut applied = vec![true; events];
    let mut grouped: BTreeMap<Change, Vec<usize>> = BTreeMap::new();
    for (i, change) in changes {
        grouped.entry(change).or_default().push(i);
    }
    let now = Utc::now();
    for (change, waiting) in grouped {
        let n = waiting.len();
        let (share, files) = match &change {
            Change::ReleaseDownload { share, files } => {
                run.run(backend.build(&give_back(*share, files, n))).await?;
                continue;
            }
            Change::CompleteDownload { share, files } => {
                run.run(backend.build(&complete(*share, files, n))).await?;
                continue;
            }
            Change::ClaimDownload { share, files } => (*share, files),
        };
        if claim(run, backend, share, files, n, now).await? {
            continue;
        }
        // Not room for all of them: the first ones, as far as there is room.
        let mut room = n > 1;
        for i in waiting {
            room = room && claim(run, backend, share, files, 1, now).await?;
            applied[i] = room;
        }
    }
    Ok(applied)
}

/// Claims `n` places of each of `files` of `share`, if the share has room for all of them;
/// answers whether it did. The share's row is not written: each file's row is, under a condition
/// that reads the share (re-checked by PostgreSQL once a concurrent claim of the same row
/// commits), and a file without room undoes the files claimed before it.
async fn claim(
    run: &mut impl Run,
    backend: DbBackend,
    share: Uuid,
    files: &[Uuid],
    n: usize,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let k = count(n);
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
                        .add(k)
                        .lte(Expr::col((share::Entity, share::Column::MaxDownloads))),
                ),
        )
        .to_owned();
    for (claimed, file) in files.iter().enumerate() {
        let counted = Query::update()
            .table(share_file::Entity)
            .value(share_file::Column::DownloadsUsed, used().add(k))
            .and_where(share_file::Column::ShareId.eq(share))
            .and_where(share_file::Column::FileId.eq(*file))
            .and_where(Expr::exists(share_allows.clone()))
            .to_owned();
        if run.run(backend.build(&counted)).await? != 1 {
            if claimed > 0 {
                let undo = give_back(share, &files[..claimed], n);
                run.run(backend.build(&undo)).await?;
            }
            return Ok(false);
        }
    }
    Ok(true)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Takes `n` places of each of `files` of `share` back.
fn give_back(share: Uuid, files: &[Uuid], n: usize) -> UpdateStatement {
    let used = share_file::Column::DownloadsUsed;
    of_files(share, files)
        .value(used, Expr::col(used).sub(count(n)))
        .to_owned()
}

/// Counts `n` complete downloads of each of `files` of `share`.
fn complete(share: Uuid, files: &[Uuid], n: usize) -> UpdateStatement {
    let completed = share_file::Column::DownloadsCompleted;
    of_files(share, files)
        .value(completed, Expr::col(completed).add(count(n)))
        .to_owned()
}

/// An update of the rows of `files` of `share`.
fn of_files(share: Uuid, files: &[Uuid]) -> UpdateStatement {
    Query::update()
        .table(share_file::Entity)
        .and_where(share_file::Column::ShareId.eq(share))
        .and_where(share_file::Column::FileId.is_in(files.iter().copied()))
        .to_owned()
}
