//! Shares, from the owner's side: create (one link per recipient), list, revoke, and each
//! share's access report.

use chrono::{DateTime, Utc};
use coffer_core::services::shares::{self, ShareRequest, ShareView};
use poem::{Body, Request};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi, ResponseContent};
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
    /// Complete downloads and those under way (each takes its place when it starts and gives it
    /// back if it stops short): never more than `max_downloads`.
    downloads_used: i32,
    /// Downloads that delivered the file to its last byte.
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

impl From<shares::Entry> for ActivityEvent {
    fn from(e: shares::Entry) -> Self {
        Self {
            seq: e.seq,
            occurred_at: e.occurred_at,
            action: e.action,
            outcome: e.outcome,
            actor_kind: e.actor_kind,
            ip: e.ip,
            user_agent: e.user_agent,
            details: e.details,
            hash: e.hash,
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

/// How a share's access report is written.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
enum ActivityFormat {
    /// One page, as JSON.
    Json,
    /// The whole report, as CSV (streamed).
    Csv,
}

/// One event of a share's access report, as the audit log holds it.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct ActivityEvent {
    /// The event's sequence number in the audit chain.
    seq: i64,
    occurred_at: DateTime<Utc>,
    /// `share.created`, `share.emailed`, `share.viewed`, `share.denied`, `share.downloaded`,
    /// `share.revoked`, …
    action: String,
    /// `success`, `failure` or `denied`.
    outcome: String,
    /// `recipient` (whoever holds the link), `user`, `admin` or `system`.
    actor_kind: String,
    /// The client's address.
    ip: Option<String>,
    user_agent: Option<String>,
    /// As recorded: a refusal's `reason`, a download's `file_id`; repeated views counted
    /// together carry `repeated`, `from` and `to`.
    details: serde_json::Value,
    /// The event's chain hash, hex (`GET /api/v1/admin/audit/verify` vouches for the chain).
    hash: String,
}

/// A page of a share's access report.
#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct ActivityPage {
    share: ShareInfo,
    /// Oldest first, in chain order.
    events: Vec<ActivityEvent>,
    /// Pass as `after_seq` for the next page; absent on the last one.
    next_cursor: Option<i64>,
}

#[derive(ResponseContent)]
enum ActivityContent {
    Json(Json<ActivityPage>),
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(Binary<Body>),
}

#[derive(ApiResponse)]
enum ActivityResponse {
    /// The report: a page of JSON, or the whole report as a CSV attachment.
    #[oai(status = 200)]
    Report(
        ActivityContent,
        #[oai(header = "Content-Disposition")] Option<String>,
    ),
}

/// A field that `null` clears: left out, `None`; `null`, `Some(None)`.
fn nullable<T>(field: MaybeUndefined<T>) -> Option<Option<T>> {
    match field {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(value) => Some(Some(value)),
    }
}

fn share_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::from(coffer_core::ServiceError::NotFound("share")))
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
            verify_recipient: given(body.verify_recipient, "verify_recipient")?,
            receipts: given(body.receipts, "receipts")?,
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

    /// A share's access report: every view, refusal and download of its link (time, client
    /// address, user agent), read from the audit log. Its owner's, or any share's for an admin
    #[oai(path = "/shares/:id/activity", method = "get")]
    async fn activity(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
        /// Default: `json`.
        format: Query<Option<ActivityFormat>>,
        /// JSON only: events after this sequence number (the previous page's `next_cursor`).
        after_seq: Query<Option<i64>>,
        /// JSON only: 1 to 1000; 100 by default.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
    ) -> Result<ActivityResponse, ApiError> {
        let (core, id) = (core(req)?, share_id(&id.0)?);
        if format.0 == Some(ActivityFormat::Csv) {
            let body = shares::export_csv(core, &auth.0.user, id).await?;
            return Ok(ActivityResponse::Report(
                ActivityContent::Csv(Binary(Body::from_bytes_stream(body))),
                Some(format!("attachment; filename=\"share-{id}-activity.csv\"")),
            ));
        }
        let page =
            shares::activity(core, &auth.0.user, id, after_seq.0, limit.0.unwrap_or(100)).await?;
        Ok(ActivityResponse::Report(
            ActivityContent::Json(Json(ActivityPage {
                share: page.share.into(),
                events: page.events.into_iter().map(ActivityEvent::from).collect(),
                next_cursor: page.next,
            })),
            None,
        ))
    }
}
