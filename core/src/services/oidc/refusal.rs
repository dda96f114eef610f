//! Why a sign-in with the provider did not open a session.

use super::Answer;
use crate::ServiceError;
use crate::text::t;

/// Why a sign-in with the provider did not open a session: each has its message, its status
/// and a code for the sign-in page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, used or expired `state`, or another browser's (403).
    Expired,
    /// The provider refused, or the person cancelled there (403).
    ProviderRefused,
    /// The code or the ID token did not pass (403).
    NotVerified,
    /// No Coffer account is linked to the provider's account, and none may be made (403).
    UnknownAccount,
    /// An account has the address already, not linked to this provider account (409).
    AddressTaken,
    /// The provider's account is linked to another Coffer account (409).
    LinkedElsewhere,
    /// The provider gave no usable email address for a new account (403).
    NoAddress,
    /// The account is disabled (403).
    Disabled,
}

impl Refusal {
    /// The code the web app's sign-in page is sent with (`/app/signin?sso=…`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::ProviderRefused => "refused",
            Self::NotVerified => "not-verified",
            Self::UnknownAccount => "unknown-account",
            Self::AddressTaken => "address-taken",
            Self::LinkedElsewhere => "linked-elsewhere",
            Self::NoAddress => "no-address",
            Self::Disabled => "disabled",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            Self::Expired,
            Self::ProviderRefused,
            Self::NotVerified,
            Self::UnknownAccount,
            Self::AddressTaken,
            Self::LinkedElsewhere,
            Self::NoAddress,
            Self::Disabled,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    /// What the person is told.
    pub fn message(self) -> String {
        match self {
            Self::Expired => t("oidc-error-expired"),
            Self::ProviderRefused => t("oidc-error-provider-refused"),
            Self::NotVerified => t("oidc-error-not-verified"),
            Self::UnknownAccount => t("oidc-error-unknown-account"),
            Self::AddressTaken => t("oidc-error-address-taken"),
            Self::LinkedElsewhere => t("oidc-error-linked-elsewhere"),
            Self::NoAddress => t("oidc-error-no-address"),
            Self::Disabled => t("oidc-error-disabled"),
        }
    }

    pub fn into_error(self) -> ServiceError {
        let message = self.message();
        match self {
            Self::AddressTaken | Self::LinkedElsewhere => ServiceError::Conflict(message),
            Self::Expired
            | Self::ProviderRefused
            | Self::NotVerified
            | Self::UnknownAccount
            | Self::NoAddress
            | Self::Disabled => ServiceError::Forbidden(message),
        }
    }
}

/// A finish that did not open a session: refused (with how the callback was to answer, when
/// that is known), or Coffer's own trouble.
#[derive(Debug)]
pub enum NotFinished {
    Refused(Refusal, Option<Answer>),
    Failed(ServiceError),
}

impl From<ServiceError> for NotFinished {
    fn from(err: ServiceError) -> Self {
        Self::Failed(err)
    }
}

impl From<sea_orm::DbErr> for NotFinished {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Failed(err.into())
    }
}
