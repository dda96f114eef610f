//! Uploading: the body sealed into quarantine as it arrives (never buffered, never on disk in
//! plaintext), then the file's row, its `file.uploaded` event and the shares asked for with it,
//! in one transaction. Whatever fails, nothing is left behind.

use bytes::Bytes;
use chrono::Utc;
use futures::stream::{Stream, StreamExt as _};
use sea_orm::EntityTrait as _;
use uuid::Uuid;

use entity::file;

use super::FileView;
use crate::audit::{Action, Event, RequestMeta};
use crate::crypto::{SecretKey, WrappedKey};
use crate::digest::StreamDigest;
use crate::jobs::validate::ValidateFile;
use crate::principal::{Scope, User};
use crate::services::shares::{self, ShareRequest, ShareSpec, ShareView};
use crate::storage::{SealedWriter, quarantine_path};
use crate::text::{Arg, t, t_with};
use crate::types::{FileName, FileStatus};
use crate::{Core, ServiceError, ServiceResult};

/// An upload being sealed into quarantine as it arrives.
struct Ingest {
    id: Uuid,
    key: SecretKey,
    writer: SealedWriter,
    size: u64,
    digest: StreamDigest,
    limit: u64,
}

/// A complete upload, sealed in quarantine but not yet recorded.
#[derive(Debug)]
pub(super) struct Sealed {
    id: Uuid,
    size: u64,
    sha256: String,
    wrapped: WrappedKey,
}

impl Ingest {
    async fn start(core: &Core) -> ServiceResult<Self> {
        let id = Uuid::now_v7();
        let key = SecretKey::generate();
        let writer = core
            .storage
            .create_sealed(quarantine_path(id), &key, id)
            .await
            .map_err(|e| {
                ServiceError::Unavailable(
                    anyhow::Error::new(e).context("starting a quarantine object"),
                )
            })?;
        Ok(Self {
            id,
            key,
            writer,
            size: 0,
            digest: StreamDigest::default(),
            limit: core.config.max_upload_bytes,
        })
    }

    /// Seals the next piece. Fails with `TooLarge` the moment the limit is crossed; the caller
    /// then calls [`Ingest::abort`].
    async fn write(&mut self, data: Bytes) -> ServiceResult<()> {
        self.size += data.len() as u64;
        if self.size > self.limit {
            return Err(ServiceError::TooLarge { limit: self.limit });
        }
        self.digest.update(data.clone()).await;
        self.writer
            .write(&data)
            .await
            .map_err(|e| ServiceError::Internal(anyhow::Error::new(e).context("sealing an upload")))
    }

    async fn abort(self) {
        self.writer.abort().await;
    }

    /// Completes the quarantine object. An empty upload is refused: a zero-byte file is almost
    /// always a failed export, and there is nothing in it to share.
    async fn finish(self, core: &Core) -> ServiceResult<Sealed> {
        if self.size == 0 {
            self.abort().await;
            return Err(ServiceError::Invalid(t("upload-error-empty")));
        }
        let wrapped = match core.wrap_key(self.id, &self.key).await {
            Ok(wrapped) => wrapped,
            Err(err) => {
                self.abort().await;
                return Err(err);
            }
        };
        self.writer.finish().await.map_err(|e| {
            ServiceError::Internal(anyhow::Error::new(e).context("completing a quarantine object"))
        })?;
        let sha256 = self
            .digest
            .finish()
            .await
            .map_err(|e| ServiceError::Internal(e.context("hashing an upload")))?;
        Ok(Sealed {
            id: self.id,
            size: self.size,
            sha256,
            wrapped,
        })
    }
}

/// Streams a whole body into quarantine; on any failure nothing is left behind.
pub(super) async fn ingest<E>(
    core: &Core,
    body: impl Stream<Item = Result<Bytes, E>>,
) -> ServiceResult<Sealed>
where
    E: std::fmt::Display,
{
    let mut ingest = Ingest::start(core).await?;
    let mut body = std::pin::pin!(body);
    while let Some(piece) = body.next().await {
        let result = match piece {
            Ok(bytes) => ingest.write(bytes).await,
            Err(err) => Err(ServiceError::BadRequest(t_with(
                "upload-error-interrupted",
                [("error", Arg::from(err.to_string()))],
            ))),
        };
        if let Err(err) = result {
            ingest.abort().await;
            return Err(err);
        }
    }
    ingest.finish(core).await
}

/// What an upload became: the owner's new quarantined files (one, unless a form held several)
/// and the shares asked for with them.
#[derive(Debug)]
pub struct Uploaded {
    /// In the order they were sent; never empty.
    pub files: Vec<FileView>,
    pub shares: Vec<ShareView>,
}

/// Uploads a file in one call: checks the share request, streams `body` into quarantine, and
/// records the file and its shares. Nothing is left behind when any step fails.
pub async fn upload<E>(
    core: &Core,
    owner: &User,
    name: FileName,
    body: impl Stream<Item = Result<Bytes, E>>,
    share: ShareRequest,
    meta: &RequestMeta,
) -> ServiceResult<Uploaded>
where
    E: std::fmt::Display,
{
    // Before a byte is read: a bad share request costs the client no upload.
    owner.require(Scope::FilesWrite)?;
    let share = share.resolve_for_upload(core)?;
    if share.is_some() {
        owner.require(Scope::SharesWrite)?;
    }
    let sealed = ingest(core, body).await?;
    record(core, owner, vec![(name, sealed)], share, meta).await
}

