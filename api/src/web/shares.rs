//! Sharing a file from its page; changing, re-sending and revoking a share.

use coffer_core::ServiceError;
use coffer_core::services::shares::{self, ShareRequest};
use coffer_core::text::t;
use coffer_core::types::FileStatus;
use minijinja::context;
use poem::http::StatusCode;
use poem::web::Path;
use poem::{Body, Request, Response};
use secrecy::SecretString;

use super::INVALID;
use super::account::sentence;
use super::files::{details_page, expiry_choices, share_context};
use super::page::{self, Fields};
use super::session::SignedIn;
use crate::auth::meta;

/// Field `name` as a whole number; `error` is the message id of the refusal.
fn number(fields: &Fields, name: &str, error: &str) -> Result<Option<i64>, String> {
    fields
        .given(name)
        .map(|text| text.parse().map_err(|_| t(error)))
        .transpose()
}

/// The expiry (hours from now) and download limit of a share form, or the message to show.
fn expiry_and_limit(fields: &Fields) -> Result<(Option<i64>, Option<i64>), String> {
    Ok((
        number(fields, "expires_in_hours", "share-error-expiry")?,
        number(fields, "max_downloads", "share-error-download-limit")?,
    ))
}

/// The share a share form asks for, its password left out (kept apart, never shown again),
/// and the message to show when a number is malformed (the numbers are then left out).
pub(super) fn request_of(fields: &Fields) -> (ShareRequest, Option<String>) {
    let (numbers, error) = match expiry_and_limit(fields) {
        Ok(numbers) => (numbers, None),
        Err(text) => ((None, None), Some(text)),
    };
    let request = ShareRequest {
        recipients: coffer_core::services::shares::split_recipients(&fields.all("recipients")),
        message: fields.given("message").map(str::to_owned),
        verify_recipient: fields.given("verify_recipient").map(|_| true),
        // An unticked box sends nothing: the form says it showed the box.
        receipts: fields
            .given("receipts_shown")
            .map(|_| fields.given("receipts").is_some()),
        expires_in_hours: numbers.0,
        max_downloads: numbers.1,
        ..ShareRequest::default()
    };
    (request, error)
}

