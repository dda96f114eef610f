//! The encrypt job: re-seals a validated upload under a fresh data key into its blob, then
//! destroys the quarantine key and object, and queues the emails of the file's pending shares.
//! No file data is ever written unsealed.

use chrono::Utc;
use futures::StreamExt as _;
use sea_orm::sea_query::Expr;
use uuid::Uuid;

use entity::file;

use super::quarantine::{
    UNSEALED, load, open_quarantine, read_error, reject, settle, transition, with_lease,
};
use crate::audit::{Action, Actor, Event};
use crate::crypto::SecretKey;
use crate::digest::StreamDigest;
use crate::queue::payload;
use crate::storage::{blob_path, quarantine_path};
use crate::text::t;
use crate::types::FileStatus;
use crate::{Core, JobError};

payload! {
    /// Re-seal a validated upload under its own data key.
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
        return reject(core, &row, &t("file-rejected-mismatch"), None).await;
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
    let event = Event::new(Action::FileEncrypted, Actor::System)
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
        super::notify::enqueue_pending(core, file_id).await;
    } else {
        // Another run finished first, the file was deleted meanwhile, or the update failed:
        // this blob is surplus either way.
        let _ = core.storage.delete(&path).await;
    }
    moved.map(|_| ())
}
