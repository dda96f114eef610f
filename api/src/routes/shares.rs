//! Shares, from the owner's side: create (one link per recipient, of one file or a bundle),
//! list, change, send again and revoke. Each share's access report is `activity`.

use chrono::{DateTime, Utc};
use coffer_core::services::shares::{self, ShareRequest, ShareView};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;

use super::Tag;
use super::files::parse_id;
use crate::auth::{UserAuth, core, meta};
use crate::problem::ApiError;

pub struct SharesApi;

#[derive(Object)]
#[oai(deny_unknown_fields)]
struct CreateShares {
    /// The files to share, in the order the recipient sees them (at most 100; several make a
    /// bundle, which the recipient downloads file by file or as one ZIP). Only for
    /// `POST /api/v1/shares`, which needs it; `POST /api/v1/files/{id}/shares` shares its file.
    file_ids: MaybeUndefined<Vec<uuid::Uuid>>,
    /// Each recipient gets their own link by email. Leave empty to get one link back instead.
    #[oai(default)]
    recipients: Vec<String>,
    /// When the links stop working (at most `COFFER_SHARE_MAX_TTL` ahead).
    expires_at: MaybeUndefined<DateTime<Utc>>,
    /// Alternative to `expires_at`. Default: 7 days (or the cap, if shorter).
    #[oai(validator(minimum(value = "1")))]
    expires_in_hours: MaybeUndefined<i64>,
    /// Downloads allowed per link.
    #[oai(validator(minimum(value = "1")))]
    max_downloads: MaybeUndefined<i64>,
    /// Recipients must type this to download (at least 8 characters; tell them separately).
    password: MaybeUndefined<String>,
    /// A note shown in the email and on the download page.
    message: MaybeUndefined<String>,
    /// Recipients must prove their address before downloading: the download page emails them
    /// a six-digit code on request. Needs recipients. Always on under
    /// `COFFER_REQUIRE_RECIPIENT_VERIFICATION`.
    verify_recipient: MaybeUndefined<bool>,
    /// Email me when a recipient completes a download. Left out: as my preferences say
    /// (`GET /api/v1/me/preferences`).
    receipts: MaybeUndefined<bool>,
}

/// What to change of a share; a field left out stays as it is.
#[derive(Object)]
#[oai(deny_unknown_fields)]
struct ShareChange {
    /// A new expiry (at most `COFFER_SHARE_MAX_TTL` from now; earlier shortens the link's life).
    expires_at: MaybeUndefined<DateTime<Utc>>,
    /// Alternative to `expires_at`: hours from now.
    #[oai(validator(minimum(value = "1")))]
    expires_in_hours: MaybeUndefined<i64>,
    /// Downloads allowed in all; `null` removes the limit. A limit at or below the downloads
    /// used ends the link like a used-up one.
    #[oai(validator(minimum(value = "1")))]
    max_downloads: MaybeUndefined<i64>,
    /// A new password (at least 8 characters); `null` or `""` removes it.
    password: MaybeUndefined<String>,
    /// Whether the recipient must prove their address before downloading (cannot be turned
    /// off under `COFFER_REQUIRE_RECIPIENT_VERIFICATION`).
    verify_recipient: MaybeUndefined<bool>,
    /// Whether the owner is emailed when a recipient completes a download.
    receipts: MaybeUndefined<bool>,
    /// Files of yours to add to the share, after those it has (it becomes a bundle, at most
    /// 100 files); recorded in `share.changed` as its files before and after.
    add_file_ids: MaybeUndefined<Vec<uuid::Uuid>>,
}

/// A file of a share, with its downloads through the share.
#[derive(Object)]
pub struct SharedFileInfo {
    file_id: uuid::Uuid,
    /// Complete downloads of the file and those under way: never more than `max_downloads`.
    downloads_used: i32,
    /// Downloads that delivered the file to its last byte.
    downloads_completed: i32,
}

