//! Bearer-token authentication and request metadata. Obtaining a `UserAuth` is the check.

use coffer_core::Core;
use coffer_core::audit::RequestMeta;
use coffer_core::services::users::{self, Session};
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
    if session.user.role == users::Role::Admin {
        Ok(session)
    } else {
        Err(ApiError::from(coffer_core::ServiceError::Forbidden(
            "this needs an admin account",
        ))
        .into())
    }
}

/// The service context every request carries.
pub fn core(req: &Request) -> Result<&Core, ApiError> {
    req.data::<Core>()
        .ok_or_else(|| ApiError::internal(&"core missing from request data"))
}

/// Who is calling, for the audit log. The socket address is used: Coffer does not trust
/// forwarding headers it cannot verify.
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

pub fn meta(req: &Request) -> RequestMeta {
    RequestMeta {
        ip: req
            .remote_addr()
            .as_socket_addr()
            .map(|a| a.ip().to_string()),
        user_agent: req
            .headers()
            .get(poem::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}
