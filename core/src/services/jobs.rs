//! The background steps of a file's life: validate, encrypt, and the sweep that re-enqueues
//! stuck work. Every step re-reads its row and moves it with a conditional update, so a repeated
//! delivery is a no-op.

use crate::digest::StreamDigest;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, Condition, ConnectionTrait, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use entity::file;

use super::file_lease::Lease;
use crate::audit::{Actor, Event, Outcome};
use crate::crypto::stream::CHUNK_SIZE;
use crate::crypto::{SecretKey, WrappedKey};
use crate::db::by_key;
use crate::filetype::{self, MacroProbe, TextProbe};
use crate::queue::{EncryptFile, ValidateFile};
use crate::scan::Verdict;
use crate::storage::{ReadError, blob_path, quarantine_path};
use crate::types::{FileName, FileStatus};
use crate::{Core, JobError, KeyFailure};

async fn load(core: &Core, file_id: Uuid) -> Result<Option<file::Model>, JobError> {
    Ok(by_key(file::Entity::find_by_id(file_id), &core.db).await?)
}

/// The upload's quarantine key. A keyring problem is retried (the file waits in quarantine
/// until the operator mends the keyring); only a key that is gone or altered fails the file.
async fn quarantine_key(core: &Core, row: &file::Model) -> Result<SecretKey, JobError> {
    let (Some(kek_version), Some(bytes)) = (row.quarantine_kek_version, row.quarantine_key.clone())
    else {
        return Err(JobError::Permanent(INTEGRITY.to_owned()));
    };
    let wrapped = WrappedKey { kek_version, bytes };
    match core.unwrap_key(row.id, &wrapped).await {
        Ok(key) => Ok(key),
        Err(KeyFailure::Fault(err)) => Err(JobError::Transient(
            anyhow::Error::new(err).context(format!("opening the quarantine key of {}", row.id)),
        )),
        Err(KeyFailure::Altered(_)) => Err(JobError::Permanent(INTEGRITY.to_owned())),
    }
}

/// Moves a quarantined file to `rejected`, destroys its quarantine key and object.
async fn reject(
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
        super::shares::cancel_pending(&txn, &core.audit, row.id, reason).await?;
        Event::new("file.rejected", Actor::System)
            .target("file", row.id)
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "reason": reason, "detected_type": detected }))
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
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
async fn transition(
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

const INTEGRITY: &str = "the stored upload failed its integrity check";

/// Tampered or corrupt stored bytes are permanent; anything else is worth retrying.
fn read_error(err: ReadError) -> JobError {
    if err.is_integrity() {
        JobError::Permanent(INTEGRITY.to_owned())
    } else {
        JobError::Transient(anyhow::Error::new(err).context("reading quarantine"))
    }
}

/// Rejects the file for a permanent failure; hands transient ones back to be retried.
async fn settle(core: &Core, row: &file::Model, err: JobError) -> Result<(), JobError> {
    match err {
        JobError::Permanent(reason) => reject(core, row, &reason, None).await,
        transient => Err(transient),
    }
}

/// The plaintext of a quarantined upload, decrypted as it streams.
async fn open_quarantine(
    core: &Core,
    row: &file::Model,
) -> Result<BoxStream<'static, Result<Bytes, ReadError>>, JobError> {
    let key = quarantine_key(core, row).await?;
    let size = u64::try_from(row.size).unwrap_or(0);
    core.storage
        .read_sealed(&quarantine_path(row.id), &key, row.id, size, None)
        .await
        .map_err(read_error)
}

/// Reads the quarantine object back, checks what the file really is, and moves it to
/// `validated` (then enqueues encryption) or `rejected` with a reason its owner can read.
#[tracing::instrument(skip(core))]
pub async fn validate(core: &Core, file_id: Uuid) -> Result<(), JobError> {
    let Some(row) = load(core, file_id).await? else {
        return Ok(());
    };
    match row.status {
        FileStatus::Quarantined => {}
        FileStatus::Validated => {
            // An earlier run got this far; make sure encryption is queued.
            core.queue.enqueue(EncryptFile::new(file_id)).await?;
            return Ok(());
        }
        _ => return Ok(()),
    }
    with_lease(core, &row, UNSCANNED, |row| validate_leased(core, row)).await
}

