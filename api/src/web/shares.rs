//! Sharing a file from its page, and revoking a share.

use coffer_core::ServiceError;
use coffer_core::services::shares::{self, ShareRequest};
use coffer_core::text::t;
use minijinja::context;
use poem::http::StatusCode;
use poem::web::Path;
use poem::{Body, Request, Response};
use secrecy::SecretString;

use super::INVALID;
use super::account::sentence;
use super::files::details_page;
use super::page::{self, Fields};
use super::session::SignedIn;
use crate::auth::meta;

/// A whole number field, or the message to show.
/// Field `name` as a whole number; `error` is the message id of the refusal.
fn number(fields: &Fields, name: &str, error: &str) -> Result<Option<i64>, String> {
    fields
        .given(name)
        .map(|text| text.parse().map_err(|_| t(error)))
        .transpose()
}

/// `POST /app/files/{id}/shares`: one link per recipient, emailed once the file is ready; with
/// no recipient, one link shown once on the page that answers.
#[poem::handler]
pub async fn create(req: &Request, Path(id): Path<String>, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let file_id = page::parse_id(&me, &id, "file")?;
    let mut request = ShareRequest {
        recipients: coffer_core::services::shares::split_recipients(&fields.all("recipients")),
        message: fields.given("message").map(str::to_owned),
        ..ShareRequest::default()
    };
    let numbers = number(&fields, "expires_in_hours", "share-error-expiry").and_then(|hours| {
        Ok((
            hours,
            number(&fields, "max_downloads", "share-error-download-limit")?,
        ))
    });
    let (hours, max) = match numbers {
        Ok(numbers) => numbers,
        Err(text) => {
            return details_page(core, &me, file_id, INVALID, &request, Some(&text)).await;
        }
    };
    request.expires_in_hours = hours;
    request.max_downloads = max;
    let kept = ShareRequest {
        recipients: request.recipients.clone(),
        expires_in_hours: request.expires_in_hours,
        max_downloads: request.max_downloads,
        message: request.message.clone(),
        ..ShareRequest::default()
    };
    request.password = fields
        .get("password")
        .filter(|p| !p.is_empty())
        .map(|p| SecretString::from(p.to_owned()));
    match shares::create(core, &me.session.user, file_id, request, &meta(req)).await {
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
