//! What the validate and encrypt jobs share: reading a quarantined upload back, moving its row
//! from one state to the next (or to `rejected`) with its audit event, and running each attempt
//! under the file's lease. Every step re-reads its row and moves it with a conditional update,
//! so a repeated delivery is a no-op.

use bytes::Bytes;
use chrono::Utc;
use futures::stream::BoxStream;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use entity::file;

use super::lease::Lease;
use crate::audit::{Action, Actor, Event, Outcome};
use crate::crypto::{SecretKey, WrappedKey};
use crate::db::by_key;
use crate::storage::{Opening, ReadError, quarantine_path};
use crate::text::t;
use crate::types::FileStatus;
use crate::{Core, JobError, KeyFailure};

pub(super) async fn load(core: &Core, file_id: Uuid) -> Result<Option<file::Model>, JobError> {
    Ok(by_key(file::Entity::find_by_id(file_id), &core.db).await?)
}

/// The upload's quarantine key. A keyring problem is retried (the file waits in quarantine
/// until the operator mends the keyring); only a key that is gone or altered fails the file.
async fn quarantine_key(core: &Core, row: &file::Model) -> Result<SecretKey, JobError> {
    let (Some(kek_version), Some(bytes)) = (row.quarantine_kek_version, row.quarantine_key.clone())
    else {
        return Err(JobError::Permanent(integrity()));
    };
    let wrapped = WrappedKey { kek_version, bytes };
    match core.unwrap_key(row.id, &wrapped).await {
        Ok(key) => Ok(key),
        Err(KeyFailure::Fault(err)) => Err(JobError::Transient(
            anyhow::Error::new(err).context(format!("opening the quarantine key of {}", row.id)),
        )),
        Err(KeyFailure::Altered(_)) => Err(JobError::Permanent(integrity())),
    }
}

/// Moves a quarantined file to `rejected`, destroys its quarantine key and object.
pub(super) async fn reject(
    core: &Core,
    row: &file::Model,
    reason: &str,
    detected: Option<&str>,
) -> Result<(), JobError> {
    let txn = crate::db::begin_write(&core.db).await?;
    let moved = file::Entity::update_many()
        .col_expr(file::Column::Status, Expr::value(FileStatus::Rejected))
        .col_expr(file::Column::RejectReason, Expr::value(reason))
        .col_expr(
            file::Column::ContentType,
            Expr::value(detected.map(str::to_owned)),
        )
        .col_expr(
            file::Column::QuarantineKey,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .col_expr(
            file::Column::QuarantineKekVersion,
            Expr::value(Option::<i32>::None),
        )
        .col_expr(file::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(file::Column::Id.eq(row.id))
        .filter(file::Column::Status.is_in([FileStatus::Quarantined, FileStatus::Validated]))
        .exec(&txn)
        .await?;
    if moved.rows_affected == 1 {
        super::notify::cancel_pending(&txn, &core.audit, row.id, reason).await?;
        Event::new(Action::FileRejected, Actor::System)
            .target("file", row.id)
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "reason": reason, "detected_type": detected }))
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    if moved.rows_affected == 1 {
        // A bundle waiting for this file goes out with its other files.
        super::notify::enqueue_pending(core, row.id).await;
    }
    core.storage
        .delete(&quarantine_path(row.id))
        .await
        .map_err(|e| {
            JobError::Transient(anyhow::Error::new(e).context("deleting a rejected upload"))
        })?;
    Ok(())
}

