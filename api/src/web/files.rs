//! My files: the list (refreshing itself while something is pending), the upload form, a
//! file's page with its shares, the download and deletion.

use coffer_core::services::files::{self, Blanks, FileView, FormParts as _};
use coffer_core::services::receipts;
use coffer_core::services::shares::{self, ShareRequest, ShareView};
use coffer_core::text::{self, Arg, t, t_with};
use coffer_core::types::{FileStatus, ShareState};
use coffer_core::{Core, ServiceError};
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::web::{Multipart, Path};
use poem::{Body, Request, Response};

use super::account::sentence;
use super::page::{self, Fields, when};
use super::session::SignedIn;
use super::{INVALID, core};
use crate::auth::meta;
use crate::range;
use crate::upload::Parts;

const PAGE_SIZE: u64 = 25;
/// Expiry choices offered by the forms, in hours (those past `COFFER_SHARE_MAX_TTL` are left
/// out), with their labels' message ids.
const EXPIRY_CHOICES: &[(i64, &str)] = &[
    (1, "expiry-1-hour"),
    (24, "expiry-1-day"),
    (72, "expiry-3-days"),
    (168, "expiry-7-days"),
    (720, "expiry-30-days"),
];

fn pending(status: FileStatus) -> bool {
    matches!(status, FileStatus::Quarantined | FileStatus::Validated)
}

pub(super) fn file_context(f: &FileView) -> Value {
    context! {
        id => f.id.to_string(),
        name => &f.name,
        size => text::size(f.size),
        bytes => f.size,
        status => f.status.as_str(),
        status_label => t(match f.status {
            FileStatus::Quarantined => "file-status-quarantined",
            FileStatus::Validated => "file-status-validated",
            FileStatus::Ready => "file-status-ready",
            FileStatus::Rejected => "file-status-rejected",
            FileStatus::Deleted => "file-status-deleted",
        }),
        pending => pending(f.status),
        reason => &f.reject_reason,
        content_type => &f.content_type,
        sha256 => &f.sha256,
        created => when(f.created_at),
        ready => f.ready_at.map(when),
    }
}

/// The expiry choices the forms offer (those past `COFFER_SHARE_MAX_TTL` left out), with
/// `chosen` selected, or by default the longest up to 7 days; `None` selects none.
pub(super) fn expiry_choices(core: &Core, chosen: Option<Option<i64>>) -> Vec<Value> {
    let cap = i64::try_from(core.config.share_max_ttl.as_secs() / 3600)
        .unwrap_or(i64::MAX)
        .max(1);
    let mut choices: Vec<(i64, &str)> = EXPIRY_CHOICES
        .iter()
        .copied()
        .filter(|(hours, _)| *hours <= cap)
        .collect();
    if choices.is_empty() {
        choices.push((cap, "expiry-longest"));
    }
    let default = choices
        .iter()
        .map(|(h, _)| *h)
        .filter(|h| *h <= 168)
        .max()
        .unwrap_or(choices[0].0);
    let chosen = chosen.map(|c| c.unwrap_or(default));
    choices
        .iter()
        .map(|(hours, label)| context! { hours => *hours, label => t(label), selected => chosen == Some(*hours) })
        .collect()
}

/// The share fields of a form as the user filled them in (never the password), and the
/// expiry choices with theirs selected.
pub(super) fn share_form(core: &Core, request: &ShareRequest) -> Value {
    context! {
        recipients => request.recipients.join("\n"),
        max_downloads => request.max_downloads,
        message => &request.message,
        expiry => expiry_choices(core, Some(request.expires_in_hours)),
        verify_recipient => request.verify_recipient == Some(true),
        receipts => request.receipts == Some(true),
        verify_required => core.config.require_recipient_verification,
    }
}

/// `GET /app/files`: newest first, a page at a time.
#[poem::handler]
pub async fn list(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let query = Fields::query(req);
    let after = query
        .given("cursor")
        .and_then(|c| uuid::Uuid::parse_str(c).ok());
    let (rows, next) = files::list(core, &me.session.user, after, PAGE_SIZE)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    let refresh = rows.iter().any(|f| pending(f.status));
    let rows: Vec<Value> = rows.iter().map(file_context).collect();
    Ok(page::view(
        Some(&me),
        StatusCode::OK,
        "app/files.html",
        context! {
            files => rows,
            refresh => refresh,
            next => next.map(|id| id.to_string()),
            paged => after.is_some(),
            notice => notice(&query),
        },
    ))
}

