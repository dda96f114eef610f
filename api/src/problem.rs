//! RFC 9457 problem documents for every error, with a stable `type` per kind. Server errors get a
//! fixed message and an error id that is logged with the cause; nothing internal leaks.

use coffer_core::ServiceError;
use poem::http::StatusCode;
use poem::{IntoResponse as _, Response};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

#[derive(Object, Debug, Clone)]
pub struct Problem {
    /// A stable identifier of the kind of problem.
    #[oai(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
}

fn problem(status: StatusCode, slug: &str, detail: impl Into<String>) -> Json<Problem> {
    Json(Problem {
        kind: format!("urn:coffer:problem:{slug}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.into(),
    })
}

#[derive(ApiResponse, Debug)]
pub enum ApiError {
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    #[oai(status = 413, content_type = "application/problem+json")]
    TooLarge(Json<Problem>),
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    #[oai(status = 416, content_type = "application/problem+json")]
    RangeNotSatisfiable(Json<Problem>, #[oai(header = "Content-Range")] String),
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Json<Problem>, #[oai(header = "Retry-After")] u64),
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(problem(StatusCode::BAD_REQUEST, "bad-request", detail))
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Unprocessable(problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail))
    }

    pub fn unauthorized() -> Self {
        Self::Unauthorized(
            problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in and send the token as `Authorization: Bearer <token>`",
            ),
            "Bearer".to_owned(),
        )
    }

    pub fn range_not_satisfiable(size: u64) -> Self {
        Self::RangeNotSatisfiable(
            problem(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                format!("the requested range is outside the file's {size} bytes"),
            ),
            format!("bytes */{size}"),
        )
    }

    /// A 500 whose cause is logged under an id the client can quote.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let id = crate::incident::internal(cause);
        Self::Internal(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("an internal error occurred; quote error id {id} to the operator"),
        ))
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Invalid(detail) => Self::unprocessable(detail),
            ServiceError::BadRequest(detail) => Self::bad_request(detail),
            ServiceError::Unauthorized => Self::unauthorized(),
            ServiceError::Forbidden(detail) => {
                Self::Forbidden(problem(StatusCode::FORBIDDEN, "forbidden", detail))
            }
            ServiceError::NotFound(what) => Self::NotFound(problem(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no such {what}"),
            )),
            ServiceError::Conflict(detail) => {
                Self::Conflict(problem(StatusCode::CONFLICT, "conflict", detail))
            }
            ServiceError::TooLarge { limit } => Self::TooLarge(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the file exceeds the upload limit of {limit} bytes"),
            )),
            ServiceError::FieldsTooLarge(detail) => {
                Self::TooLarge(problem(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail))
            }
            ServiceError::RateLimited { retry_after } => Self::TooManyRequests(
                problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "too many attempts; wait before trying again",
                ),
                retry_after.as_secs().max(1),
            ),
            ServiceError::LimitReached {
                detail,
                retry_after,
            } => Self::TooManyRequests(
                problem(StatusCode::TOO_MANY_REQUESTS, "limit-reached", detail),
                retry_after.as_secs().max(1),
            ),
            ServiceError::Integrity => Self::Internal(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "integrity-failed",
                "the stored file failed its integrity check and was not served; the event was logged",
            )),
            ServiceError::Busy { retry_after } => Self::Unavailable(
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the service is busy; try again shortly",
                ),
                retry_after.as_secs().max(1),
            ),
            ServiceError::Unavailable(cause) => {
                let retry_after = crate::incident::unavailable(cause.as_ref());
                Self::Unavailable(
                    problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "a backing service is unavailable; try again shortly",
                    ),
                    retry_after,
                )
            }
            ServiceError::Internal(cause) => Self::internal(&format!("{cause:#}")),
        }
    }
}

/// Turns every error that escaped a handler (poem's and poem-openapi's own) into problem+json.
pub async fn catch_all(err: poem::Error) -> Response {
    // Keep the matched route for metrics and logs.
    let route = err.data::<poem::PathPattern>().cloned();
    let mut response = render(err);
    if let Some(route) = route {
        response.set_data(route);
    }
    response
}

fn render(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let api_error = if err.is::<AuthorizationError>() {
        ApiError::unauthorized()
    } else if err.is::<ParseRequestPayloadError>()
        || err.is::<ParsePathError>()
        || err.is::<ParseParamError>()
    {
        // Well-formed but outside what the schema allows (a minimum, a length): the same
        // 422 a service gives for a value it cannot take; anything malformed stays 400.
        let text = err.to_string();
        if text.contains("verification failed") {
            ApiError::unprocessable(text)
        } else {
            ApiError::bad_request(text)
        }
    } else if err.is::<ContentTypeError>() {
        ApiError::UnsupportedMediaType(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            err.to_string(),
        ))
    } else if status == StatusCode::NOT_FOUND {
        return plain(status, "not-found", "no such route");
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        return plain(
            status,
            "method-not-allowed",
            "this route does not accept that method",
        );
    } else if status.is_server_error() {
        ApiError::internal(&err)
    } else {
        return plain(status, "bad-request", err.to_string());
    };
    api_error.into_response()
}

pub(crate) fn plain(status: StatusCode, slug: &str, detail: impl Into<String>) -> Response {
    let body = problem(status, slug, detail).0;
    let json = serde_json::json!({ "type": body.kind, "title": body.title, "status": body.status, "detail": body.detail });
    Response::builder()
        .status(status)
        .content_type("application/problem+json")
        .body(json.to_string())
}
