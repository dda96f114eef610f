//! Bearer-token authentication and request metadata. Obtaining a `UserAuth` is the check.

use coffer_core::Core;
use coffer_core::audit::RequestMeta;
use coffer_core::principal::Session;
use coffer_core::services::users;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use crate::problem::ApiError;

/// A signed-in user (`Authorization: Bearer <token>` from `POST /api/v1/auth/login`).
#[derive(SecurityScheme)]
#[oai(
    ty = "bearer",
    rename = "bearerAuth",
    bearer_format = "opaque token",
    checker = "check_bearer"
)]
pub struct UserAuth(pub Session);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Session> {
    users::authenticate(core(req)?, &bearer.token)
        .await
        .map_err(|e| poem::Error::from(ApiError::from(e)))
}

/// A signed-in admin. Obtaining one is the admin check: other users get 403.
#[derive(SecurityScheme)]
#[oai(
    ty = "bearer",
    rename = "bearerAuth",
    bearer_format = "opaque token",
    checker = "check_admin"
)]
pub struct AdminAuth(pub Session);

async fn check_admin(req: &Request, bearer: Bearer) -> poem::Result<Session> {
    let session = check_bearer(req, bearer).await?;
    if session.user.role == coffer_core::types::Role::Admin {
        Ok(session)
    } else {
        Err(
            ApiError::from(coffer_core::ServiceError::Forbidden(coffer_core::text::t(
                "user-error-admin-only",
            )))
            .into(),
        )
    }
}

/// The service context every request carries.
pub fn core(req: &Request) -> Result<&Core, ApiError> {
    req.data::<Core>()
        .ok_or_else(|| ApiError::internal(&"core missing from request data"))
}

/// A HEAD is answered with a download's headers only, and is never counted as one.
pub fn delivery(req: &Request) -> coffer_core::services::files::Delivery {
    use coffer_core::services::files::Delivery;
    if req
        .extensions()
        .get::<crate::observe::HeadRequest>()
        .is_some()
    {
        Delivery::HeadersOnly
    } else {
        Delivery::Bytes
    }
}

/// Who is calling, for the audit log and the rate limits: the socket's peer, or the client a
/// trusted proxy (`COFFER_TRUSTED_PROXIES`) forwarded for; nobody else's forwarding headers
/// are read.
pub fn meta(req: &Request) -> RequestMeta {
    let trusted = req
        .data::<Core>()
        .map_or(&[][..], |core| &core.config.trusted_proxies[..]);
    let header = |name: &str| {
        let lines: Vec<&str> = req
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!lines.is_empty()).then(|| lines.join(","))
    };
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let ip = if trusted.is_empty() {
        peer
    } else {
        coffer_core::client::address(
            peer,
            header("forwarded").as_deref(),
            header("x-forwarded-for").as_deref(),
            trusted,
        )
    };
    RequestMeta {
        ip: ip.map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(poem::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}
