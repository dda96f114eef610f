//! The recipient's pages: the landing page (with the password and verification forms), the
//! page of each refusal, and the cookie of a verified browser.

use coffer_core::Core;
use coffer_core::services::recipients::{self, Landing, Refusal, Verification};
use coffer_core::text::{self, Arg, t, t_with};
use minijinja::context;
use poem::Request;
use poem_openapi::payload::Html;

use super::answers::PageResponse;

/// The cookie that holds a browser's verified session of one link (its path is the link's).
const RECIPIENT_COOKIE: &str = "coffer_recipient";

/// The browser's verified session of a link, if it presents one.
pub(super) fn session(req: &Request) -> Option<&str> {
    crate::web::session::cookie(req, RECIPIENT_COOKIE)
}

/// `Set-Cookie` for a verified session of the link of `token`: sent back to that link's pages
/// only, by this browser only (HttpOnly), also when the recipient arrives from a link in their
/// email (`SameSite=Lax`), and `Secure` when Coffer is reached over https.
pub(super) fn session_cookie(core: &Core, token: &str, value: &str, max_age: u64) -> String {
    let secure = if core.config.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{RECIPIENT_COOKIE}={value}; Max-Age={max_age}; Path=/s/{token}; HttpOnly; SameSite=Lax{secure}"
    )
}

/// A page shown again with a reason (a wrong password or code): the link's token, and the
/// verified session the browser presents.
#[derive(Clone, Copy)]
pub(super) struct Retry<'a> {
    pub(super) token: &'a str,
    pub(super) session: Option<&'a str>,
}

impl<'a> Retry<'a> {
    pub(super) fn of(req: &'a Request, token: &'a str) -> Self {
        Self {
            token,
            session: session(req),
        }
    }
}

fn render(name: &str, ctx: minijinja::Value) -> Html<String> {
    Html(crate::templates::render(name, ctx))
}

pub(super) fn message(heading: &str, text: &str) -> Html<String> {
    render(
        "message.html",
        context! { heading => heading, text => text },
    )
}

pub(super) fn landing(token: &str, page: &Landing, error: Option<&str>) -> Html<String> {
    let (verify, verify_to, code_sent) = match &page.verification {
        Verification::NotNeeded | Verification::Verified => ("", None, false),
        Verification::Needed { to: None, .. } => ("unverifiable", None, false),
        Verification::Needed {
            to: Some(to),
            code_sent,
        } => ("needed", Some(to.as_str()), *code_sent),
    };
    let files: Vec<_> = page
        .files
        .iter()
        .map(|f| {
            context! {
                id => f.id.to_string(),
                name => &f.name,
                size => text::size(f.size),
                kind => f.content_type.as_deref().unwrap_or(""),
                downloads_left => f.downloads_left,
                ready => f.ready,
            }
        })
        .collect();
    let title = match page.files.as_slice() {
        [one] => one.name.clone(),
        files => t_with("landing-files-title", [("count", Arg::from(files.len()))]),
    };
    render(
        "landing.html",
        context! {
            token => token,
            sender => &page.sender,
            title => title,
            files => files,
            bundle => page.files.len() > 1,
            size => text::size(page.size()),
            expires => text::english().long_date(page.expires_at),
            password => page.password,
            ready => page.ready(),
            any_ready => page.files.iter().any(|f| f.ready),
            error => error,
            message => &page.message,
            verify => verify,
            verify_to => verify_to,
            code_sent => code_sent,
            code_minutes => recipients::CODE_TTL.as_secs() / 60,
        },
    )
}

pub(super) fn broken() -> PageResponse {
    PageResponse::Error(message(
        &t("error-internal-heading"),
        &t("recipient-broken-text"),
    ))
}

/// The landing page again, without counting a view, with `text` saying why; a page of its
/// own when the link no longer resolves.
async fn retry_page(
    core: &Core,
    retry: Option<Retry<'_>>,
    heading: &str,
    text: &str,
) -> Html<String> {
    match retry {
        Some(Retry { token, session }) => match recipients::peek(core, token, session).await {
            Some(page) => landing(token, &page, Some(text)),
            None => message(heading, text),
        },
        None => message(heading, text),
    }
}

/// The page for a refusal. `retry` re-renders the landing page for password and verification
/// problems.
pub(super) async fn refusal_page(
    core: &Core,
    refusal: Refusal,
    retry: Option<Retry<'_>>,
) -> PageResponse {
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
            PageResponse::Forbidden(retry_page(core, retry, &heading, &text).await)
        }
        Refusal::VerificationRequired | Refusal::WrongCode { .. } => {
            let text = match refusal {
                Refusal::WrongCode { expired: false } => t("recipient-wrong-code"),
                Refusal::WrongCode { expired: true } => t("recipient-no-code"),
                _ => t("recipient-verify-required"),
            };
            let heading = t("landing-verify-heading");
            PageResponse::Forbidden(retry_page(core, retry, &heading, &text).await)
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