/// A share as its owner sees it.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ShareInfo {
    id: uuid::Uuid,
    /// The share's first file (its only one, unless it is a bundle).
    file_id: uuid::Uuid,
    /// Every file of the share, in the order the recipient sees them.
    files: Vec<SharedFileInfo>,
    /// Absent for a link handed to the owner.
    recipient: Option<String>,
    /// The link, returned only when a share without recipient is created.
    url: Option<String>,
    state: super::ShareStateName,
    expires_at: DateTime<Utc>,
    /// Complete downloads allowed of each file.
    max_downloads: Option<i32>,
    /// Complete downloads and those under way (each takes its place when it starts and gives it
    /// back if it stops short): never more than `max_downloads`. Of a bundle, those of the file
    /// with fewest (`files` has each one's).
    downloads_used: i32,
    /// Downloads that delivered the file to its last byte; of a bundle, those of the file with
    /// fewest: how many times the recipient received every file.
    downloads_completed: i32,
    password: bool,
    /// Whether the recipient must prove their address before downloading.
    verify_recipient: bool,
    /// Whether the owner is emailed when a recipient completes a download.
    receipts: bool,
    created_at: DateTime<Utc>,
    emailed_at: Option<DateTime<Utc>>,
    /// Why the email failed or the share was cancelled.
    last_error: Option<String>,
}

