//! Signing up, in and out. Sign-in calls the same `users::login` as the API (rate limits,
//! audit and look-alike failures come with it) and keeps its token in the session cookie.

use coffer_core::services::users;
use coffer_core::text::t;
use coffer_core::{Core, ServiceError};
use minijinja::context;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Body, Request, Response};
use secrecy::SecretString;

use super::page::{self, Fields};
use super::session::{self, SignedIn};
use super::{INVALID, core};
use crate::auth::meta;

/// A sign-in or sign-up form, with the visitor's CSRF cookie set when it is new.
pub(super) fn form(
    req: &Request,
    status: StatusCode,
    template: &str,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> poem::Result<Response> {
    form_with(req, status, template, email, error, notice, None)
}

/// [`form`], carrying an invitation's token (sign-up).
fn form_with(
    req: &Request,
    status: StatusCode,
    template: &str,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
    invite: Option<&str>,
) -> poem::Result<Response> {
    let core = core(req)?;
    let sso = core.oidc.as_deref().map(|p| p.name().to_owned());
    let local_login = core.config.identity.local_login;
    visitor_page(req, status, template, |csrf| {
        context! {
            csrf => csrf, email => email, error => error, notice => notice, invite => invite,
            sso => sso, local_login => local_login,
        }
    })
}

/// A page with a form for visitors (signed in or not): its context is given the visitor's
/// CSRF token, whose cookie is set when it is new.
pub(super) fn visitor_page(
    req: &Request,
    status: StatusCode,
    template: &str,
    ctx: impl FnOnce(&str) -> minijinja::Value,
) -> poem::Result<Response> {
    let core = core(req)?;
    let (csrf, new) = session::visitor_csrf(req);
    let mut response = page::view(None, status, template, ctx(&csrf));
    if new {
        let cookie = session::set_cookie(
            core,
            session::CSRF_COOKIE,
            &csrf,
            session::VISITOR_CSRF_MAX_AGE,
        );
        page::add_cookie(&mut response, &cookie);
    }
    Ok(response)
}

/// A sign-in or sign-up form post: its fields, once the visitor's CSRF token checked out.
pub(super) async fn visitor_post(req: &Request, body: Body) -> poem::Result<(&Core, Fields)> {
    let fields = Fields::read(body).await?;
    if !session::visitor_csrf_ok(req, fields.get("csrf")) {
        return Err(page::csrf_refused());
    }
    Ok((core(req)?, fields))
}

#[poem::handler]
pub async fn signin_page(req: &Request) -> poem::Result<Response> {
    if SignedIn::optional(req, core(req)?).await.is_some() {
        return Ok(page::redirect("/app/files"));
    }
    let query = Fields::query(req);
    let notice = if query.get("welcome").is_some() {
        Some(t("signin-notice-welcome"))
    } else if query.get("reset").is_some() {
        Some(t("signin-notice-reset"))
    } else {
        None
    };
    // Why a sign-in with the identity provider did not open a session.
    let refused = query
        .get("sso")
        .and_then(coffer_core::services::oidc::Refusal::from_code)
        .map(|r| sentence(&r.message()));
    form(
        req,
        if refused.is_some() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        },
        "app/signin.html",
        "",
        refused.as_deref(),
        notice.as_deref(),
    )
}

#[poem::handler]
pub async fn signin(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, fields) = visitor_post(req, body).await?;
    let email = fields.get("email").unwrap_or_default().trim();
    let password = fields.get("password").unwrap_or_default();
    let again =
        |status, error: &str| form(req, status, "app/signin.html", email, Some(error), None);
    if email.is_empty() || password.is_empty() {
        return again(INVALID, &t("signin-error-empty"));
    }
    match users::login(
        core,
        email,
        SecretString::from(password.to_owned()),
        session::cookie(req, session::SESSION_COOKIE),
        &meta(req),
    )
    .await
    {
        Ok(users::SignIn::Session(token, _expires_at)) => Ok(signed_in(core, &token)),
        Ok(users::SignIn::SecondStep { challenge, .. }) => {
            second_step_form(req, StatusCode::OK, challenge.expose(), None)
        }
        Err(ServiceError::Unauthorized) => again(INVALID, &t("signin-error-no-match")),
        Err(ServiceError::Forbidden(detail)) => again(StatusCode::FORBIDDEN, &sentence(&detail)),
        Err(ServiceError::RateLimited { retry_after }) => {
            let mut response = again(
                StatusCode::TOO_MANY_REQUESTS,
                &t("signin-error-rate-limited"),
            )?;
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            Ok(response)
        }
        Err(err) => Err(page::service_error(None, err)),
    }
}

#[poem::handler]
pub async fn signup_page(req: &Request) -> poem::Result<Response> {
    if SignedIn::optional(req, core(req)?).await.is_some() {
        return Ok(page::redirect("/app/files"));
    }
    let query = Fields::query(req);
    let invite = query.get("invite").filter(|i| !i.is_empty());
    let notice = invite.map(|_| t("signup-notice-invited"));
    form_with(
        req,
        StatusCode::OK,
        "app/signup.html",
        "",
        None,
        notice.as_deref(),
        invite,
    )
}