/// What the owner reads when their file could not be checked within its attempts or deadline.
const UNSCANNED: &str = "could not be scanned, try again later";
/// Likewise for a file that was checked but could not be stored encrypted.
const UNSEALED: &str = "could not be encrypted, try again later";

/// Runs `run` on the file under a [`Lease`], as one of its attempts. A file out of attempts
/// (`COFFER_JOB_MAX_ATTEMPTS`) or past its deadline (`COFFER_PROCESSING_DEADLINE` after the
/// upload) is rejected with `gave_up` as the reason; so is one whose last attempt fails. A run
/// that fails because of a keyring fault is not counted, and no file is given up while the
/// keyring is at fault: that is the operator's to mend.
async fn with_lease<F, Fut>(
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
        let rejected = reject(core, &row, gave_up, None).await;
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
            reject(core, &row, gave_up, None).await
        }
        other => other,
    };
    lease.release().await;
    result
}

async fn validate_leased(core: &Core, row: file::Model) -> Result<(), JobError> {
    let file_id = row.id;
    let limit = core.config.max_upload_bytes;
    if u64::try_from(row.size).unwrap_or(u64::MAX) > limit {
        let reason = format!("the file exceeds the upload limit of {limit} bytes");
        return reject(core, &row, &reason, None).await;
    }

    let mut body = match open_quarantine(core, &row).await {
        Ok(body) => body,
        Err(err) => return settle(core, &row, err).await,
    };
    // clamd sees the plaintext as it is read: one pass for every check. Unreachable or failing,
    // it fails the job (retried); the file stays quarantined, never ready unscanned.
    let mut scan = match &core.scanner {
        Some(scanner) => Some(scanner.start().await?),
        None => None,
    };
    let mut head = Vec::with_capacity(CHUNK_SIZE);
    let mut probe = TextProbe::default();
    let mut macros = MacroProbe::default();
    let mut digest = StreamDigest::default();
    let mut seen = 0u64;
    while let Some(piece) = body.next().await {
        let piece = match piece {
            Ok(piece) => piece,
            Err(err) => return settle(core, &row, read_error(err)).await,
        };
        if head.len() < CHUNK_SIZE {
            let take = (CHUNK_SIZE - head.len()).min(piece.len());
            head.extend_from_slice(&piece[..take]);
        }
        probe.update(&piece);
        macros.update(&piece);
        seen += piece.len() as u64;
        if let Some(scan) = scan.as_mut() {
            scan.feed(&piece).await?;
        }
        digest.update(piece).await;
    }
    let sha256 = digest.finish().await.map_err(JobError::Transient)?;
    if i64::try_from(seen).ok() != Some(row.size) || sha256 != row.sha256 {
        return reject(
            core,
            &row,
            "the stored upload does not match what was received",
            None,
        )
        .await;
    }

    if let Some(scan) = scan {
        let reason = match scan.verdict().await? {
            Verdict::Clean => None,
            Verdict::Infected(signature) => Some(format!("malware detected: {signature}")),
            Verdict::TooLarge => Some(
                "the file is larger than the malware scanner accepts (clamd's StreamMaxLength)"
                    .to_owned(),
            ),
        };
        if let Some(reason) = reason {
            return reject(core, &row, &reason, None).await;
        }
    }

    let (mime, executable) = filetype::sniff(&head, probe.is_text(), macros.found());
    let reason = match FileName::parse(&row.name) {
        Ok(name) => filetype::reject_reason(&name, &mime, executable, &core.config.allowed_types),
        Err(err) => Some(err.0),
    };
    if let Some(reason) = reason {
        return reject(core, &row, &reason, Some(&mime)).await;
    }
    let event = Event::new("file.validated", Actor::System)
        .target("file", file_id)
        .details(serde_json::json!({ "content_type": mime }));
    let sets = vec![
        (file::Column::Status, Expr::value(FileStatus::Validated)),
        (file::Column::ContentType, Expr::value(mime)),
    ];
    if transition(core, file_id, FileStatus::Quarantined, sets, event).await? {
        core.queue.enqueue(EncryptFile::new(file_id)).await?;
    }
    Ok(())
}

