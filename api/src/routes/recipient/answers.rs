//! What each recipient route answers, as OpenAPI documents it.

use poem::Body;
use poem_openapi::ApiResponse;
use poem_openapi::payload::{Binary, Html, Json};

use crate::problem::Problem;

#[derive(ApiResponse)]
pub(super) enum PageResponse {
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
pub(super) enum DownloadResponse {
    /// The file, or every file of a bundle as one ZIP (`application/zip`, streamed while it is
    /// written: no `Content-Length`, no `ETag`, `Accept-Ranges: none`).
    #[oai(status = 200)]
    File(
        Binary<Body>,
        #[oai(header = "Content-Type")] String,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Content-Length")] Option<u64>,
        #[oai(header = "Accept-Ranges")] String,
        #[oai(header = "ETag")] Option<String>,
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

#[derive(ApiResponse)]
pub(super) enum VerifyResponse {
    /// A code is on its way to the recipient: the page that asks for it.
    #[oai(status = 200)]
    CodeSent(Html<String>),
    /// Verified (the cookie holds this browser's verified session of the link), or the link
    /// asks for no verification: back to the link's page.
    #[oai(status = 303)]
    ToPage(
        #[oai(header = "Location")] String,
        #[oai(header = "Set-Cookie")] Option<String>,
    ),
    /// A malformed form (poem's form extractor answers before the handler runs).
    #[oai(status = 400, content_type = "application/problem+json")]
    #[allow(dead_code)] // built by the error handler, documented here
    BadRequest(Json<Problem>),
    /// A wrong code, or none waiting: the page again, with the reason.
    #[oai(status = 403)]
    Forbidden(Html<String>),
    #[oai(status = 404)]
    NotFound(Html<String>),
    /// A form that is not `application/x-www-form-urlencoded`.
    #[oai(status = 415, content_type = "application/problem+json")]
    #[allow(dead_code)] // built by the error handler, documented here
    UnsupportedMediaType(Json<Problem>),
    /// Expired or revoked.
    #[oai(status = 410)]
    Gone(Html<String>),
    /// Too many codes asked for or tried.
    #[oai(status = 429)]
    TooManyRequests(Html<String>, #[oai(header = "Retry-After")] u64),
    #[oai(status = 500)]
    Error(Html<String>),
    #[oai(status = 503)]
    Unavailable(Html<String>, #[oai(header = "Retry-After")] u64),
}

impl From<PageResponse> for VerifyResponse {
    fn from(page: PageResponse) -> Self {
        match page {
            // Verification never renders the plain page, and a file not yet ready is no
            // reason to refuse it.
            PageResponse::Page(html) | PageResponse::NotReady(html) | PageResponse::Error(html) => {
                Self::Error(html)
            }
            PageResponse::Forbidden(html) => Self::Forbidden(html),
            PageResponse::NotFound(html) => Self::NotFound(html),
            PageResponse::Gone(html) => Self::Gone(html),
            PageResponse::TooManyRequests(html, wait) => Self::TooManyRequests(html, wait),
            PageResponse::Unavailable(html, wait) => Self::Unavailable(html, wait),
        }
    }
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
