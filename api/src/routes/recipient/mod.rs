//! What a recipient's browser sees behind a share link: a server-rendered page that works
//! without JavaScript, the verification of the recipient's address, and the download.
//! Everything shown is escaped by the templates.

mod answers;
mod pages;

use coffer_core::services::recipients::{self, Delivered, Refusal, Which};
use coffer_core::text::t;
use poem::{Body, Request};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::{Binary, Form};
use poem_openapi::{Object, OpenApi};
use secrecy::SecretString;
use serde::Deserialize;

use super::Tag;
use crate::auth::{core, meta};
use answers::{DownloadResponse, PageResponse, VerifyResponse};
use pages::{Retry, broken, landing, message, refusal_page, session, session_cookie};

pub struct RecipientApi;

#[derive(Object, Deserialize)]
struct PasswordForm {
    /// The share's password, when it has one.
    password: Option<String>,
}

#[derive(Object, Deserialize)]
struct VerifyForm {
    /// The six-digit code from the email; left out, a new code is emailed instead.
    code: Option<String>,
}

/// `Range` and `If-Range` as the request sent them.
type RangeHeaders = (Header<Option<String>>, Header<Option<String>>);

/// A ZIP is served whole.
fn no_range() -> RangeHeaders {
    (Header(None), Header(None))
}