impl From<ShareView> for ShareInfo {
    fn from(v: ShareView) -> Self {
        Self {
            id: v.id,
            file_id: v.file_id,
            files: v
                .files
                .into_iter()
                .map(|f| SharedFileInfo {
                    file_id: f.file_id,
                    downloads_used: f.downloads_used,
                    downloads_completed: f.downloads_completed,
                })
                .collect(),
            recipient: v.recipient,
            url: v.url,
            state: v.state.into(),
            expires_at: v.expires_at,
            max_downloads: v.max_downloads,
            downloads_used: v.downloads_used,
            downloads_completed: v.downloads_completed,
            password: v.password,
            verify_recipient: v.verify_recipient,
            receipts: v.receipts,
            created_at: v.created_at,
            emailed_at: v.emailed_at,
            last_error: v.last_error,
        }
    }
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct ShareList {
    shares: Vec<ShareInfo>,
}

#[derive(ApiResponse)]
enum CreateResponse {
    /// Created; recipients' links are emailed once the file is ready.
    #[oai(status = 201)]
    Created(Json<ShareList>),
}

#[derive(ApiResponse)]
enum ResendResponse {
    /// A fresh link is on its way to the recipient; the old one no longer opens anything.
    #[oai(status = 202)]
    Accepted(Json<ShareInfo>),
}

#[derive(ApiResponse)]
enum RevokeResponse {
    /// Revoked: the link stops working at once.
    #[oai(status = 204)]
    Revoked,
}

/// A field that `null` clears: left out, `None`; `null`, `Some(None)`.
fn nullable<T>(field: MaybeUndefined<T>) -> Option<Option<T>> {
    match field {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

pub(super) fn share_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::from(coffer_core::ServiceError::NotFound("share")))
}

impl CreateShares {
    /// The share fields as the core takes them, and `file_ids` if given. A field left out takes
    /// its default; `null` is refused rather than guessed at.
    fn into_request(self) -> Result<(Option<Vec<uuid::Uuid>>, ShareRequest), ApiError> {
        use super::admin::given;
        let body = self;
        let file_ids = given(body.file_ids, "file_ids")?;
        let request = ShareRequest {
            recipients: body.recipients,
            expires_at: given(body.expires_at, "expires_at")?,
            expires_in_hours: given(body.expires_in_hours, "expires_in_hours")?,
            max_downloads: given(body.max_downloads, "max_downloads")?,
            password: given(body.password, "password")?.map(SecretString::from),
            message: given(body.message, "message")?,
            verify_recipient: given(body.verify_recipient, "verify_recipient")?,
            receipts: given(body.receipts, "receipts")?,
        };
        Ok((file_ids, request))
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Shares")]
impl SharesApi {
    /// Share a file
    #[oai(path = "/files/:id/shares", method = "post")]
    async fn create(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
        body: Json<CreateShares>,
    ) -> Result<CreateResponse, ApiError> {
        let core = core(req)?;
        let (file_ids, request) = body.0.into_request()?;
        if file_ids.is_some() {
            return Err(ApiError::from(coffer_core::ServiceError::Invalid(
                coffer_core::text::t("share-error-file-ids-here"),
            )));
        }
        let file_id = parse_id(&id.0)?;
        let views = shares::create(core, &auth.0.user, &[file_id], request, &meta(req)).await?;
        Ok(CreateResponse::Created(Json(ShareList {
            shares: views.into_iter().map(ShareInfo::from).collect(),
        })))
    }

    /// Share several files at once (a bundle), or one
    ///
    /// Takes `file_ids` and the fields of `POST /api/v1/files/{id}/shares`. Each file must be
    /// the caller's and not rejected; recipients' links are emailed once every file is ready.
    /// The recipient's page lists the files: each downloads on its own, and "Download all"
    /// streams them as one ZIP. `max_downloads` counts each file's complete downloads (a
    /// "Download all" counts one of each).
    #[oai(path = "/shares", method = "post")]
    async fn create_bundle(
        &self,
        req: &Request,
        auth: UserAuth,
        body: Json<CreateShares>,
    ) -> Result<CreateResponse, ApiError> {
        let core = core(req)?;
        let (file_ids, request) = body.0.into_request()?;
        let file_ids = file_ids.unwrap_or_default();
        let views = shares::create(core, &auth.0.user, &file_ids, request, &meta(req)).await?;
        Ok(CreateResponse::Created(Json(ShareList {
            shares: views.into_iter().map(ShareInfo::from).collect(),
        })))
    }

    /// A file's shares, with their state and downloads used
    #[oai(path = "/files/:id/shares", method = "get")]
    async fn list(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
    ) -> Result<Json<ShareList>, ApiError> {
        let views = shares::list(core(req)?, &auth.0.user, parse_id(&id.0)?).await?;
        Ok(Json(ShareList {
            shares: views.into_iter().map(ShareInfo::from).collect(),
        }))
    }

    /// Revoke a share
    #[oai(path = "/shares/:id", method = "delete")]
    async fn revoke(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
    ) -> Result<RevokeResponse, ApiError> {
        shares::revoke(core(req)?, &auth.0.user, share_id(&id.0)?, &meta(req)).await?;
        Ok(RevokeResponse::Revoked)
    }

    /// Change a share: its expiry, download limit, password, whether the recipient must verify
    /// or whether it sends receipts (audited as `share.changed` with the old and new values). A link that has ended
    /// (revoked, expired, cancelled) answers 409
    #[oai(path = "/shares/:id", method = "patch")]
    async fn change(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
        body: Json<ShareChange>,
    ) -> Result<Json<ShareInfo>, ApiError> {
        let body = body.0;
        use super::admin::given;
        let edit = shares::ShareEdit {
            expires_at: given(body.expires_at, "expires_at")?,
            expires_in_hours: given(body.expires_in_hours, "expires_in_hours")?,
            max_downloads: nullable(body.max_downloads),
            password: nullable(body.password).map(|p| p.map(SecretString::from)),
            verify_recipient: given(body.verify_recipient, "verify_recipient")?,
            receipts: given(body.receipts, "receipts")?,
            add_files: given(body.add_file_ids, "add_file_ids")?.unwrap_or_default(),
        };
        let view =
            shares::edit(core(req)?, &auth.0.user, share_id(&id.0)?, edit, &meta(req)).await?;
        Ok(Json(view.into()))
    }

    /// Email the recipient a fresh link (the old one stops working at once); it counts against
    /// `COFFER_SHARE_EMAILS_PER_DAY` like a new share
    #[oai(path = "/shares/:id/resend", method = "post")]
    async fn resend(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
    ) -> Result<ResendResponse, ApiError> {
        let view = shares::resend(core(req)?, &auth.0.user, share_id(&id.0)?, &meta(req)).await?;
        Ok(ResendResponse::Accepted(Json(view.into())))
    }
}