#[poem::handler]
pub async fn signup(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, fields) = visitor_post(req, body).await?;
    let email = fields.get("email").unwrap_or_default().trim();
    let password = fields.get("password").unwrap_or_default();
    let invite = fields.get("invite").filter(|i| !i.is_empty());
    let again = |status, error: &str| {
        form_with(
            req,
            status,
            "app/signup.html",
            email,
            Some(error),
            None,
            invite,
        )
    };
    if email.is_empty() || password.is_empty() {
        return again(INVALID, &t("signup-error-empty"));
    }
    if fields.get("password_again") != Some(password) {
        return again(INVALID, &t("signup-error-passwords-differ"));
    }
    match users::signup(
        core,
        email,
        SecretString::from(password.to_owned()),
        invite,
        &meta(req),
    )
    .await
    {
        Ok(_) => Ok(page::redirect("/app/signin?welcome=1")),
        Err(ServiceError::Invalid(detail)) => again(INVALID, &sentence(&detail)),
        Err(ServiceError::Forbidden(detail)) => again(StatusCode::FORBIDDEN, &sentence(&detail)),
        Err(ServiceError::Conflict(detail)) => again(StatusCode::CONFLICT, &sentence(&detail)),
        Err(err) => Err(page::service_error(None, err)),
    }
}

/// Ends the session (as `POST /api/v1/auth/logout` does) and clears the cookie.
#[poem::handler]
pub async fn signout(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, _) = SignedIn::post(req, body).await?;
    let method = users::logout(core, &me.session, &meta(req))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    let provider_logout = coffer_core::services::oidc::logout_url(core, method.as_deref()).await;
    let mut response = match provider_logout {
        Some(url) => super::sso::signed_out(core, &url),
        None => page::redirect("/app/signin"),
    };
    page::add_cookie(
        &mut response,
        &session::clear_cookie(core, session::SESSION_COOKIE),
    );
    Ok(response)
}

/// A service's message as a sentence for a page ("email address needs an @" → "Email address
/// needs an @.").
pub(super) fn sentence(detail: &str) -> String {
    let mut chars = detail.chars();
    let mut text: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

#[poem::handler]
pub async fn password_page(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    Ok(password_form(core, &me, StatusCode::OK, None, None))
}

fn password_form(
    core: &Core,
    me: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let sso = core.oidc.as_deref().map(|p| p.name().to_owned());
    page::view(
        Some(me),
        status,
        "app/password.html",
        context! { error => error, notice => notice, sso => sso },
    )
}

/// Changes the password through the same `users::change_password` as the API: every other
/// session ends, this one stays.
#[poem::handler]
pub async fn change_password(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let current = fields.get("current_password").unwrap_or_default();
    let new = fields.get("new_password").unwrap_or_default();
    let again = |status, error: &str| Ok(password_form(core, &me, status, Some(error), None));
    if current.is_empty() || new.is_empty() {
        return again(INVALID, &t("password-error-empty"));
    }
    if fields.get("new_password_again") != Some(new) {
        return again(INVALID, &t("password-error-passwords-differ"));
    }
    match users::change_password(
        core,
        &me.session,
        SecretString::from(current.to_owned()),
        SecretString::from(new.to_owned()),
        &meta(req),
    )
    .await
    {
        Ok(()) => Ok(password_form(
            core,
            &me,
            StatusCode::OK,
            None,
            Some(&t("password-notice-changed")),
        )),
        Err(ServiceError::Forbidden(_)) => {
            again(StatusCode::FORBIDDEN, &t("password-error-wrong-current"))
        }
        Err(ServiceError::Invalid(detail)) => again(INVALID, &sentence(&detail)),
        Err(ServiceError::RateLimited { .. }) => again(
            StatusCode::TOO_MANY_REQUESTS,
            &t("password-error-rate-limited"),
        ),
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

/// The browser signed in: to its files, with the session's cookie.
fn signed_in(core: &Core, token: &coffer_core::types::Token) -> Response {
    let mut response = page::redirect("/app/files");
    let cookie = session::set_cookie(
        core,
        session::SESSION_COOKIE,
        token.expose(),
        core.config.session_ttl.as_secs(),
    );
    page::add_cookie(&mut response, &cookie);
    response
}

/// The second step of a sign-in: a code of the account's second factor.
fn second_step_form(
    req: &Request,
    status: StatusCode,
    challenge: &str,
    error: Option<&str>,
) -> poem::Result<Response> {
    visitor_page(req, status, "app/signin_mfa.html", |csrf| {
        context! { csrf => csrf, challenge => challenge, error => error }
    })
}

/// `POST /app/signin/mfa`: completes the sign-in with a code, as `POST /api/v1/auth/login/mfa`.
#[poem::handler]
pub async fn second_step(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, fields) = visitor_post(req, body).await?;
    let challenge = fields.get("challenge").unwrap_or_default();
    let code = fields.get("code").unwrap_or_default();
    if code.trim().is_empty() {
        return second_step_form(req, INVALID, challenge, Some(&t("mfa-signin-error-empty")));
    }
    match users::complete_second_step(
        core,
        challenge,
        code,
        session::cookie(req, session::SESSION_COOKIE),
        &meta(req),
    )
    .await
    {
        Ok((token, _)) => Ok(signed_in(core, &token)),
        Err(ServiceError::Unauthorized) => {
            second_step_form(req, INVALID, challenge, Some(&t("mfa-signin-error-wrong")))
        }
        Err(ServiceError::RateLimited { .. }) => second_step_form(
            req,
            StatusCode::TOO_MANY_REQUESTS,
            challenge,
            Some(&t("signin-error-rate-limited")),
        ),
        Err(err) => Err(page::service_error(None, err)),
    }
}
