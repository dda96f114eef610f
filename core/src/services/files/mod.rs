//! Files: metadata, listing, download and deletion; uploading is in [`upload`] (a raw body)
//! and [`form`] (an upload form).

mod form;
mod upload;

pub use form::{Blanks, FormPart, FormParts, Refused, text_field, upload_form};
pub use upload::{Uploaded, upload};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use uuid::Uuid;

use entity::file;

use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::crypto::WrappedKey;
use crate::db::by_key;
use crate::principal::{Scope, User};
use crate::storage::{Opening, ReadError, blob_path, quarantine_path};
use crate::text::{Arg, t_with};
use crate::types::FileStatus;
use crate::{Core, ServiceError, ServiceResult};

/// What an owner may see of a file.
#[derive(Debug, Clone)]
pub struct FileView {
    pub id: Uuid,
    pub name: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub sha256: String,
    pub status: FileStatus,
    pub reject_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
}

impl From<file::Model> for FileView {
    fn from(m: file::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            size: u64::try_from(m.size).unwrap_or(0),
            content_type: m.content_type,
            sha256: m.sha256,
            status: m.status,
            reject_reason: m.reject_reason,
            created_at: m.created_at,
            ready_at: m.ready_at,
        }
    }
}

async fn find_owned(core: &Core, owner: Uuid, id: Uuid) -> ServiceResult<file::Model> {
    // On SQLite, in place; sea-orm when that reader leaves it (see `db::in_place`).
    if let Some(found) = core.in_place.as_ref().and_then(|r| r.owned_file(id, owner)) {
        return found.ok_or(ServiceError::NotFound("file"));
    }
    // On PostgreSQL, on a connection kept out of the pool (see `db::kept`).
    let select = owned_select(owner, id);
    let kept = match &core.kept {
        Some(kept) => {
            kept.rows::<sea_orm::SelectModel<file::Model>>(&select)
                .await
        }
        None => None,
    };
    let found = match kept {
        Some(rows) => rows?.into_iter().next(),
        None => by_key(select, &core.db).await?,
    };
    found.ok_or(ServiceError::NotFound("file"))
}

/// The query of `owner`'s file `id` unless it is deleted: what [`find_owned`] asks sea-orm when
/// the file is not read in place (and what `db::in_place`'s tests hold that reader to).
pub(crate) fn owned_select(owner: Uuid, id: Uuid) -> sea_orm::Select<file::Entity> {
    file::Entity::find_by_id(id)
        .filter(file::Column::OwnerId.eq(owner))
        .filter(file::Column::Status.ne(FileStatus::Deleted))
}

pub async fn get(core: &Core, owner: &User, id: Uuid) -> ServiceResult<FileView> {
    owner.require(Scope::FilesRead)?;
    Ok(find_owned(core, owner.id, id).await?.into())
}

/// One of the caller's files, looked up once for a download.
pub struct OwnedFile(file::Model);

impl OwnedFile {
    pub fn view(&self) -> FileView {
        self.0.clone().into()
    }
}

pub async fn owned(core: &Core, owner: &User, id: Uuid) -> ServiceResult<OwnedFile> {
    owner.require(Scope::FilesRead)?;
    find_owned(core, owner.id, id).await.map(OwnedFile)
}

/// The owner's files, newest first. `after` is the last id of the previous page.
pub async fn list(
    core: &Core,
    owner: &User,
    after: Option<Uuid>,
    limit: u64,
) -> ServiceResult<(Vec<FileView>, Option<Uuid>)> {
    owner.require(Scope::FilesRead)?;
    let mut rows = list_select(owner.id, after, limit).all(&core.db).await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok((rows.into_iter().map(FileView::from).collect(), next))
}

