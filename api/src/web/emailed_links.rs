//! The pages behind the links Coffer emails to account holders: confirming an address, and
//! setting a password after an admin's forced reset. Each shows a form first, so that a mail
//! scanner that opens links changes nothing.

use coffer_core::ServiceError;
use coffer_core::services::{password_reset, verification};
use coffer_core::text::t;
use minijinja::context;
use poem::http::StatusCode;
use poem::{Body, Request, Response};
use secrecy::SecretString;

use super::INVALID;
use super::account::{sentence, visitor_page, visitor_post};
use super::page::{self, Fields};
use crate::auth::meta;

/// `GET /app/verify-email?token=…`, the emailed link: a page with one button, so that a mail
/// scanner that opens links verifies nothing.
#[poem::handler]
pub async fn verify_email_page(req: &Request) -> poem::Result<Response> {
    let query = Fields::query(req);
    verify_form(
        req,
        StatusCode::OK,
        query.get("token").unwrap_or_default(),
        None,
    )
}

fn verify_form(
    req: &Request,
    status: StatusCode,
    token: &str,
    error: Option<&str>,
) -> poem::Result<Response> {
    token_form(req, status, "app/verify_email.html", token, error)
}

/// The page of an emailed link (its token carried in a hidden field) for a visitor.
fn token_form(
    req: &Request,
    status: StatusCode,
    template: &str,
    token: &str,
    error: Option<&str>,
) -> poem::Result<Response> {
    visitor_page(req, status, template, |csrf| {
        context! { csrf => csrf, token => token, error => error }
    })
}

/// `POST /app/verify-email`: confirms the address as `POST /api/v1/auth/verify-email` does.
#[poem::handler]
pub async fn verify_email(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, fields) = visitor_post(req, body).await?;
    let token = fields.get("token").unwrap_or_default();
    match verification::confirm(core, token, &meta(req)).await {
        Ok(()) => Ok(page::message(
            None,
            StatusCode::OK,
            &t("verify-email-done-heading"),
            &t("verify-email-done-text"),
        )),
        Err(ServiceError::Invalid(detail)) => {
            verify_form(req, INVALID, token, Some(&sentence(&detail)))
        }
        Err(err) => Err(page::service_error(None, err)),
    }
}

/// `GET /app/password-reset?token=…`, the emailed link of a forced reset: the new password's
/// form.
#[poem::handler]
pub async fn password_reset_page(req: &Request) -> poem::Result<Response> {
    let query = Fields::query(req);
    reset_form(
        req,
        StatusCode::OK,
        query.get("token").unwrap_or_default(),
        None,
    )
}

fn reset_form(
    req: &Request,
    status: StatusCode,
    token: &str,
    error: Option<&str>,
) -> poem::Result<Response> {
    token_form(req, status, "app/password_reset.html", token, error)
}

/// `POST /app/password-reset`: sets the password as `POST /api/v1/auth/password-reset/confirm`
/// does, then sends the browser to sign in.
#[poem::handler]
pub async fn reset_password(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, fields) = visitor_post(req, body).await?;
    let token = fields.get("token").unwrap_or_default();
    let password = fields.get("password").unwrap_or_default();
    if fields.get("password_again") != Some(password) {
        return reset_form(
            req,
            INVALID,
            token,
            Some(&t("signup-error-passwords-differ")),
        );
    }
    match password_reset::confirm(
        core,
        token,
        SecretString::from(password.to_owned()),
        &meta(req),
    )
    .await
    {
        Ok(()) => Ok(page::redirect("/app/signin?reset=1")),
        Err(ServiceError::Invalid(detail)) => {
            reset_form(req, INVALID, token, Some(&sentence(&detail)))
        }
        Err(err) => Err(page::service_error(None, err)),
    }
}

/// `GET /app/forgot-password`: asks for the address to send a reset link to.
#[poem::handler]
pub async fn forgot_password_page(req: &Request) -> poem::Result<Response> {
    forgot_form(req, StatusCode::OK, "", None, None)
}

fn forgot_form(
    req: &Request,
    status: StatusCode,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> poem::Result<Response> {
    visitor_page(req, status, "app/forgot_password.html", |csrf| {
        context! { csrf => csrf, email => email, error => error, notice => notice }
    })
}

/// `POST /app/forgot-password`: the same answer whether or not the address has an account, as
/// `POST /api/v1/auth/password-reset` gives.
#[poem::handler]
pub async fn forgot_password(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, fields) = visitor_post(req, body).await?;
    let email = fields.get("email").unwrap_or_default().trim();
    if email.is_empty() {
        return forgot_form(req, INVALID, email, Some(&t("forgot-error-empty")), None);
    }
    match password_reset::request(core, email, &meta(req)).await {
        Ok(()) => forgot_form(
            req,
            StatusCode::OK,
            "",
            None,
            Some(&t("forgot-notice-sent")),
        ),
        Err(ServiceError::Invalid(detail)) => {
            forgot_form(req, INVALID, email, Some(&sentence(&detail)), None)
        }
        Err(ServiceError::RateLimited { .. }) => forgot_form(
            req,
            StatusCode::TOO_MANY_REQUESTS,
            email,
            Some(&t("forgot-error-rate-limited")),
            None,
        ),
        Err(err) => Err(page::service_error(None, err)),
    }
}
