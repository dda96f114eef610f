//! The encrypt job: makes a validated upload the file's blob, then destroys the quarantine key
//! and object, and queues the emails of the file's pending shares.
//!
//! The upload was sealed in quarantine under a random key of its own, wrapped by the master key,
//! in the same stream format as a blob and bound to the same file id; validation has just
//! authenticated every chunk of it. So by default the object becomes the blob as it is (a hard
//! link locally, a server-side copy in S3) and that key becomes the data key: the file is ready
//! without being read a second time. With `COFFER_RESEAL_AFTER_VALIDATION` (or an S3 object past
//! a single copy's size) it is re-sealed under a fresh data key instead. The trade is in
//! docs/SECURITY.md. No file data is ever written unsealed.

use chrono::Utc;
use futures::StreamExt as _;
use sea_orm::sea_query::{Expr, SimpleExpr};
use uuid::Uuid;

use entity::file;

use super::quarantine::{
    UNSEALED, load, open_quarantine, read_error, reject, settle, transition, with_lease,
};
use crate::audit::{Action, Actor, Event};
use crate::crypto::SecretKey;
use crate::crypto::stream::Layout;
use crate::digest::StreamDigest;
use crate::queue::payload;
use crate::storage::{blob_path, quarantine_path};
use crate::text::t;
use crate::types::FileStatus;
use crate::{Core, JobError};

payload! {
    /// Make a validated upload the file's blob, under its own data key.
    EncryptFile(file_id) in "encrypt";
}

impl super::Job for EncryptFile {
    async fn run(self, core: &Core, _attempt: usize) -> Result<(), JobError> {
        encrypt(core, self.file_id).await
    }
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

/// Makes a validated upload the file's blob (kept as sealed, or re-sealed under a fresh data
/// key), then destroys the quarantine key and object.
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
    let sealed_len = Layout::new(u64::try_from(row.size).unwrap_or(0)).sealed_len();
    let sealed = if core.config.reseal_after_validation || !core.storage.can_copy(sealed_len) {
        reseal(core, &row).await?
    } else {
        keep(core, &row).await?
    };
    let Some(sealed) = sealed else {
        return Ok(()); // rejected
    };
    let event = Event::new(Action::FileEncrypted, Actor::System)
        .target("file", row.id)
        .details(serde_json::json!({
            "kek_version": sealed.kek_version,
            "resealed": sealed.resealed,
        }));
    let mut sets = sealed.key;
    sets.extend([
        (file::Column::Status, Expr::value(FileStatus::Ready)),
        (file::Column::BlobId, Expr::value(sealed.blob_id)),
        (
            file::Column::QuarantineKey,
            Expr::value(Option::<Vec<u8>>::None),
        ),
        (
            file::Column::QuarantineKekVersion,
            Expr::value(Option::<i32>::None),
        ),
        (file::Column::ReadyAt, Expr::value(Utc::now())),
    ]);
    let path = blob_path(row.id, sealed.blob_id);
    let moved = transition(core, row.id, FileStatus::Validated, sets, event).await;
    if let Ok(true) = moved {
        if let Err(err) = core.storage.delete(&quarantine_path(row.id)).await {
            tracing::warn!(file_id = %row.id, error = %err, "could not delete a quarantine object; its name is gone from the row");
        }
        remove_stray_blobs(core, row.id, &path).await;
        super::notify::enqueue_pending(core, row.id).await;
    } else {
        // Another run finished first, the file was deleted meanwhile, or the update failed:
        // this blob is surplus either way.
        let _ = core.storage.delete(&path).await;
    }
    moved.map(|_| ())
}

/// A blob written for the file, not yet recorded: the columns that set its data key, and what
/// its `file.encrypted` event says.
struct Blob {
    blob_id: Uuid,
    key: Vec<(file::Column, SimpleExpr)>,
    kek_version: Option<i32>,
    resealed: bool,
}

/// The quarantine object becomes the blob as it is, and its key the data key. The key moves
/// column to column in the update that makes the file ready, so a rotation rewrapping it
/// meanwhile is never undone.
async fn keep(core: &Core, row: &file::Model) -> Result<Option<Blob>, JobError> {
    let blob_id = Uuid::new_v4();
    match core
        .storage
        .copy(&quarantine_path(row.id), &blob_path(row.id, blob_id))
        .await
    {
        Ok(()) => {}
        Err(err) => return settle(core, row, read_error(err)).await.map(|()| None),
    }
    Ok(Some(Blob {
        blob_id,
        key: vec![
            (file::Column::Dek, Expr::col(file::Column::QuarantineKey)),
            (
                file::Column::DekKekVersion,
                Expr::col(file::Column::QuarantineKekVersion),
            ),
        ],
        kek_version: row.quarantine_kek_version,
        resealed: false,
    }))
}

/// Re-seals the upload under a fresh data key into a new blob, checking its digest again as it
/// goes.
async fn reseal(core: &Core, row: &file::Model) -> Result<Option<Blob>, JobError> {
    let file_id = row.id;
    let mut body = match open_quarantine(core, row).await {
        Ok(body) => body,
        Err(err) => return settle(core, row, err).await.map(|()| None),
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
            return settle(core, row, err).await.map(|()| None);
        }
    }
    if digest.finish().await.map_err(JobError::Transient)? != row.sha256 {
        writer.abort().await;
        return reject(core, row, &t("file-rejected-mismatch"), None)
            .await
            .map(|()| None);
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
    Ok(Some(Blob {
        blob_id,
        key: vec![
            (file::Column::Dek, Expr::value(wrapped.bytes)),
            (
                file::Column::DekKekVersion,
                Expr::value(wrapped.kek_version),
            ),
        ],
        kek_version: Some(wrapped.kek_version),
        resealed: true,
    }))
}
