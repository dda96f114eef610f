pub mod accounts;
pub mod admin;
pub mod files;
pub mod health;
pub mod recipient;
pub mod settings;
pub mod shares;

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

/// An account's role, as the API names it.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum RoleName {
    User,
    Admin,
}

impl From<coffer_core::services::users::Role> for RoleName {
    fn from(role: coffer_core::services::users::Role) -> Self {
        use coffer_core::services::users::Role;
        match role {
            Role::User => Self::User,
            Role::Admin => Self::Admin,
        }
    }
}