async fn deliver(
    req: &Request,
    token: &str,
    which: Which,
    password: Option<String>,
    (range, if_range): RangeHeaders,
) -> DownloadResponse {
    let Ok(core) = core(req) else {
        return broken().into();
    };
    let password = password.filter(|p| !p.is_empty()).map(SecretString::from);
    let retry = Retry::of(req, token);
    let meta = meta(req);
    let opened = match recipients::open(core, token, which, password, retry.session, &meta).await {
        Ok(opened) => opened,
        Err(refusal) => return refusal_page(core, refusal, Some(retry)).await.into(),
    };
    let (range, etag) = match opened.file() {
        None => (None, None),
        Some(file) => {
            match crate::range::choose(&file, range.0.as_deref(), if_range.0.as_deref()) {
                Ok(crate::range::Chosen { range, etag }) => (range, Some(etag)),
                Err(size) => {
                    return DownloadResponse::RangeNotSatisfiable(
                        message(&t("recipient-range-heading"), &t("recipient-range-text")),
                        format!("bytes */{size}"),
                    );
                }
            }
        }
    };
    let delivered =
        recipients::deliver(core, opened, range, crate::auth::delivery(req), &meta).await;
    let content = match delivered {
        Ok(Delivered::File(content)) => content,
        Ok(Delivered::Zip { body }) => {
            let name = format!("files-{}.zip", chrono::Utc::now().format("%Y-%m-%d"));
            return DownloadResponse::File(
                Binary(Body::from_bytes_stream(body)),
                "application/zip".to_owned(),
                super::files::content_disposition(&name),
                None,
                "none".to_owned(),
                None,
            );
        }
        Err(refusal) => return refusal_page(core, refusal, Some(retry)).await.into(),
    };
    let body = Binary(Body::from_bytes_stream(content.body));
    // Always a download, never something a browser renders.
    let kind = "application/octet-stream".to_owned();
    let disposition = super::files::content_disposition(&content.file.name);
    let etag = etag.unwrap_or_default();
    match content.range {
        None => DownloadResponse::File(
            body,
            kind,
            disposition,
            Some(content.file.size),
            "bytes".to_owned(),
            Some(etag),
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

/// A file of a share, named in its path: a file id, which a token's link may not open.
fn file_of(id: &str) -> Which {
    uuid::Uuid::parse_str(id).map_or(Which::File(uuid::Uuid::nil()), Which::File)
}

#[OpenApi(tag = "Tag::Recipients")]
impl RecipientApi {
    /// The download page behind a share link
    #[oai(path = "/s/:token", method = "get")]
    async fn page(&self, req: &Request, token: Path<String>) -> PageResponse {
        let Ok(core) = core(req) else {
            return broken();
        };
        match recipients::view(core, &token.0, session(req), &meta(req)).await {
            Ok(page) => PageResponse::Page(landing(&token.0, &page, None)),
            Err(refusal) => refusal_page(core, refusal, None).await,
        }
    }

    /// Prove the recipient's address (the landing page's forms)
    ///
    /// Without `code` (or with an empty one), emails a six-digit code to the address the link
    /// was sent to — an earlier code stops working — and shows the page that asks for it. With
    /// `code`, checks it: right and in time, the code is used up and the answer sets a cookie
    /// that verifies this browser for the link for `COFFER_RECIPIENT_VERIFICATION_TTL` (never
    /// past the link's expiry), then goes back to the link's page. Codes are sent and tried at
    /// a limited rate (429). Only a POST sends a code: mail scanners open links with GET.
    #[oai(path = "/s/:token/verify", method = "post")]
    async fn verify(
        &self,
        req: &Request,
        token: Path<String>,
        form: Form<VerifyForm>,
    ) -> VerifyResponse {
        let Ok(core) = core(req) else {
            return broken().into();
        };
        let meta = meta(req);
        // Reached only once the token resolved, so it is a token's shape and nothing else.
        let to_page = format!("/s/{}", token.0);
        let answer = match form.0.code.filter(|c| !c.trim().is_empty()) {
            None => recipients::send_code(core, &token.0, &meta)
                .await
                .map(|sent| match sent {
                    Some(page) => VerifyResponse::CodeSent(landing(&token.0, &page, None)),
                    None => VerifyResponse::ToPage(to_page, None),
                }),
            Some(code) => recipients::check_code(core, &token.0, &code, &meta)
                .await
                .map(|verified| {
                    let cookie = verified.map(|v| {
                        session_cookie(core, &token.0, v.secret.expose(), v.lasts.as_secs())
                    });
                    VerifyResponse::ToPage(to_page, cookie)
                }),
        };
        match answer {
            Ok(answer) => answer,
            Err(Refusal::RateLimited(wait)) => VerifyResponse::TooManyRequests(
                message(
                    &t("error-rate-limited-heading"),
                    &t("recipient-code-rate-limited-text"),
                ),
                wait.as_secs().max(1),
            ),
            Err(refusal) => refusal_page(core, refusal, Some(Retry::of(req, &token.0)))
                .await
                .into(),
        }
    }

    /// Download through a share link without a password: its file (supports `Range`, and
    /// `If-Range` with the `ETag` to resume), or all the files of a bundle as one ZIP
    #[oai(path = "/s/:token/download", method = "get")]
    async fn download(
        &self,
        req: &Request,
        token: Path<String>,
        #[oai(name = "Range")] range: Header<Option<String>>,
        #[oai(name = "If-Range")] if_range: Header<Option<String>>,
    ) -> DownloadResponse {
        deliver(req, &token.0, Which::Share, None, (range, if_range)).await
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
        let headers = (range, if_range);
        deliver(req, &token.0, Which::Share, form.0.password, headers).await
    }

    /// Download one file of a share without a password (supports `Range`, and `If-Range` with
    /// the `ETag` to resume); each file counts its own downloads against `max_downloads`
    #[oai(path = "/s/:token/files/:file_id", method = "get")]
    async fn download_file(
        &self,
        req: &Request,
        token: Path<String>,
        file_id: Path<String>,
        #[oai(name = "Range")] range: Header<Option<String>>,
        #[oai(name = "If-Range")] if_range: Header<Option<String>>,
    ) -> DownloadResponse {
        let which = file_of(&file_id.0);
        deliver(req, &token.0, which, None, (range, if_range)).await
    }

    /// Download one file of a share (the page's form, with the password if there is one)
    #[oai(path = "/s/:token/files/:file_id", method = "post")]
    async fn download_file_with_form(
        &self,
        req: &Request,
        token: Path<String>,
        file_id: Path<String>,
        #[oai(name = "Range")] range: Header<Option<String>>,
        #[oai(name = "If-Range")] if_range: Header<Option<String>>,
        form: Form<PasswordForm>,
    ) -> DownloadResponse {
        let (which, headers) = (file_of(&file_id.0), (range, if_range));
        deliver(req, &token.0, which, form.0.password, headers).await
    }

    /// "Download all": every file of a share as one ZIP, without a password
    ///
    /// Streamed while it is written (no `Content-Length`; not resumable: a cut download starts
    /// again). Entries are stored, ZIP64, named safely for every unzip tool and uniquely. It
    /// takes one download of each file, all or none.
    #[oai(path = "/s/:token/zip", method = "get")]
    async fn download_all(&self, req: &Request, token: Path<String>) -> DownloadResponse {
        deliver(req, &token.0, Which::All, None, no_range()).await
    }

    /// "Download all" (the page's form, with the password if there is one)
    #[oai(path = "/s/:token/zip", method = "post")]
    async fn download_all_with_form(
        &self,
        req: &Request,
        token: Path<String>,
        form: Form<PasswordForm>,
    ) -> DownloadResponse {
        deliver(req, &token.0, Which::All, form.0.password, no_range()).await
    }
}
