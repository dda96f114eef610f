//! The sweep, run every `COFFER_SWEEP_INTERVAL_SECS` by each worker: re-enqueues what a lost
//! enqueue, a wiped Redis or a killed worker left behind, marks expired shares, forgets
//! recipients' expired codes and verified sessions, sends the download receipts that wait, and
//! vacuums the queue.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, Condition, ConnectionTrait, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use entity::file;

use super::encrypt::EncryptFile;
use super::validate::ValidateFile;
use crate::types::FileStatus;
use crate::{Core, JobError};

/// How long the queue keeps a finished task (for whoever inspects the queue) before the sweep
/// deletes it.
const FINISHED_TASKS_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Re-enqueues files left too long in `quarantined` or `validated` (a lost enqueue, a wiped
/// Redis, a crashed worker) that no live run holds: a run renews its lease while it works.
/// Returns how many were re-enqueued.
pub async fn sweep(core: &Core) -> Result<usize, JobError> {
    let cutoff = core.config.stuck_before(Utc::now());
    let stuck = file::Entity::find()
        .filter(file::Column::Status.is_in([FileStatus::Quarantined, FileStatus::Validated]))
        .filter(file::Column::UpdatedAt.lt(cutoff))
        .filter(
            Condition::any()
                .add(file::Column::LeaseUntil.is_null())
                .add(file::Column::LeaseUntil.lt(Utc::now())),
        )
        .all(&core.db)
        .await?;
    for row in &stuck {
        // Touch first, so the next sweep waits a full period again.
        touch(&core.db, row.id, row.status).await?;
        if row.status == FileStatus::Quarantined {
            core.queue.enqueue(ValidateFile::new(row.id)).await?;
        } else {
            core.queue.enqueue(EncryptFile::new(row.id)).await?;
        }
    }
    if !stuck.is_empty() {
        tracing::info!(count = stuck.len(), "sweep re-enqueued stuck files");
    }
    crate::services::shares::expire(core).await?;
    crate::services::recipients::forget_expired(core).await?;
    crate::services::receipts::sweep(core).await?;
    super::notify::sweep(core).await?;
    super::rewrap::sweep(core).await?;
    match core.queue.vacuum(FINISHED_TASKS_KEPT).await {
        Ok(0) => {}
        Ok(count) => tracing::debug!(count, "sweep removed finished tasks from the queue"),
        Err(err) => tracing::warn!(error = %format!("{err:#}"), "vacuuming the queue failed"),
    }
    Ok(stuck.len())
}

async fn touch(
    db: &impl ConnectionTrait,
    file_id: Uuid,
    from: FileStatus,
) -> Result<(), sea_orm::DbErr> {
    file::Entity::update_many()
        .col_expr(file::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(file::Column::Id.eq(file_id))
        .filter(file::Column::Status.eq(from))
        .exec(db)
        .await?;
    Ok(())
}
