//! A share's access report, from the audit log: a page of JSON, or the whole of it as CSV.

use chrono::{DateTime, Utc};
use coffer_core::services::shares;
use poem::{Body, Request};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, ResponseContent};

use super::Tag;
use super::shares::{ShareInfo, share_id};
use crate::auth::{UserAuth, core};
use crate::problem::ApiError;

pub struct ActivityApi;

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
    Json(Json<Box<ActivityPage>>),
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

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Shares")]
impl ActivityApi {
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
            ActivityContent::Json(Json(Box::new(ActivityPage {
                share: page.share.into(),
                events: page.events.into_iter().map(ActivityEvent::from).collect(),
                next_cursor: page.next,
            }))),
            None,
        ))
    }
}
