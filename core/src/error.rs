//! Errors services return (the API maps each kind to one HTTP status), and how a job fails
//! (the worker retries a transient failure and records a permanent one).

use std::time::Duration;

use crate::types::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Well-formed request, unacceptable value (422).
    #[error("{0}")]
    Invalid(String),
    /// Malformed request (400).
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// Unknown, deleted or someone else's (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the file exceeds the upload limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A request's other parts (form fields beside the file) are too many or too big (413).
    #[error("{0}")]
    FieldsTooLarge(String),
    #[error("too many attempts; try again later")]
    RateLimited { retry_after: Duration },
    /// A budget of the account's is spent (429), with what the person can do about it.
    #[error("{detail}")]
    LimitReached {
        detail: String,
        retry_after: Duration,
    },
    /// Stored data failed authentication: never served.
    #[error("the stored file failed its integrity check")]
    Integrity,
    /// A dependency (database, storage, queue) is unavailable (503).
    #[error("a backing service is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Too much of one kind of work is waiting (password hashing): 503, try again shortly.
    #[error("the service is busy; try again shortly")]
    Busy { retry_after: Duration },
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for ServiceError {
    fn from(err: anyhow::Error) -> Self {
        if err.is::<crate::password::Busy>() {
            Self::Busy {
                retry_after: Duration::from_secs(2),
            }
        } else {
            Self::Internal(err)
        }
    }
}

impl From<Invalid> for ServiceError {
    fn from(value: Invalid) -> Self {
        Self::Invalid(value.0)
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::connection_lost(&err) {
            Self::Unavailable(anyhow::Error::new(err).context("database"))
        } else {
            Self::Internal(anyhow::Error::new(err).context("database"))
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// How a job ended when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Retrying cannot help (the input itself is bad).
    #[error("permanent: {0}")]
    Permanent(String),
    /// Something outside was unavailable; try again later.
    #[error("transient: {0:#}")]
    Transient(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for JobError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Transient(anyhow::Error::new(err).context("database"))
    }
}