/// The one statement behind a page of [`list`] (one row more than the page, to know whether
/// another follows); public so that the benchmark harness can show its plan.
pub fn list_select(owner: Uuid, after: Option<Uuid>, limit: u64) -> sea_orm::Select<file::Entity> {
    let mut query = file::Entity::find()
        .filter(file::Column::OwnerId.eq(owner))
        .filter(file::Column::Status.ne(FileStatus::Deleted));
    if let Some(after) = after {
        query = query.filter(file::Column::Id.lt(after));
    }
    query.order_by_desc(file::Column::Id).limit(limit + 1)
}

/// Crypto-shreds a file: its wrapped keys are destroyed in the database first, then the objects.
pub async fn delete(core: &Core, owner: &User, id: Uuid, meta: &RequestMeta) -> ServiceResult<()> {
    owner.require(Scope::FilesWrite)?;
    let txn = crate::db::begin_write(&core.db).await?;
    let row = file::Entity::find_by_id(id)
        .filter(file::Column::OwnerId.eq(owner.id))
        .filter(file::Column::Status.ne(FileStatus::Deleted))
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound("file"))?;
    file::Entity::update_many()
        .col_expr(file::Column::Status, Expr::value(FileStatus::Deleted))
        .col_expr(file::Column::Dek, Expr::value(Option::<Vec<u8>>::None))
        .col_expr(
            file::Column::DekKekVersion,
            Expr::value(Option::<i32>::None),
        )
        .col_expr(
            file::Column::QuarantineKey,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .col_expr(
            file::Column::QuarantineKekVersion,
            Expr::value(Option::<i32>::None),
        )
        .col_expr(file::Column::BlobId, Expr::value(Option::<Uuid>::None))
        .col_expr(file::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(file::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    crate::jobs::notify::cancel_pending(&txn, &core.audit, id, "the file was deleted").await?;
    Event::new(Action::FileDeleted, owner.actor())
        .target("file", id)
        .details(serde_json::json!({ "name": row.name, "previous_status": row.status.as_str() }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    // A bundle waiting for this file goes out with its other files.
    crate::jobs::notify::enqueue_pending(core, id).await;

    let mut paths = vec![quarantine_path(id)];
    if let Some(blob) = row.blob_id {
        paths.push(blob_path(id, blob));
    }
    for path in paths {
        if let Err(err) = core.storage.delete(&path).await {
            // The key is already gone, so what remains is unreadable; the orphan sweep removes it.
            tracing::warn!(%path, error = %err, "could not delete an object of a deleted file");
        }
    }
    Ok(())
}

/// A download: the file, the byte range served, and the plaintext.
pub struct Content {
    pub file: FileView,
    pub range: Option<(u64, u64)>,
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// Whether a download request gets the file's bytes (GET, POST) or only the headers it would
/// get (HEAD). Only a delivery of bytes is a download: HEAD is neither counted nor audited as
/// one, and nothing is decrypted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Bytes,
    HeadersOnly,
}

impl Content {
    /// The answer to a HEAD: the file's headers, no body.
    pub(crate) fn headers_only(file: file::Model, range: Option<(u64, u64)>) -> Self {
        Self {
            file: file.into(),
            range,
            body: futures::stream::empty().boxed(),
        }
    }
}

/// Opens a ready file for its owner. `range` is inclusive and already checked against the size.
pub async fn content(
    core: &Core,
    owner: &User,
    OwnedFile(row): OwnedFile,
    range: Option<(u64, u64)>,
    delivery: Delivery,
    meta: &RequestMeta,
) -> ServiceResult<Content> {
    owner.require(Scope::FilesRead)?;
    let id = row.id;
    if row.status != FileStatus::Ready {
        return Err(ServiceError::Conflict(t_with(
            "file-error-not-ready",
            [("status", Arg::from(row.status.to_string()))],
        )));
    }
    if delivery == Delivery::HeadersOnly {
        return Ok(Content::headers_only(row, range));
    }
    let body = open_ready(core, &row, range, owner.actor(), meta).await?;
    core.audit
        .record(
            Event::new(Action::FileDownloaded, owner.actor())
                .target("file", id)
                .details(match range {
                    Some((start, end)) => serde_json::json!({ "range": [start, end] }),
                    None => serde_json::json!({}),
                })
                .from(meta),
        )
        .await?;
    Ok(Content {
        file: row.into(),
        range,
        body,
    })
}

/// Decrypts a ready file's blob. Integrity failures are audited and never serve plaintext; a
/// failure found mid-stream ends the body with an error so the connection is aborted.
pub async fn open_ready(
    core: &Core,
    row: &file::Model,
    range: Option<(u64, u64)>,
    actor: Actor,
    meta: &RequestMeta,
) -> ServiceResult<BoxStream<'static, Result<Bytes, std::io::Error>>> {
    let (Some(dek), Some(version), Some(blob)) = (&row.dek, row.dek_kek_version, row.blob_id)
    else {
        return Err(
            integrity_failure(core, row.id, actor, meta, "no data key on a ready file").await,
        );
    };
    let wrapped = WrappedKey {
        kek_version: version,
        bytes: dek.clone(),
    };
    let key = match core.unwrap_key(row.id, &wrapped).await {
        Ok(key) => key,
        Err(crate::KeyFailure::Fault(err)) => return Err(err),
        Err(crate::KeyFailure::Altered(err)) => {
            return Err(integrity_failure(core, row.id, actor, meta, &err.to_string()).await);
        }
    };
    let size = u64::try_from(row.size).unwrap_or(0);
    let fail = async |err: ReadError| {
        if err.is_integrity() {
            integrity_failure(core, row.id, actor, meta, &err.to_string()).await
        } else {
            ServiceError::Unavailable(anyhow::Error::new(err).context("reading a blob"))
        }
    };
    let mut stream = match core
        .storage
        .read_sealed(
            &blob_path(row.id, blob),
            &key,
            row.id,
            size,
            range,
            Opening::OneThread,
        )
        .await
    {
        Ok(stream) => stream,
        Err(err) => return Err(fail(err).await),
    };
    // Open the first piece before answering: a file that fails at once gets a clean error
    // response instead of a started-then-aborted download (small files are checked whole).
    let first = match stream.next().await {
        Some(Ok(first)) => first,
        Some(Err(err)) => return Err(fail(err).await),
        None => Bytes::new(),
    };
    let stream = futures::stream::once(async move { Ok(first) }).chain(stream);
    let core = core.clone();
    let file_id = row.id;
    let meta = meta.clone();
    let via = match actor {
        Actor::Recipient(_) => crate::metrics::Via::share,
        _ => crate::metrics::Via::owner,
    };
    let metrics = core.metrics.clone();
    Ok(stream
        .inspect_ok(move |piece| metrics.downloaded(via, piece.len() as u64))
        .or_else(move |err: ReadError| {
            let core = core.clone();
            let meta = meta.clone();
            async move {
                if err.is_integrity() {
                    let _ = integrity_failure(&core, file_id, actor, &meta, &err.to_string()).await;
                } else {
                    tracing::error!(%file_id, error = %err, "reading a blob failed mid-download");
                }
                Err(std::io::Error::other("the download was stopped: the stored data could not be read or failed its integrity check"))
            }
        })
        .boxed())
}

async fn integrity_failure(
    core: &Core,
    file_id: Uuid,
    actor: Actor,
    meta: &RequestMeta,
    detail: &str,
) -> ServiceError {
    tracing::error!(%file_id, detail, "integrity check failed");
    let recorded = core
        .audit
        .record(
            Event::new(Action::FileIntegrityFailed, actor)
                .target("file", file_id)
                .outcome(Outcome::Failure)
                .details(serde_json::json!({ "detail": detail }))
                .from(meta),
        )
        .await;
    if let Err(err) = recorded {
        tracing::error!(%file_id, error = %err, "could not audit an integrity failure");
    }
    ServiceError::Integrity
}