/// Records uploads already sealed by [`ingest`] (a form's file parts, which stream before the
/// form's other fields are read: see `super::form`), with the shares asked for along with them.
/// The sealed objects are removed when the request is refused.
pub(super) async fn create(
    core: &Core,
    owner: &User,
    files: Vec<(FileName, Sealed)>,
    share: ShareRequest,
    meta: &RequestMeta,
) -> ServiceResult<Uploaded> {
    match share.resolve_for_upload(core) {
        Ok(share) => record(core, owner, files, share, meta).await,
        Err(err) => {
            let ids: Vec<Uuid> = files.iter().map(|(_, sealed)| sealed.id).collect();
            forget(core, &ids).await;
            Err(err)
        }
    }
}

/// Removes the quarantine objects of uploads that will not be recorded.
async fn forget(core: &Core, ids: &[Uuid]) {
    for &id in ids {
        if let Err(err) = core.storage.delete(&quarantine_path(id)).await {
            tracing::warn!(file_id = %id, error = %err, "could not remove a refused upload; the orphan sweep will");
        }
    }
}

/// Records sealed uploads as the owner's new quarantined files, with one share per recipient of
/// all of them, and starts their validation.
async fn record(
    core: &Core,
    owner: &User,
    files: Vec<(FileName, Sealed)>,
    share: Option<ShareSpec>,
    meta: &RequestMeta,
) -> ServiceResult<Uploaded> {
    let ids: Vec<Uuid> = files.iter().map(|(_, sealed)| sealed.id).collect();
    let prepared = match &share {
        Some(spec) => match shares::prepare(core, owner, spec, meta).await {
            Ok(prepared) => Some(prepared),
            Err(err) => {
                forget(core, &ids).await;
                return Err(err);
            }
        },
        None => None,
    };
    let now = Utc::now();
    let models = files
        .into_iter()
        .map(|(name, sealed)| file_row(core, owner, name, sealed, now))
        .collect::<ServiceResult<Vec<_>>>();
    let models = match models {
        Ok(models) => models,
        Err(err) => {
            forget(core, &ids).await;
            return Err(err);
        }
    };
    let recorded = async {
        let txn = crate::db::begin_write(&core.db).await?;
        file::Entity::insert_many(models.iter().cloned().map(file::ActiveModel::from))
            .exec(&txn)
            .await?;
        for model in &models {
            Event::new(Action::FileUploaded, owner.actor())
                .target("file", model.id)
                .details(serde_json::json!({ "name": model.name, "size": model.size, "sha256": model.sha256 }))
                .from(meta)
                .record(&txn, &core.audit)
                .await?;
        }
        let shares = match (&share, prepared) {
            (Some(spec), Some(prepared)) => {
                shares::insert(core, &txn, owner, &ids, spec, prepared, meta).await?
            }
            _ => Vec::new(),
        };
        txn.commit().await?;
        Ok::<_, ServiceError>(shares)
    }
    .await;
    let shares = match recorded {
        Ok(shares) => shares,
        Err(err) => {
            forget(core, &ids).await;
            return Err(err);
        }
    };
    for model in &models {
        core.metrics.uploaded(model.size.unsigned_abs());
        // The row is committed; if this enqueue is lost, the sweep enqueues again.
        if let Err(err) = core.queue.enqueue(ValidateFile::new(model.id)).await {
            tracing::warn!(file_id = %model.id, error = %err, "could not enqueue validation; the sweep will retry");
        }
    }
    Ok(Uploaded {
        files: models.into_iter().map(FileView::from).collect(),
        shares,
    })
}

/// The row of a sealed upload: the owner's, quarantined, its data key wrapped.
fn file_row(
    core: &Core,
    owner: &User,
    name: FileName,
    sealed: Sealed,
    now: chrono::DateTime<Utc>,
) -> ServiceResult<file::Model> {
    Ok(file::Model {
        id: sealed.id,
        owner_id: owner.id,
        name: name.as_str().to_owned(),
        size: i64::try_from(sealed.size).map_err(|_| ServiceError::TooLarge {
            limit: core.config.max_upload_bytes,
        })?,
        content_type: None,
        sha256: sealed.sha256,
        status: FileStatus::Quarantined,
        reject_reason: None,
        quarantine_key: Some(sealed.wrapped.bytes),
        quarantine_kek_version: Some(sealed.wrapped.kek_version),
        dek: None,
        dek_kek_version: None,
        blob_id: None,
        created_at: now,
        updated_at: now,
        ready_at: None,
        attempts: 0,
        lease_holder: None,
        lease_until: None,
    })
}

/// Destroys a sealed upload that will not be recorded (the request failed after the file part).
pub(super) async fn discard(core: &Core, sealed: Sealed) -> ServiceResult<()> {
    core.storage
        .delete(&quarantine_path(sealed.id))
        .await
        .map_err(|e| ServiceError::Internal(anyhow::Error::new(e).context("discarding an upload")))
}
