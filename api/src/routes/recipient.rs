//! What a recipient's browser sees behind a share link: a server-rendered page that works
//! without JavaScript, and the download. Everything shown is escaped by the templates.

use coffer_core::Core;
use coffer_core::services::recipients::{self, Landing, Refusal};
use coffer_core::text::{self, Arg, t, t_with};
use minijinja::context;
use poem::{Body, Request};
use poem_openapi::param::{Header, Path};
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
        #[oai(header = "Accept-Ranges")] String,
        #[oai(header = "ETag")] String,
    ),
    /// A byte range (`Range`, with `If-Range` naming the `ETag` to resume).
    #[oai(status = 206)]
    Partial(
        Binary<Body>,
        #[oai(header = "Content-Type")] String,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Content-Length")] u64,
        #[oai(header = "Content-Range")] String,
        #[oai(header = "ETag")] String,
    ),
    /// A malformed form (poem's form extractor answers before the handler runs).
    #[oai(status = 400, content_type = "application/problem+json")]
    #[allow(dead_code)] // built by the error handler, documented here
    BadRequest(Json<Problem>),
    #[oai(status = 403)]
    Forbidden(Html<String>),
    #[oai(status = 404)]
    NotFound(Html<String>),
    /// The file is not ready yet, or every download the link allows is under way (one may
    /// still stop short and give its place back).
    #[oai(status = 409)]
    NotReady(Html<String>),
    /// The range lies beyond the file's end.
    #[oai(status = 416)]
    RangeNotSatisfiable(Html<String>, #[oai(header = "Content-Range")] String),
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
        Refusal::InProgress => PageResponse::NotReady(message(
            &t("recipient-in-progress-heading"),
            &t("recipient-in-progress-text"),
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

/// `Range` and `If-Range` as the request sent them.
type RangeHeaders = (Header<Option<String>>, Header<Option<String>>);

async fn deliver(
    req: &Request,
    token: &str,
    password: Option<String>,
    (range, if_range): RangeHeaders,
) -> DownloadResponse {
    let Ok(core) = core(req) else {
        return broken().into();
    };
    let password = password.filter(|p| !p.is_empty()).map(SecretString::from);
    let opened = match recipients::open(core, token, password, &meta(req)).await {
        Ok(opened) => opened,
        Err(refusal) => return refusal_page(core, refusal, Some(token)).await.into(),
    };
    let file = opened.file();
    let (range, etag) = match crate::range::choose(&file, range.0.as_deref(), if_range.0.as_deref())
    {
        Ok(crate::range::Chosen { range, etag }) => (range, etag),
        Err(size) => {
            return DownloadResponse::RangeNotSatisfiable(
                message(&t("recipient-range-heading"), &t("recipient-range-text")),
                format!("bytes */{size}"),
            );
        }
    };
    let delivered =
        recipients::deliver(core, opened, range, crate::auth::delivery(req), &meta(req)).await;
    let content = match delivered {
        Ok(content) => content,
        Err(refusal) => return refusal_page(core, refusal, Some(token)).await.into(),
    };
    let body = Binary(Body::from_bytes_stream(content.body));
    // Always a download, never something a browser renders.
    let kind = "application/octet-stream".to_owned();
    let disposition = super::files::content_disposition(&content.file.name);
    match content.range {
        None => DownloadResponse::File(
            body,
            kind,
            disposition,
            content.file.size,
            "bytes".to_owned(),
            etag,
        ),
        Some((start, end)) => DownloadResponse::Partial(
            body,
            kind,
            disposition,
            end - start + 1,
            crate::range::content_range(start, end, content.file.size),
            etag,
        ),
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

    /// Download through a share link without a password (supports `Range`, and `If-Range` with
    /// the `ETag` to resume)
    #[oai(path = "/s/:token/download", method = "get")]
    async fn download(
        &self,
        req: &Request,
        token: Path<String>,
        #[oai(name = "Range")] range: Header<Option<String>>,
        #[oai(name = "If-Range")] if_range: Header<Option<String>>,
    ) -> DownloadResponse {
        deliver(req, &token.0, None, (range, if_range)).await
    }

    /// Download through a share link (the page's form, with the password if there is one)
    #[oai(path = "/s/:token/download", method = "post")]
    async fn download_with_form(
        &self,
        req: &Request,
        token: Path<String>,
        #[oai(name = "Range")] range: Header<Option<String>>,
        #[oai(name = "If-Range")] if_range: Header<Option<String>>,
        form: Form<PasswordForm>,
    ) -> DownloadResponse {
        deliver(req, &token.0, form.0.password, (range, if_range)).await
    }
}
