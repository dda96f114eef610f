//! The second factor in the web app: set it up (a QR code Coffer draws, then a first code),
//! see the recovery codes once, turn it off with the password. The same `mfa` service as the
//! API.

use coffer_core::ServiceError;
use coffer_core::services::mfa;
use coffer_core::text::t;
use minijinja::context;
use poem::http::StatusCode;
use poem::{Body, Request, Response};
use secrecy::{ExposeSecret as _, SecretString};

use super::account::sentence;
use super::page;
use super::session::SignedIn;
use super::{INVALID, core};
use crate::auth::meta;

/// Where the page is.
enum State {
    Off,
    On,
    /// Set-up started: the QR code and the secret, waiting for a first code.
    Enrolling(mfa::Enrolment),
    /// Just turned on: the recovery codes, shown this once.
    Codes(Vec<String>),
}

/// The page in `state`, with an error or a notice above it.
fn mfa_page(
    me: &SignedIn,
    status: StatusCode,
    state: State,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let (on, enrolment, codes) = match state {
        State::Off => (false, None, None),
        State::On => (true, None, None),
        State::Enrolling(e) => (false, Some(e), None),
        State::Codes(codes) => (true, None, Some(codes)),
    };
    // The drawing without its XML declaration, to sit inside the page.
    let qr_svg = enrolment.as_ref().map(|e| {
        let svg = &e.qr_svg;
        svg.find("<svg")
            .map_or(svg.as_str(), |at| &svg[at..])
            .to_owned()
    });
    page::view(
        Some(me),
        status,
        "app/mfa.html",
        context! {
            on => on, qr_svg => qr_svg.map(minijinja::Value::from_safe_string),
            secret => enrolment.map(|e| e.secret.expose_secret().to_owned()),
            codes => codes, error => error, notice => notice,
        },
    )
}

/// `GET /app/mfa`
#[poem::handler]
pub async fn page_view(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let on = mfa::enrolled(core, me.session.user.id)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    let state = if on { State::On } else { State::Off };
    Ok(mfa_page(&me, StatusCode::OK, state, None, None))
}

/// `POST /app/mfa/start`: a fresh secret and its QR code, waiting for a first code.
#[poem::handler]
pub async fn start(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, _) = SignedIn::post(req, body).await?;
    match mfa::start(core, &me.session).await {
        Ok(enrolment) => Ok(mfa_page(
            &me,
            StatusCode::OK,
            State::Enrolling(enrolment),
            None,
            None,
        )),
        Err(ServiceError::Conflict(detail)) => Ok(mfa_page(
            &me,
            StatusCode::CONFLICT,
            State::On,
            Some(&sentence(&detail)),
            None,
        )),
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

/// `POST /app/mfa/confirm`: the first code turns it on; the recovery codes are shown once.
#[poem::handler]
pub async fn confirm(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let code = fields.get("code").unwrap_or_default();
    match mfa::confirm(core, &me.session, code, &meta(req)).await {
        Ok(codes) => Ok(mfa_page(
            &me,
            StatusCode::OK,
            State::Codes(codes.iter().map(|c| c.expose_secret().to_owned()).collect()),
            None,
            Some(&t("mfa-notice-on")),
        )),
        Err(ServiceError::Invalid(detail) | ServiceError::Conflict(detail)) => Ok(mfa_page(
            &me,
            INVALID,
            State::Off,
            Some(&sentence(&detail)),
            None,
        )),
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

/// `POST /app/mfa/off`: with the password.
#[poem::handler]
pub async fn turn_off(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let password = SecretString::from(fields.get("password").unwrap_or_default().to_owned());
    match mfa::turn_off(core, &me.session, password, &meta(req)).await {
        Ok(()) => Ok(mfa_page(
            &me,
            StatusCode::OK,
            State::Off,
            None,
            Some(&t("mfa-notice-off")),
        )),
        Err(ServiceError::Forbidden(_)) => Ok(mfa_page(
            &me,
            StatusCode::FORBIDDEN,
            State::On,
            Some(&t("password-error-wrong-current")),
            None,
        )),
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}