/// `POST /app/files/{id}/shares`: one link per recipient, emailed once the file is ready; with
/// no recipient, one link shown once on the page that answers.
#[poem::handler]
pub async fn create(req: &Request, Path(id): Path<String>, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let file_id = page::parse_id(&me, &id, "file")?;
    let (kept, error) = request_of(&fields);
    if let Some(text) = error {
        return details_page(core, &me, file_id, INVALID, &kept, Some(&text)).await;
    }
    let mut request = kept.clone();
    request.password = fields
        .get("password")
        .filter(|p| !p.is_empty())
        .map(|p| SecretString::from(p.to_owned()));
    match shares::create(core, &me.session.user, &[file_id], request, &meta(req)).await {
        Ok(created) => match created.iter().find_map(|s| s.url.clone()) {
            // The link's token exists nowhere else: this page is the only time it is shown.
            Some(url) => Ok(page::view(
                Some(&me),
                StatusCode::CREATED,
                "app/link.html",
                context! { url => url, file_id => file_id.to_string() },
            )),
            None => Ok(page::redirect(&format!("/app/files/{file_id}"))),
        },
        Err(ServiceError::Invalid(detail)) => {
            let text = sentence(&detail);
            details_page(core, &me, file_id, INVALID, &kept, Some(&text)).await
        }
        Err(ServiceError::Conflict(detail)) => {
            let text = sentence(&detail);
            details_page(core, &me, file_id, StatusCode::CONFLICT, &kept, Some(&text)).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

/// `POST /app/shares/{id}/revoke`: the link stops working at once; back to the file's page.
#[poem::handler]
pub async fn revoke(req: &Request, Path(id): Path<String>, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let share_id = page::parse_id(&me, &id, "share")?;
    shares::revoke(core, &me.session.user, share_id, &meta(req))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    // Only a well-formed id goes into the address: the form cannot redirect elsewhere.
    let back = fields
        .given("file")
        .and_then(|f| uuid::Uuid::parse_str(f).ok())
        .map_or_else(|| "/app/files".to_owned(), |f| format!("/app/files/{f}"));
    Ok(page::redirect(&back))
}

/// The edit page of a share, with `error` and `status` when a change came back refused.
async fn edit_page(
    core: &coffer_core::Core,
    me: &SignedIn,
    share_id: uuid::Uuid,
    status: StatusCode,
    error: Option<&str>,
) -> poem::Result<Response> {
    let fail = |e| page::service_error(Some(me), e);
    let share = shares::get(core, &me.session.user, share_id)
        .await
        .map_err(fail)?;
    // The owner's newest files the link does not open yet, to add to it.
    let (newest, _) = coffer_core::services::files::list(core, &me.session.user, None, 50)
        .await
        .map_err(fail)?;
    let addable: Vec<_> = newest
        .iter()
        .filter(|f| {
            !matches!(f.status, FileStatus::Rejected | FileStatus::Deleted)
                && !share.files.iter().any(|s| s.file_id == f.id)
        })
        .map(|f| context! { id => f.id.to_string(), name => &f.name })
        .collect();
    Ok(page::view(
        Some(me),
        status,
        "app/share_edit.html",
        context! {
            share => share_context(&share),
            addable => addable,
            file_id => share.file_id.to_string(),
            expiry => expiry_choices(core, None),
            verify_required => core.config.require_recipient_verification,
            error => error,
        },
    ))
}

/// `GET /app/shares/{id}/edit`: change a share's expiry, download limit, password or whether
/// its recipient must verify.
#[poem::handler]
pub async fn edit_form(req: &Request, Path(id): Path<String>) -> poem::Result<Response> {
    let core = super::core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let share_id = page::parse_id(&me, &id, "share")?;
    edit_page(core, &me, share_id, StatusCode::OK, None).await
}

/// `POST /app/shares/{id}/edit`: the form's values; what differs from the share is changed
/// (and audited), then back to the file's page.
#[poem::handler]
pub async fn edit(req: &Request, Path(id): Path<String>, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let share_id = page::parse_id(&me, &id, "share")?;
    let (hours, max) = match expiry_and_limit(&fields) {
        Ok(numbers) => numbers,
        Err(text) => return edit_page(core, &me, share_id, INVALID, Some(&text)).await,
    };
    let password = if fields.given("remove_password").is_some() {
        Some(None)
    } else {
        fields
            .given("password")
            .map(|p| Some(SecretString::from(p.to_owned())))
    };
    let change = shares::ShareEdit {
        expires_in_hours: hours,
        // An empty field is no limit.
        max_downloads: Some(max),
        password,
        // An unticked box sends nothing: the form says it showed the box.
        verify_recipient: fields
            .given("verify_shown")
            .map(|_| fields.given("verify_recipient").is_some()),
        receipts: fields
            .given("receipts_shown")
            .map(|_| fields.given("receipts").is_some()),
        add_files: fields
            .all("add_file")
            .iter()
            .filter_map(|id| uuid::Uuid::parse_str(id).ok())
            .collect(),
        ..shares::ShareEdit::default()
    };
    match shares::edit(core, &me.session.user, share_id, change, &meta(req)).await {
        Ok(share) => Ok(page::redirect(&format!("/app/files/{}", share.file_id))),
        Err(ServiceError::Invalid(detail)) => {
            edit_page(core, &me, share_id, INVALID, Some(&sentence(&detail))).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

/// `POST /app/shares/{id}/resend`: a fresh link to the recipient, the old one dead; back to
/// the file's page.
#[poem::handler]
pub async fn resend(req: &Request, Path(id): Path<String>, body: Body) -> poem::Result<Response> {
    let (core, me, _) = SignedIn::post(req, body).await?;
    let share_id = page::parse_id(&me, &id, "share")?;
    let share = shares::resend(core, &me.session.user, share_id, &meta(req))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(page::redirect(&format!("/app/files/{}", share.file_id)))
}