/// Deletes the file's blob objects other than `keep`: what earlier runs wrote before they were
/// killed (a run that merely lost the race deletes its own). They are sealed under keys that
/// were never stored, so they are unreadable, but they take space.
async fn remove_stray_blobs(core: &Core, file_id: Uuid, keep: &object_store::path::Path) {
    match core.storage.list(&format!("blobs/{file_id}")).await {
        Ok(objects) => {
            for stray in objects.iter().filter(|o| *o != keep) {
                if let Err(err) = core.storage.delete(stray).await {
                    tracing::warn!(%file_id, error = %err, "could not delete a stray blob");
                }
            }
        }
        Err(err) => tracing::warn!(%file_id, error = %err, "could not list the file's blobs"),
    }
}

/// Re-seals a validated upload under a fresh data key into its blob, then destroys the
/// quarantine key and object. No file data is ever written unsealed.
#[tracing::instrument(skip(core))]
pub async fn encrypt(core: &Core, file_id: Uuid) -> Result<(), JobError> {
    let Some(row) = load(core, file_id).await? else {
        return Ok(());
    };
    if row.status != FileStatus::Validated {
        return Ok(());
    }
    with_lease(core, &row, UNSEALED, |row| encrypt_leased(core, row)).await
}

async fn encrypt_leased(core: &Core, row: file::Model) -> Result<(), JobError> {
    let file_id = row.id;
    let mut body = match open_quarantine(core, &row).await {
        Ok(body) => body,
        Err(err) => return settle(core, &row, err).await,
    };
    let dek = SecretKey::generate();
    let blob_id = Uuid::new_v4();
    let path = blob_path(file_id, blob_id);
    let mut writer = core
        .storage
        .create_sealed(path.clone(), &dek, file_id)
        .await
        .map_err(|e| JobError::Transient(anyhow::Error::new(e).context("creating a blob")))?;
    let mut digest = StreamDigest::default();
    while let Some(piece) = body.next().await {
        let step = match piece {
            Ok(piece) => {
                let written = writer.write(&piece).await;
                digest.update(piece).await;
                written.map_err(|e| {
                    JobError::Transient(anyhow::Error::new(e).context("writing a blob"))
                })
            }
            Err(err) => Err(read_error(err)),
        };
        if let Err(err) = step {
            writer.abort().await;
            return settle(core, &row, err).await;
        }
    }
    if digest.finish().await.map_err(JobError::Transient)? != row.sha256 {
        writer.abort().await;
        return reject(
            core,
            &row,
            "the stored upload does not match what was received",
            None,
        )
        .await;
    }
    writer
        .finish()
        .await
        .map_err(|e| JobError::Transient(anyhow::Error::new(e).context("completing a blob")))?;

    let wrapped = match core.wrap_key(file_id, &dek).await {
        Ok(wrapped) => wrapped,
        Err(err) => {
            let _ = core.storage.delete(&path).await;
            return Err(JobError::Transient(anyhow::anyhow!("{err}")));
        }
    };
    let event = Event::new("file.encrypted", Actor::System)
        .target("file", file_id)
        .details(serde_json::json!({ "kek_version": wrapped.kek_version }));
    let sets = vec![
        (file::Column::Status, Expr::value(FileStatus::Ready)),
        (file::Column::Dek, Expr::value(wrapped.bytes)),
        (
            file::Column::DekKekVersion,
            Expr::value(wrapped.kek_version),
        ),
        (file::Column::BlobId, Expr::value(blob_id)),
        (
            file::Column::QuarantineKey,
            Expr::value(Option::<Vec<u8>>::None),
        ),
        (
            file::Column::QuarantineKekVersion,
            Expr::value(Option::<i32>::None),
        ),
        (file::Column::ReadyAt, Expr::value(Utc::now())),
    ];
    let moved = transition(core, file_id, FileStatus::Validated, sets, event).await;
    if let Ok(true) = moved {
        if let Err(err) = core.storage.delete(&quarantine_path(file_id)).await {
            tracing::warn!(%file_id, error = %err, "could not delete a quarantine object; its key is gone");
        }
        remove_stray_blobs(core, file_id, &path).await;
        super::shares::enqueue_pending(core, file_id).await;
    } else {
        // Another run finished first, the file was deleted meanwhile, or the update failed:
        // this blob is surplus either way.
        let _ = core.storage.delete(&path).await;
    }
    moved.map(|_| ())
}

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
    super::shares::sweep(core).await?;
    super::keys::sweep(core).await?;
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
