//! What a recipient's browser sees behind a share link: a server-rendered page that works
//! without JavaScript, and the download. Everything shown is escaped by the templates.

use coffer_core::Core;
use coffer_core::services::recipients::{self, Landing, Refusal};
use coffer_core::text::{self, Arg, t, t_with};
use minijinja::context;
use poem::{Body, Request};
use poem_openapi::param::Path;
use poem_openapi::payload::{Binary, Form, Html, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;
use serde::Deserialize;

use super::Tag;
use crate::auth::{core, meta};
use crate::problem::Problem;

pub struct RecipientApi;

#[derive(Object, Deserialize)]
struct PasswordForm {
    /// The share's password, when it has one.
    password: Option<String>,
}

fn render(name: &str, ctx: minijinja::Value) -> Html<String> {
    Html(crate::templates::render(name, ctx))
}

fn message(heading: &str, text: &str) -> Html<String> {
    render(
        "message.html",
        context! { heading => heading, text => text },
    )
}

fn landing(token: &str, page: &Landing, error: Option<&str>) -> Html<String> {
    render(
        "landing.html",
        context! {
            token => token,
            sender => &page.sender,
            file_name => &page.file_name,
            size => text::size(page.size),
            expires => text::english().long_date(page.expires_at),
            downloads_left => page.downloads_left,
            password => page.password,
            ready => page.ready,
            error => error,
            message => &page.message,
        },
    )
}

#[derive(ApiResponse)]
enum PageResponse {
    #[oai(status = 200)]
    Page(Html<String>),
    /// Wrong or missing password: the page again, with the reason.
    #[oai(status = 403)]
    Forbidden(Html<String>),
    /// No such link.
    #[oai(status = 404)]
    NotFound(Html<String>),
    /// The file is not ready yet.
    #[oai(status = 409)]
    NotReady(Html<String>),
    /// Expired, revoked or used up.
    #[oai(status = 410)]
    Gone(Html<String>),
    #[oai(status = 429)]
    TooManyRequests(Html<String>, #[oai(header = "Retry-After")] u64),
    #[oai(status = 500)]
    Error(Html<String>),
    #[oai(status = 503)]
    Unavailable(Html<String>, #[oai(header = "Retry-After")] u64),
}

#[derive(ApiResponse)]
enum DownloadResponse {
    #[oai(status = 200)]
    File(
        Binary<Body>,
        #[oai(header = "Content-Type")] String,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Content-Length")] u64,
    ),
    /// A malformed form (poem's form extractor answers before the handler runs).
    #[oai(status = 400, content_type = "application/problem+json")]
    #[allow(dead_code)] // built by the error handler, documented here
    BadRequest(Json<Problem>),
    #[oai(status = 403)]
    Forbidden(Html<String>),
    #[oai(status = 404)]
    NotFound(Html<String>),
    #[oai(status = 409)]
    NotReady(Html<String>),
    /// A form that is not `application/x-www-form-urlencoded`.
    #[oai(status = 415, content_type = "application/problem+json")]
    #[allow(dead_code)] // built by the error handler, documented here
    UnsupportedMediaType(Json<Problem>),
    #[oai(status = 410)]
    Gone(Html<String>),
    #[oai(status = 429)]
    TooManyRequests(Html<String>, #[oai(header = "Retry-After")] u64),
    #[oai(status = 500)]
    Error(Html<String>),
    #[oai(status = 503)]
    Unavailable(Html<String>, #[oai(header = "Retry-After")] u64),
}

impl From<PageResponse> for DownloadResponse {
    fn from(page: PageResponse) -> Self {
        match page {
            // A successful download never renders the plain page.
            PageResponse::Page(html) | PageResponse::Error(html) => Self::Error(html),
            PageResponse::Forbidden(html) => Self::Forbidden(html),
            PageResponse::NotFound(html) => Self::NotFound(html),
            PageResponse::NotReady(html) => Self::NotReady(html),
            PageResponse::Gone(html) => Self::Gone(html),
            PageResponse::TooManyRequests(html, wait) => Self::TooManyRequests(html, wait),
            PageResponse::Unavailable(html, wait) => Self::Unavailable(html, wait),
        }
    }
}

fn broken() -> PageResponse {
    PageResponse::Error(message(
        &t("error-internal-heading"),
        &t("recipient-broken-text"),
    ))
}

/// The page for a refusal. `retry` re-renders the landing page for password problems.
async fn refusal_page(core: &Core, refusal: Refusal, retry: Option<&str>) -> PageResponse {
    match refusal {
        Refusal::Unknown => PageResponse::NotFound(message(
            &t("recipient-unknown-heading"),
            &t("recipient-unknown-text"),
        )),
        Refusal::Gone(reason) => PageResponse::Gone(message(
            &t("recipient-gone-heading"),
            // A selector takes words: `used up` is `used-up`.
            &t_with(
                "recipient-gone-text",
                [("reason", Arg::from(reason.replace(' ', "-")))],
            ),
        )),
        Refusal::NotReady => PageResponse::NotReady(message(
            &t("recipient-not-ready-heading"),
            &t("recipient-not-ready-text"),
        )),
        Refusal::RateLimited(wait) => PageResponse::TooManyRequests(
            message(
                &t("error-rate-limited-heading"),
                &t("recipient-rate-limited-text"),
            ),
            wait.as_secs().max(1),
        ),
        Refusal::PasswordRequired | Refusal::WrongPassword => {
            let text = if matches!(refusal, Refusal::WrongPassword) {
                t("recipient-wrong-password")
            } else {
                t("recipient-password-required")
            };
            let heading = t("recipient-password-heading");
            // Show the page again, with the reason, without counting another view.
            match retry {
                Some(token) => match recipients::peek(core, token).await {
                    Some(page) => PageResponse::Forbidden(landing(token, &page, Some(&text))),
                    None => PageResponse::Forbidden(message(&heading, &text)),
                },
                None => PageResponse::Forbidden(message(&heading, &text)),
            }
        }
        Refusal::Error(coffer_core::ServiceError::Unavailable(err)) => {
            let retry_after = crate::incident::unavailable(err.as_ref());
            PageResponse::Unavailable(
                message(&t("error-busy-heading"), &t("error-unavailable-text")),
                retry_after,
            )
        }
        Refusal::Error(err) => {
            let id = crate::incident::internal(&err);
            PageResponse::Error(message(
                &t("error-internal-heading"),
                &t_with(
                    "recipient-internal-text",
                    [("id", Arg::from(id.to_string()))],
                ),
            ))
        }
    }
}

async fn deliver(req: &Request, token: &str, password: Option<String>) -> DownloadResponse {
    let Ok(core) = core(req) else {
        return broken().into();
    };
    match recipients::download(
        core,
        token,
        password.filter(|p| !p.is_empty()).map(SecretString::from),
        crate::auth::delivery(req),
        &meta(req),
    )
    .await
    {
        Ok(content) => DownloadResponse::File(
            Binary(Body::from_bytes_stream(content.body)),
            // Always a download, never something a browser renders.
            "application/octet-stream".to_owned(),
            super::files::content_disposition(&content.file.name),
            content.file.size,
        ),
        Err(refusal) => refusal_page(core, refusal, Some(token)).await.into(),
    }
}

#[OpenApi(tag = "Tag::Recipients")]
impl RecipientApi {
    /// The download page behind a share link
    #[oai(path = "/s/:token", method = "get")]
    async fn page(&self, req: &Request, token: Path<String>) -> PageResponse {
        let Ok(core) = core(req) else {
            return broken();
        };
        match recipients::view(core, &token.0, &meta(req)).await {
            Ok(page) => PageResponse::Page(landing(&token.0, &page, None)),
            Err(refusal) => refusal_page(core, refusal, None).await,
        }
    }

    /// Download through a share link without a password
    #[oai(path = "/s/:token/download", method = "get")]
    async fn download(&self, req: &Request, token: Path<String>) -> DownloadResponse {
        deliver(req, &token.0, None).await
    }

    /// Download through a share link (the page's form, with the password if there is one)
    #[oai(path = "/s/:token/download", method = "post")]
    async fn download_with_form(
        &self,
        req: &Request,
        token: Path<String>,
        form: Form<PasswordForm>,
    ) -> DownloadResponse {
        deliver(req, &token.0, form.0.password).await
    }
}