/// Where an upload leads: one file's page, or the files list saying how many arrived.
fn uploaded_page(uploaded: &files::Uploaded) -> String {
    match uploaded.files.as_slice() {
        [one] => format!("/app/files/{}", one.id),
        several if uploaded.shares.is_empty() => format!("/app/files?uploaded={}", several.len()),
        several => format!("/app/files?uploaded={}&shared=1", several.len()),
    }
}

/// What the files list says of what just happened (a deletion, an upload of several files).
fn notice(query: &Fields) -> Option<String> {
    if query.get("deleted").is_some() {
        return Some(t("files-notice-deleted"));
    }
    let count = query.given("uploaded")?.parse::<u32>().ok()?;
    let message = match query.given("shared") {
        Some(_) => "files-notice-uploaded-shared",
        None => "files-notice-uploaded",
    };
    Some(t_with(message, [("count", Arg::from(count))]))
}

/// The upload form (with the share fields), as new or as the user filled it in.
fn upload_form(
    core: &Core,
    me: &SignedIn,
    status: StatusCode,
    request: &ShareRequest,
    error: Option<&str>,
) -> Response {
    page::with_script(page::view(
        Some(me),
        status,
        "app/upload.html",
        context! {
            share => share_form(core, request),
            error => error,
            max_size => text::size(core.config.max_upload_bytes),
        },
    ))
}

#[poem::handler]
pub async fn upload_page(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let fresh = fresh_share(core, &me).await?;
    Ok(upload_form(core, &me, StatusCode::OK, &fresh, None))
}

/// The share fields of a form not yet filled in: the receipts box as the user's preference
/// sets it.
pub(super) async fn fresh_share(core: &Core, me: &SignedIn) -> poem::Result<ShareRequest> {
    let preferences = receipts::preferences(core, me.session.user.id)
        .await
        .map_err(|e| page::service_error(Some(me), e))?;
    Ok(ShareRequest {
        receipts: Some(preferences.on_new_shares),
        ..ShareRequest::default()
    })
}

/// `POST /app/files`: the upload form, read by core as `POST /api/v1/files` is. Its first part
/// must be the CSRF token, checked before a byte of the file is read.
#[poem::handler]
pub async fn upload_file(req: &Request, multipart: Multipart) -> poem::Result<Response> {
    let core = core(req)?;
    let mut parts = Parts(multipart);
    let csrf = match parts.next_part().await.ok().flatten() {
        Some(part) if part.name.as_deref() == Some("csrf") => {
            files::text_field(part, 256).await.ok()
        }
        _ => None,
    };
    let me = SignedIn::from_form(req, core, csrf.as_deref()).await?;
    let user = &me.session.user;
    let refused =
        match files::upload_form(core, user, &mut parts, Blanks::NotGiven, &meta(req)).await {
            Ok(uploaded) => return Ok(page::redirect(&uploaded_page(&uploaded))),
            Err(refused) => refused,
        };
    // What the user can mend is shown on the form, as they filled it in; the rest is a page of
    // its own.
    let (status, text) = match &refused.error {
        _ if refused.no_file => (INVALID, t("upload-error-no-file")),
        ServiceError::TooLarge { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            t_with(
                "upload-error-too-large",
                [("limit", Arg::from(text::size(*limit)))],
            ),
        ),
        ServiceError::FieldsTooLarge(detail) => (StatusCode::PAYLOAD_TOO_LARGE, sentence(detail)),
        ServiceError::BadRequest(detail) => (StatusCode::BAD_REQUEST, sentence(detail)),
        ServiceError::Invalid(detail) => (INVALID, sentence(detail)),
        _ => return Err(page::service_error(Some(&me), refused.error)),
    };
    Ok(upload_form(core, &me, status, &refused.share, Some(&text)))
}

