//! Cookie sessions and CSRF tokens for the pages.
//!
//! The session cookie holds the same token `POST /api/v1/auth/login` returns (so sessions,
//! their expiry, logout and disabling work exactly as for the API). A signed-in form's CSRF
//! token is derived from that token, so nothing extra is stored; the sign-in and sign-up forms,
//! before there is a session, use a double-submit cookie instead. Tokens are compared in
//! constant time, before anything else is done.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_core::Core;
use coffer_core::principal::Session;
use coffer_core::services::users;
use coffer_core::types::Role;
use coffer_core::types::Token;
use poem::Request;
use poem::http::header;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::page::{self, Fields};

pub const SESSION_COOKIE: &str = "coffer_session";
pub const CSRF_COOKIE: &str = "coffer_csrf";

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The CSRF token of the session whose token is `raw`: a one-way function of it under a fixed
/// label, so a page that shows it reveals nothing about the session token.
fn csrf_of(raw: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"coffer web form csrf v1\0");
    hasher.update(raw.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// Constant-time equality of two tokens (their lengths are not secret).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `Set-Cookie` for `name`: HttpOnly, SameSite=Strict, Path=/, and Secure when Coffer is
/// reached over https.
pub fn set_cookie(core: &Core, name: &str, value: &str, max_age: u64) -> String {
    let secure = if core.config.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

pub fn clear_cookie(core: &Core, name: &str) -> String {
    set_cookie(core, name, "", 0)
}

/// A request from a signed-in user, with the CSRF token their forms carry.
pub struct SignedIn {
    pub session: Session,
    pub csrf: String,
}

impl SignedIn {
    pub fn is_admin(&self) -> bool {
        self.session.user.role == Role::Admin
    }

    /// The signed-in user of a page view; otherwise the answer to give (off to sign in, the
    /// stale cookie cleared).
    pub async fn from_view(req: &Request, core: &Core) -> poem::Result<Self> {
        let raw = cookie(req, SESSION_COOKIE).ok_or_else(|| to_sign_in(core, false))?;
        Self::resolve(core, raw).await?.unless_enrolment_due(req)
    }

    /// A session that must set up a second factor first (`COFFER_REQUIRE_MFA`) is sent to do
    /// that from every page but that one's and signing out.
    fn unless_enrolment_due(self, req: &Request) -> poem::Result<Self> {
        // The path as the browser asked for it (under `/app`, routes see it shortened).
        let path = req.original_uri().path();
        if self.session.user.enrolment_due()
            && !path.starts_with("/app/mfa")
            && path != "/app/signout"
        {
            return Err(page::fail(page::redirect("/app/mfa")));
        }
        Ok(self)
    }

    /// The signed-in user of a form post whose `csrf` field is `field`. The token is checked
    /// first (403 when it is missing or wrong); only then is the session looked up.
    pub async fn from_form(req: &Request, core: &Core, field: Option<&str>) -> poem::Result<Self> {
        let raw = cookie(req, SESSION_COOKIE).ok_or_else(|| to_sign_in(core, false))?;
        if !field.is_some_and(|f| same(f, &csrf_of(raw))) {
            return Err(page::csrf_refused());
        }
        Self::resolve(core, raw).await?.unless_enrolment_due(req)
    }

    /// A signed-in form post: its fields, once the CSRF token checked out and the session is
    /// live.
    pub async fn post(req: &Request, body: poem::Body) -> poem::Result<(&Core, Self, Fields)> {
        let fields = Fields::read(body).await?;
        let core = super::core(req)?;
        let me = Self::from_form(req, core, fields.get("csrf")).await?;
        Ok((core, me, fields))
    }

    async fn resolve(core: &Core, raw: &str) -> poem::Result<Self> {
        match users::authenticate_session(core, raw).await {
            Ok(session) => Ok(Self {
                session,
                csrf: csrf_of(raw),
            }),
            Err(coffer_core::ServiceError::Unauthorized) => Err(to_sign_in(core, true)),
            Err(err) => Err(page::service_error(None, err)),
        }
    }

    /// The session for a page that is open to everyone but looks different when signed in.
    pub async fn optional(req: &Request, core: &Core) -> Option<Self> {
        let raw = cookie(req, SESSION_COOKIE)?;
        Self::resolve(core, raw).await.ok()
    }
}

/// 303 to the sign-in page, clearing a session cookie that no longer works.
fn to_sign_in(core: &Core, clear: bool) -> poem::Error {
    let mut response = page::redirect("/app/signin");
    if clear {
        page::add_cookie(&mut response, &clear_cookie(core, SESSION_COOKIE));
    }
    poem::Error::from_response(response)
}

/// The double-submit token of a visitor who is not signed in: the cookie's value when it has a
/// well-formed one, else a new one (and the cookie to set).
pub fn visitor_csrf(req: &Request) -> (String, bool) {
    match cookie(req, CSRF_COOKIE).filter(|v| Token::parse(v).is_some()) {
        Some(existing) => (existing.to_owned(), false),
        None => (Token::generate().expose().to_owned(), true),
    }
}

/// Whether a sign-in or sign-up form's `csrf` field matches the visitor's cookie.
pub fn visitor_csrf_ok(req: &Request, field: Option<&str>) -> bool {
    match (cookie(req, CSRF_COOKIE), field) {
        (Some(cookie), Some(field)) => Token::parse(cookie).is_some() && same(cookie, field),
        _ => false,
    }
}

/// How long the visitor's CSRF cookie lives: long enough to fill in a form at leisure.
pub const VISITOR_CSRF_MAX_AGE: u64 = 12 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_derived_one_way_and_compared_whole() {
        let token = Token::generate();
        let csrf = csrf_of(token.expose());
        assert_eq!(csrf, csrf_of(token.expose()));
        assert_ne!(csrf, csrf_of(Token::generate().expose()));
        assert!(!csrf.contains(token.expose()));
        assert!(same(&csrf, &csrf.clone()));
        assert!(!same(&csrf, &csrf[..csrf.len() - 1]));
        assert!(!same(&csrf, ""));
    }
}
