//! Files: upload (multipart or raw PUT), list, metadata, download with ranges, delete.

use chrono::{DateTime, Utc};
use coffer_core::ServiceError;
use coffer_core::services::files::{self, Blanks, FileView};
use coffer_core::services::shares::{self, ShareRequest};
use coffer_core::types::FileName;
use futures::TryStreamExt as _;
use poem::{Body, Request};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;

use super::Tag;
use super::shares::ShareInfo;
use crate::auth::{UserAuth, core, meta};
use crate::problem::ApiError;
use crate::range;
use crate::upload::{Parts, RawBody, UploadForm};

pub struct FilesApi;

const DEFAULT_PAGE: u64 = 50;

/// The upload's file; with several `file` parts, the first of them, and all in `files`.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct FileAccepted {
    id: uuid::Uuid,
    name: String,
    size: u64,
    /// `quarantined` until the validation and encryption jobs have run.
    status: super::FileStatusName,
    /// Every file of the upload, in the order sent (the one file, unless a form held several).
    files: Vec<AcceptedFile>,
    /// Shares asked for with the upload (absent when none were), one per recipient of all its
    /// files; their links are emailed once every file is ready (a file rejected meanwhile is
    /// left out).
    shares: Option<Vec<ShareInfo>>,
}

/// A file of an upload.
#[derive(Object)]
struct AcceptedFile {
    id: uuid::Uuid,
    name: String,
    size: u64,
    status: super::FileStatusName,
}

impl From<FileView> for AcceptedFile {
    fn from(v: FileView) -> Self {
        Self {
            id: v.id,
            name: v.name,
            size: v.size,
            status: v.status.into(),
        }
    }
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct FileMetadata {
    id: uuid::Uuid,
    name: String,
    size: u64,
    /// The type found in the content (not the one the client claimed); set once validated.
    content_type: Option<String>,
    /// SHA-256 of the plaintext, hex.
    sha256: String,
    status: super::FileStatusName,
    /// Why the file was rejected, in words for its owner.
    reject_reason: Option<String>,
    created_at: DateTime<Utc>,
    ready_at: Option<DateTime<Utc>>,
}

impl From<FileView> for FileMetadata {
    fn from(v: FileView) -> Self {
        Self {
            id: v.id,
            name: v.name,
            size: v.size,
            content_type: v.content_type,
            sha256: v.sha256,
            status: v.status.into(),
            reject_reason: v.reject_reason,
            created_at: v.created_at,
            ready_at: v.ready_at,
        }
    }
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct FilePage {
    /// Newest first.
    files: Vec<FileMetadata>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

#[derive(ApiResponse)]
enum UploadResponse {
    /// Accepted into quarantine; watch `GET /api/v1/files/{id}` for `ready` or `rejected`.
    #[oai(status = 202)]
    Accepted(Json<FileAccepted>),
}

#[derive(ApiResponse)]
enum DeleteResponse {
    /// Deleted: its key is destroyed, then its data.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
enum ContentResponse {
    #[oai(status = 200)]
    Full(
        Binary<Body>,
        #[oai(header = "Content-Type")] String,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Content-Length")] u64,
        #[oai(header = "Accept-Ranges")] String,
        #[oai(header = "ETag")] String,
        #[oai(header = "X-Content-Type-Options")] String,
    ),
    #[oai(status = 206)]
    Partial(
        Binary<Body>,
        #[oai(header = "Content-Type")] String,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Content-Length")] u64,
        #[oai(header = "Content-Range")] String,
        #[oai(header = "ETag")] String,
        #[oai(header = "X-Content-Type-Options")] String,
    ),
}

pub(crate) fn parse_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    // Malformed ids are "no such file", like unknown ones: nothing to learn from the difference.
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::from(ServiceError::NotFound("file")))
}

fn accepted(uploaded: files::Uploaded) -> Result<UploadResponse, ApiError> {
    let files: Vec<AcceptedFile> = uploaded.files.into_iter().map(AcceptedFile::from).collect();
    let first = files
        .first()
        .ok_or_else(|| ApiError::internal(&"an upload recorded no file"))?;
    let shares = uploaded.shares;
    Ok(UploadResponse::Accepted(Json(FileAccepted {
        id: first.id,
        name: first.name.clone(),
        size: first.size,
        status: first.status,
        files,
        shares: (!shares.is_empty()).then(|| shares.into_iter().map(ShareInfo::from).collect()),
    })))
}

/// `attachment` with an ASCII fallback and the exact name in RFC 5987 form (RFC 6266).
pub(crate) fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Files")]
impl FilesApi {
    /// Upload files (multipart)
    ///
    /// One `file` part per file (up to 100). Each is sealed into quarantine as it arrives and
    /// becomes `ready` once it has been validated and encrypted. With recipients, each gets one
    /// link to every file of the upload.
    #[oai(path = "/files", method = "post")]
    async fn upload(
        &self,
        req: &Request,
        auth: UserAuth,
        form: UploadForm,
    ) -> Result<UploadResponse, ApiError> {
        let core = core(req)?;
        let mut parts = Parts(form.0);
        let uploaded = files::upload_form(core, &auth.0.user, &mut parts, Blanks::Sent, &meta(req))
            .await
            .map_err(|refused| ApiError::from(refused.error))?;
        accepted(uploaded)
    }