pub(super) fn share_context(s: &ShareView) -> Value {
    let label = match s.state {
        ShareState::Pending => "share-state-pending",
        ShareState::Emailed => "share-state-emailed",
        ShareState::Outbox => "share-state-outbox",
        ShareState::EmailFailed => "share-state-email-failed",
        ShareState::Active => "share-state-active",
        ShareState::Revoked => "share-state-revoked",
        ShareState::Expired => "share-state-expired",
        ShareState::Cancelled => "share-state-cancelled",
    };
    let label = t(label);
    let live = s.state.is_live();
    // Complete downloads; those under way may still give their place back.
    let mut downloads = match s.max_downloads {
        Some(max) => t_with(
            "file-share-downloads-of",
            [
                ("used", Arg::from(s.downloads_completed)),
                ("max", Arg::from(max)),
            ],
        ),
        None => t_with(
            "file-share-downloads",
            [("used", Arg::from(s.downloads_completed))],
        ),
    };
    let under_way = s.downloads_used - s.downloads_completed;
    if under_way > 0 {
        downloads.push(' ');
        downloads.push_str(&t_with(
            "file-share-under-way",
            [("count", Arg::from(under_way))],
        ));
    }
    context! {
        id => s.id.to_string(),
        recipient => &s.recipient,
        state => s.state.as_str(),
        label => label,
        live => live,
        used_up => s.max_downloads.is_some_and(|m| s.downloads_completed >= m),
        files => s.files.len(),
        downloads => downloads,
        max_downloads => s.max_downloads,
        expires => when(s.expires_at),
        emailed => s.emailed_at.map(when),
        password => s.password,
        verify => s.verify_recipient,
        receipts => s.receipts,
        last_error => &s.last_error,
    }
}

/// A file's page: details, shares and the form to share it further (with an error and the
/// user's input when a share form came back).
pub(super) async fn details_page(
    core: &Core,
    me: &SignedIn,
    id: uuid::Uuid,
    status: StatusCode,
    request: &ShareRequest,
    error: Option<&str>,
) -> poem::Result<Response> {
    let fail = |e| page::service_error(Some(me), e);
    let file = files::get(core, &me.session.user, id).await.map_err(fail)?;
    let shares = shares::list(core, &me.session.user, id)
        .await
        .map_err(fail)?;
    let shares: Vec<Value> = shares.iter().map(share_context).collect();
    Ok(page::view(
        Some(me),
        status,
        "app/file.html",
        context! {
            file => file_context(&file),
            shares => shares,
            share => share_form(core, request),
            error => error,
            refresh => pending(file.status),
        },
    ))
}

#[poem::handler]
pub async fn details(req: &Request, Path(id): Path<String>) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let id = page::parse_id(&me, &id, "file")?;
    let fresh = fresh_share(core, &me).await?;
    details_page(core, &me, id, StatusCode::OK, &fresh, None).await
}

/// The owner's download, as `GET /api/v1/files/{id}/content` answers it: with `Range` and
/// `If-Range`, so that a browser can resume a big download that broke off.
#[poem::handler]
pub async fn download(req: &Request, Path(id): Path<String>) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let id = page::parse_id(&me, &id, "file")?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let page_error = |e| page::service_error(Some(&me), e);
    let file = files::owned(core, &me.session.user, id)
        .await
        .map_err(page_error)?;
    let range::Chosen { range, etag } =
        match range::choose(&file.view(), header("Range"), header("If-Range")) {
            Ok(chosen) => chosen,
            Err(size) => {
                return Ok(Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("Content-Range", format!("bytes */{size}"))
                    .content_type("text/plain; charset=utf-8")
                    .body("The requested range lies beyond the end of the file."));
            }
        };
    let content = files::content(
        core,
        &me.session.user,
        file,
        range,
        crate::auth::delivery(req),
        &meta(req),
    )
    .await
    .map_err(page_error)?;
    let file = &content.file;
    let response = Response::builder()
        // Always a download, never something a browser renders.
        .content_type("application/octet-stream")
        .header(
            "Content-Disposition",
            crate::routes::files::content_disposition(&file.name),
        )
        .header("Accept-Ranges", "bytes")
        .header("ETag", etag);
    let response = match content.range {
        None => response.header("Content-Length", file.size),
        Some((start, end)) => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header("Content-Length", end - start + 1)
            .header("Content-Range", range::content_range(start, end, file.size)),
    };
    Ok(response.body(Body::from_bytes_stream(content.body)))
}

#[poem::handler]
pub async fn delete_page(req: &Request, Path(id): Path<String>) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let id = page::parse_id(&me, &id, "file")?;
    let file = files::get(core, &me.session.user, id)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(page::view(
        Some(&me),
        StatusCode::OK,
        "app/delete.html",
        context! { file => file_context(&file) },
    ))
}

#[poem::handler]
pub async fn delete(req: &Request, Path(id): Path<String>, body: Body) -> poem::Result<Response> {
    let (core, me, _) = SignedIn::post(req, body).await?;
    let id = page::parse_id(&me, &id, "file")?;
    files::delete(core, &me.session.user, id, &meta(req))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(page::redirect("/app/files?deleted=1"))
}