/// Conditionally moves a row and writes its audit event in one transaction. Returns whether
/// this call made the move. The move ends the phase: the run's lease goes with it (so the next
/// phase's job, queued at once, can take the file), and the next phase counts its own attempts.
pub(super) async fn transition(
    core: &Core,
    file_id: Uuid,
    from: FileStatus,
    sets: Vec<(file::Column, sea_orm::sea_query::SimpleExpr)>,
    event: Event,
) -> Result<bool, JobError> {
    let txn = crate::db::begin_write(&core.db).await?;
    let mut update = file::Entity::update_many()
        .col_expr(file::Column::UpdatedAt, Expr::value(Utc::now()))
        .col_expr(file::Column::Attempts, Expr::value(0))
        .col_expr(file::Column::LeaseHolder, Expr::value(Option::<Uuid>::None))
        .col_expr(
            file::Column::LeaseUntil,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .filter(file::Column::Id.eq(file_id))
        .filter(file::Column::Status.eq(from));
    for (column, value) in sets {
        update = update.col_expr(column, value);
    }
    let moved = update.exec(&txn).await?.rows_affected == 1;
    if moved {
        event.record(&txn, &core.audit).await?;
    }
    txn.commit().await?;
    Ok(moved)
}

/// Why a file whose stored upload fails authentication is rejected.
pub(super) fn integrity() -> String {
    t("file-rejected-integrity")
}

/// Tampered or corrupt stored bytes are permanent; anything else is worth retrying.
pub(super) fn read_error(err: ReadError) -> JobError {
    if err.is_integrity() {
        JobError::Permanent(integrity())
    } else {
        JobError::Transient(anyhow::Error::new(err).context("reading quarantine"))
    }
}

/// Rejects the file for a permanent failure; hands transient ones back to be retried.
pub(super) async fn settle(core: &Core, row: &file::Model, err: JobError) -> Result<(), JobError> {
    match err {
        JobError::Permanent(reason) => reject(core, row, &reason, None).await,
        transient => Err(transient),
    }
}

/// The plaintext of a quarantined upload, decrypted as it streams.
pub(super) async fn open_quarantine(
    core: &Core,
    row: &file::Model,
) -> Result<BoxStream<'static, Result<Bytes, ReadError>>, JobError> {
    let key = quarantine_key(core, row).await?;
    let size = u64::try_from(row.size).unwrap_or(0);
    core.storage
        .read_sealed(
            &quarantine_path(row.id),
            &key,
            row.id,
            size,
            None,
            Opening::TwoThreads,
        )
        .await
        .map_err(read_error)
}

/// The message id of what the owner reads when their file could not be checked within its
/// attempts or deadline.
pub(super) const UNSCANNED: &str = "file-rejected-unscanned";
/// Likewise for a file that was checked but could not be stored encrypted.
pub(super) const UNSEALED: &str = "file-rejected-unsealed";

/// Runs `run` on the file under a [`Lease`], as one of its attempts. A file out of attempts
/// (`COFFER_JOB_MAX_ATTEMPTS`) or past its deadline (`COFFER_PROCESSING_DEADLINE` after the
/// upload) is rejected with message `gave_up` as the reason; so is one whose last attempt fails. A run
/// that fails because of a keyring fault is not counted, and no file is given up while the
/// keyring is at fault: that is the operator's to mend.
pub(super) async fn with_lease<F, Fut>(
    core: &Core,
    row: &file::Model,
    gave_up: &str,
    run: F,
) -> Result<(), JobError>
where
    F: FnOnce(file::Model) -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    let Some(lease) = Lease::take(core, row.id, row.status).await? else {
        tracing::debug!(file_id = %row.id, "another run is working on the file; leaving it be");
        return Ok(());
    };
    let Some(row) = load(core, row.id).await? else {
        lease.release().await;
        return Ok(());
    };
    let max = i32::try_from(core.config.job_max_attempts).unwrap_or(i32::MAX);
    let deadline = row.created_at
        + chrono::Duration::from_std(core.config.processing_deadline)
            .unwrap_or(chrono::Duration::days(1));
    // While the keyring is at fault the file waits, whatever its age: that is the operator's to
    // mend, and giving up would destroy the upload.
    if core.keys.fault().is_none() && (row.attempts > max || Utc::now() > deadline) {
        tracing::warn!(file_id = %row.id, attempts = row.attempts, %deadline, "giving up on a file: out of attempts or past its deadline");
        let rejected = reject(core, &row, &t(gave_up), None).await;
        lease.release().await;
        return rejected;
    }
    let result = run(row.clone()).await;
    let result = match result {
        Err(JobError::Transient(err)) if core.keys.fault().is_some() => {
            lease.uncount().await;
            Err(JobError::Transient(err))
        }
        Err(JobError::Transient(err)) if row.attempts >= max => {
            tracing::warn!(file_id = %row.id, attempts = row.attempts, error = %format!("{err:#}"), "giving up on a file: its last attempt failed");
            reject(core, &row, &t(gave_up), None).await
        }
        other => other,
    };
    lease.release().await;
    result
}
