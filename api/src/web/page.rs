//! The answers pages give: HTML with the right status (and script policy), 303 redirects,
//! error pages in the style of the recipient pages, and form bodies read as text pairs.

use chrono::{DateTime, Utc};
use coffer_core::ServiceError;
use coffer_core::text::{self, Arg, t, t_with};
use minijinja::{Value, context};
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Body, Request, Response};

use super::session::SignedIn;
use crate::templates::{RENDER_FAILED, try_render};

/// An HTML page.
pub fn html(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// Lets a page load our own script (and the script send the upload): the page policy plus
/// `script-src 'self'; connect-src 'self'`, still without any inline script.
pub fn with_script(mut response: Response) -> Response {
    let policy = format!("{}; script-src 'self'; connect-src 'self'", crate::PAGE_CSP);
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert("Content-Security-Policy", value);
    }
    response
}

/// 303 See Other: where a browser goes after a successful form post.
pub fn redirect(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .finish()
}

pub fn add_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// An answer that ends the request here, as the error of a handler.
pub fn fail(response: Response) -> poem::Error {
    poem::Error::from_response(response)
}

/// Renders an app page; `me` fills in the navigation and the sign-out form.
pub fn view(me: Option<&SignedIn>, status: StatusCode, name: &str, ctx: Value) -> Response {
    let ctx = match me {
        Some(me) => context! {
            me => context! { email => &me.session.user.email, admin => me.is_admin() },
            csrf => &me.csrf,
            template => name,
            ..ctx
        },
        None => context! { template => name, ..ctx },
    };
    match try_render(name, ctx) {
        Some(page) => html(status, page),
        // Never a page that says one thing with a status that says another.
        None => html(StatusCode::INTERNAL_SERVER_ERROR, RENDER_FAILED.to_owned()),
    }
}

pub fn message(me: Option<&SignedIn>, status: StatusCode, heading: &str, text: &str) -> Response {
    view(
        me,
        status,
        "app/message.html",
        context! { heading => heading, text => text, status => status.as_u16() },
    )
}

/// A form post without a valid CSRF token: nothing was done.
pub fn csrf_refused() -> poem::Error {
    fail(message(
        None,
        StatusCode::FORBIDDEN,
        &t("error-csrf-heading"),
        &t("error-csrf-text"),
    ))
}

pub fn forbidden(me: &SignedIn) -> poem::Error {
    fail(message(
        Some(me),
        StatusCode::FORBIDDEN,
        &t("error-admins-heading"),
        &t("error-admins-text"),
    ))
}

/// The page for a service error that a form does not handle itself.
pub fn service_error(me: Option<&SignedIn>, err: ServiceError) -> poem::Error {
    let (status, heading, text) = match err {
        ServiceError::Invalid(detail) | ServiceError::BadRequest(detail) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            t("error-failed-heading"),
            detail,
        ),
        ServiceError::Unauthorized => return fail(redirect("/app/signin")),
        ServiceError::Forbidden(detail) => {
            (StatusCode::FORBIDDEN, t("error-forbidden-heading"), detail)
        }
        ServiceError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            t("error-not-found-heading"),
            t_with("error-not-found-text", [("what", Arg::from(what))]),
        ),
        ServiceError::Conflict(detail) => (StatusCode::CONFLICT, t("error-failed-heading"), detail),
        ServiceError::TooLarge { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            t("error-too-large-heading"),
            t_with(
                "error-too-large-text",
                [("limit", Arg::from(text::size(limit)))],
            ),
        ),
        ServiceError::FieldsTooLarge(detail) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            t("error-form-too-large-heading"),
            detail,
        ),
        ServiceError::RateLimited { retry_after } => {
            let mut response = message(
                me,
                StatusCode::TOO_MANY_REQUESTS,
                &t("error-rate-limited-heading"),
                &t("error-rate-limited-text"),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            return fail(response);
        }
        ServiceError::LimitReached {
            detail,
            retry_after,
        } => {
            let heading = t("error-limit-heading");
            let mut response = message(me, StatusCode::TOO_MANY_REQUESTS, &heading, &detail);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            return fail(response);
        }
        ServiceError::Integrity => (
            StatusCode::INTERNAL_SERVER_ERROR,
            t("error-integrity-heading"),
            t("error-integrity-text"),
        ),
        ServiceError::Busy { retry_after } => {
            let mut response = message(
                me,
                StatusCode::SERVICE_UNAVAILABLE,
                &t("error-busy-heading"),
                &t("error-busy-text"),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            return fail(response);
        }
        ServiceError::Unavailable(cause) => {
            let retry_after = crate::incident::unavailable(cause.as_ref());
            let mut response = message(
                me,
                StatusCode::SERVICE_UNAVAILABLE,
                &t("error-busy-heading"),
                &t("error-unavailable-text"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return fail(response);
        }
        ServiceError::Internal(cause) => return fail(broken(&format!("{cause:#}"))),
    };
    fail(message(me, status, &heading, &text))
}

/// A 500 page whose cause is logged under an id the user can quote.
pub fn broken(cause: &dyn std::fmt::Display) -> Response {
    let id = crate::incident::internal(cause);
    message(
        None,
        StatusCode::INTERNAL_SERVER_ERROR,
        &t("error-internal-heading"),
        &t_with("error-internal-text", [("id", Arg::from(id.to_string()))]),
    )
}

/// Turns the errors poem raises before a handler runs (no such page, wrong method, a malformed
/// body) into pages.
pub async fn catch_all(err: poem::Error) -> Response {
    let route = err.data::<poem::PathPattern>().cloned();
    let mut response = if err.is_from_response() {
        err.into_response()
    } else {
        match err.status() {
            StatusCode::NOT_FOUND => message(
                None,
                StatusCode::NOT_FOUND,
                &t("error-no-page-heading"),
                &t("error-no-page-text"),
            ),
            StatusCode::METHOD_NOT_ALLOWED => message(
                None,
                StatusCode::METHOD_NOT_ALLOWED,
                &t("error-method-heading"),
                &t("error-method-text"),
            ),
            status if status.is_server_error() => broken(&err),
            status => message(
                None,
                status,
                &t("error-failed-heading"),
                &t("error-unreadable-request-text"),
            ),
        }
    };
    if let Some(route) = route {
        response.set_data(route);
    }
    response
}

/// A form's or a query string's fields, in order (a name may repeat).
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// An `application/x-www-form-urlencoded` body (its size is bounded by the small-body
    /// limit in front of every route but uploads).
    pub async fn read(body: Body) -> poem::Result<Self> {
        let bytes = body.into_vec().await.map_err(|_| {
            fail(message(
                None,
                StatusCode::BAD_REQUEST,
                &t("error-failed-heading"),
                &t("error-unreadable-form-text"),
            ))
        })?;
        Ok(Self::parse(&bytes))
    }

    pub fn query(req: &Request) -> Self {
        Self::parse(req.uri().query().unwrap_or_default().as_bytes())
    }

    fn parse(bytes: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, as sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed; a blank field counts as not given.
    pub fn given(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// A time as pages show it (`5 Dec 2026, 14:30 UTC`).
pub fn when(at: DateTime<Utc>) -> String {
    text::date(at)
}

/// A page's id parameter; malformed ids are "not found", like unknown ones.
pub fn parse_id(me: &SignedIn, raw: &str, what: &'static str) -> poem::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(raw).map_err(|_| service_error(Some(me), ServiceError::NotFound(what)))
}
