//! Shares, from the owner's side: create (one link per recipient), list, revoke.

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
}

/// A share as its owner sees it.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ShareInfo {
    id: uuid::Uuid,
    file_id: uuid::Uuid,
    /// Absent for a link handed to the owner.
    recipient: Option<String>,
    /// The link, returned only when a share without recipient is created.
    url: Option<String>,
    state: super::ShareStateName,
    expires_at: DateTime<Utc>,
    max_downloads: Option<i32>,
    downloads_used: i32,
    password: bool,
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
            recipient: v.recipient,
            url: v.url,
            state: v.state.into(),
            expires_at: v.expires_at,
            max_downloads: v.max_downloads,
            downloads_used: v.downloads_used,
            password: v.password,
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
enum RevokeResponse {
    /// Revoked: the link stops working at once.
    #[oai(status = 204)]
    Revoked,
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
        let body = body.0;
        // A field left out takes its default; `null` is refused rather than guessed at.
        use super::admin::given;
        let request = ShareRequest {
            recipients: body.recipients,
            expires_at: given(body.expires_at, "expires_at")?,
            expires_in_hours: given(body.expires_in_hours, "expires_in_hours")?,
            max_downloads: given(body.max_downloads, "max_downloads")?,
            password: given(body.password, "password")?.map(SecretString::from),
            message: given(body.message, "message")?,
        };
        let file_id = parse_id(&id.0)?;
        let views = shares::create(core, &auth.0.user, file_id, request, &meta(req)).await?;
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
        let id = uuid::Uuid::parse_str(&id.0)
            .map_err(|_| ApiError::from(coffer_core::ServiceError::NotFound("share")))?;
        shares::revoke(core(req)?, &auth.0.user, id, &meta(req)).await?;
        Ok(RevokeResponse::Revoked)
    }
}
