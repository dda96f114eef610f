//! Sharing several files at once: the files list's "Share selected" opens a form for the files
//! ticked, which makes one share of them all (a bundle) per recipient.

use coffer_core::Core;
use coffer_core::ServiceError;
use coffer_core::services::files;
use coffer_core::services::shares::{self, ShareRequest};
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::{Body, Request, Response};
use secrecy::SecretString;

use super::account::sentence;
use super::files::{file_context, fresh_share, share_form};
use super::page::{self, Fields};
use super::session::SignedIn;
use super::{INVALID, core};
use crate::auth::meta;

/// The files named by the form's `file` fields, in order, each once; a malformed id is none.
fn chosen(fields: &Fields) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for id in fields.all("file") {
        if let Ok(id) = uuid::Uuid::parse_str(&id)
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    ids
}

/// The bundle's form for `ids`, with the user's input and an error when it came back.
async fn form_page(
    core: &Core,
    me: &SignedIn,
    ids: &[uuid::Uuid],
    status: StatusCode,
    request: &ShareRequest,
    error: Option<&str>,
) -> poem::Result<Response> {
    let mut listed: Vec<Value> = Vec::with_capacity(ids.len());
    for id in ids.iter().take(shares::MOST_FILES) {
        let file = files::get(core, &me.session.user, *id)
            .await
            .map_err(|e| page::service_error(Some(me), e))?;
        listed.push(file_context(&file));
    }
    Ok(page::view(
        Some(me),
        status,
        "app/bundle.html",
        context! {
            files => listed,
            share => share_form(core, request),
            error => error,
        },
    ))
}

/// `GET /app/shares/new?file=…&file=…`: the form that shares the files ticked in the list.
#[poem::handler]
pub async fn new(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let ids = chosen(&Fields::query(req));
    if ids.is_empty() {
        return Ok(page::redirect("/app/files"));
    }
    let fresh = fresh_share(core, &me).await?;
    form_page(core, &me, &ids, StatusCode::OK, &fresh, None).await
}

/// `POST /app/shares`: one share of every file chosen, per recipient; with no recipient, one
/// link shown once on the page that answers.
#[poem::handler]
pub async fn create(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let ids = chosen(&fields);
    let Some(first) = ids.first().copied() else {
        return Ok(page::redirect("/app/files"));
    };
    let (kept, error) = super::shares::request_of(&fields);
    if let Some(text) = error {
        return form_page(core, &me, &ids, INVALID, &kept, Some(&text)).await;
    }
    let mut request = kept.clone();
    request.password = fields
        .get("password")
        .filter(|p| !p.is_empty())
        .map(|p| SecretString::from(p.to_owned()));
    match shares::create(core, &me.session.user, &ids, request, &meta(req)).await {
        Ok(created) => match created.iter().find_map(|s| s.url.clone()) {
            // The link's token exists nowhere else: this page is the only time it is shown.
            Some(url) => Ok(page::view(
                Some(&me),
                StatusCode::CREATED,
                "app/link.html",
                context! { url => url, file_id => first.to_string() },
            )),
            None => Ok(page::redirect(&format!("/app/files/{first}"))),
        },
        Err(ServiceError::Invalid(detail)) => {
            let text = sentence(&detail);
            form_page(core, &me, &ids, INVALID, &kept, Some(&text)).await
        }
        Err(ServiceError::Conflict(detail)) => {
            let text = sentence(&detail);
            form_page(core, &me, &ids, StatusCode::CONFLICT, &kept, Some(&text)).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}
