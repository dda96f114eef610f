pub mod accounts;
pub mod activity;
pub mod admin;
pub mod audit;
pub mod files;
pub mod health;
pub mod mfa;
pub mod oidc;
pub mod preferences;
pub mod recipient;
pub mod sessions;
pub mod settings;
pub mod shares;
pub mod tokens;

#[derive(poem_openapi::Tags)]
pub enum Tag {
    /// Accounts and sessions
    Auth,
    /// Uploading, reading and deleting files
    Files,
    /// Sharing files through expiring links
    Shares,
    /// The pages and downloads behind a share link
    Recipients,
    /// Administration: master keys and the audit log
    Admin,
}

/// Mirrors a closed set of core as an OpenAPI enum with the same words, so clients see every
/// value a field can take. The match is exhaustive: a variant added in core fails the build here.
macro_rules! api_enum {
    ($(#[doc = $doc:literal])* $name:ident from $core:ident { $($variant:ident),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
        #[oai(rename_all = "snake_case")]
        pub enum $name {
            $($variant,)+
        }

        impl From<coffer_core::types::$core> for $name {
            fn from(value: coffer_core::types::$core) -> Self {
                match value {
                    $(coffer_core::types::$core::$variant => Self::$variant,)+
                }
            }
        }
    };
}

api_enum! {
    /// An account's role.
    RoleName from Role { User, Admin }
}

api_enum! {
    /// Where a file is: `quarantined` until the validation and encryption jobs have run, then
    /// `validated`, `ready`, or `rejected` (with a reason); `deleted` files are not listed.
    FileStatusName from FileStatus { Quarantined, Validated, Ready, Rejected, Deleted }
}

api_enum! {
    /// Where a share's link is. `pending` until its email goes out, then `emailed`, `outbox`
    /// (no mail server: written to the data dir, unsent) or `email_failed`; `active` for a link
    /// handed to the owner; `revoked`, `expired` or `cancelled` (the file was rejected or deleted
    /// first) once it no longer works.
    ShareStateName from ShareState {
        Pending, Emailed, Outbox, EmailFailed, Active, Revoked, Expired, Cancelled
    }
}

api_enum! {
    /// A master-key version: `active` (new wraps), `retiring` (still unwraps, being rotated
    /// away) or `retired`.
    KeyStateName from KeyState { Active, Retiring, Retired }
}

api_enum! {
    /// A key rotation: `running` or `finished`.
    RotationStateName from RotationState { Running, Finished }
}