    /// Upload a file (raw body, e.g. `curl -T report.pdf`)
    ///
    /// Share fields go in the query string. A password there may end up in proxy logs: prefer
    /// the multipart upload or `POST /api/v1/files/{id}/shares` for password-protected links.
    #[oai(path = "/files/:file", method = "put")]
    #[allow(clippy::too_many_arguments)]
    async fn put(
        &self,
        req: &Request,
        auth: UserAuth,
        /// The new file's name.
        #[oai(name = "file")]
        name: Path<String>,
        /// Recipients to email a link to once the file is ready (repeat, or separate by commas).
        #[oai(default)]
        recipients: Query<Vec<String>>,
        #[oai(validator(minimum(value = "1")))] expires_in_hours: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1")))] max_downloads: Query<Option<i64>>,
        password: Query<Option<String>>,
        message: Query<Option<String>>,
        /// Recipients must prove their address (a code emailed to it) before downloading.
        verify_recipient: Query<Option<bool>>,
        /// Email me when a recipient completes a download (default: my preferences).
        receipts: Query<Option<bool>>,
        body: RawBody,
    ) -> Result<UploadResponse, ApiError> {
        let core = core(req)?;
        let name = FileName::parse(&name.0).map_err(|e| ApiError::unprocessable(e.0))?;
        let share = ShareRequest {
            recipients: shares::split_recipients(&recipients.0),
            expires_at: None,
            expires_in_hours: expires_in_hours.0,
            max_downloads: max_downloads.0,
            password: password.0.map(SecretString::from),
            message: message.0,
            verify_recipient: verify_recipient.0,
            receipts: receipts.0,
        };
        let body = body.0.into_bytes_stream();
        let uploaded = files::upload(core, &auth.0.user, name, body, share, &meta(req)).await?;
        accepted(uploaded)
    }

    /// List your files, newest first
    #[oai(path = "/files", method = "get")]
    async fn list(
        &self,
        req: &Request,
        auth: UserAuth,
        cursor: Query<Option<String>>,
        /// 1 to 200; 50 by default.
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> Result<Json<FilePage>, ApiError> {
        let after = match cursor.0.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(uuid::Uuid::parse_str(raw).map_err(|_| {
                ApiError::unprocessable("`cursor` is not a cursor this API returned")
            })?),
        };
        // The range is declared (and checked) on the parameter.
        let limit = limit.0.unwrap_or(DEFAULT_PAGE);
        let (page, next) = files::list(core(req)?, &auth.0.user, after, limit).await?;
        Ok(Json(FilePage {
            files: page.into_iter().map(FileMetadata::from).collect(),
            next_cursor: next.map(|id| id.to_string()),
        }))
    }

    /// A file's metadata and status
    #[oai(path = "/files/:file", method = "get")]
    async fn get(
        &self,
        req: &Request,
        auth: UserAuth,
        /// The file's id.
        #[oai(name = "file")]
        id: Path<String>,
    ) -> Result<Json<FileMetadata>, ApiError> {
        let view = files::get(core(req)?, &auth.0.user, parse_id(&id.0)?).await?;
        Ok(Json(view.into()))
    }

    /// Download a file's content (supports `Range`, and `If-Range` with the `ETag` to resume)
    #[oai(path = "/files/:id/content", method = "get")]
    async fn content(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
        #[oai(name = "Range")] range_header: Header<Option<String>>,
        #[oai(name = "If-Range")] if_range: Header<Option<String>>,
    ) -> Result<ContentResponse, ApiError> {
        let core = core(req)?;
        let id = parse_id(&id.0)?;
        let file = files::owned(core, &auth.0.user, id).await?;
        let range::Chosen { range, etag } = range::choose(
            &file.view(),
            range_header.0.as_deref(),
            if_range.0.as_deref(),
        )
        .map_err(ApiError::range_not_satisfiable)?;
        let content = files::content(
            core,
            &auth.0.user,
            file,
            range,
            crate::auth::delivery(req),
            &meta(req),
        )
        .await?;
        let body = Binary(Body::from_bytes_stream(
            content.body.map_err(std::io::Error::other),
        ));
        let file = content.file;
        // Always a download, never something a browser renders: the detected type is in the
        // file's metadata.
        let kind = "application/octet-stream".to_owned();
        let disposition = content_disposition(&file.name);
        let nosniff = "nosniff".to_owned();
        Ok(match content.range {
            None => ContentResponse::Full(
                body,
                kind,
                disposition,
                file.size,
                "bytes".to_owned(),
                etag,
                nosniff,
            ),
            Some((start, end)) => ContentResponse::Partial(
                body,
                kind,
                disposition,
                end - start + 1,
                range::content_range(start, end, file.size),
                etag,
                nosniff,
            ),
        })
    }

    /// Delete a file (crypto-shredded)
    #[oai(path = "/files/:file", method = "delete")]
    async fn delete(
        &self,
        req: &Request,
        auth: UserAuth,
        /// The file's id.
        #[oai(name = "file")]
        id: Path<String>,
    ) -> Result<DeleteResponse, ApiError> {
        files::delete(core(req)?, &auth.0.user, parse_id(&id.0)?, &meta(req)).await?;
        Ok(DeleteResponse::Deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn disposition_escapes_hostile_names() {
        let value = content_disposition("a\"b\\c\r\nX-Evil: 1 ü.pdf");
        assert!(!value.contains('\r') && !value.contains('\n'));
        assert!(
            value.starts_with("attachment; filename=\"a_b_c__X-Evil: 1 _.pdf\"; filename*=UTF-8''")
        );
        assert!(
            value.ends_with("a%22b%5Cc%0D%0AX%2DEvil%3A%201%20%C3%BC%2Epdf"),
            "{value}"
        );
    }
}
