//! Who is acting: a signed-in account, as every service that acts for someone takes it, and
//! what it may do. A session (a password or single sign-on) may do everything its role allows;
//! a personal API token only what its scopes grant. The checks are here, and services make
//! them, so that the API, the web app and the command line obey them alike.

use std::fmt;

use uuid::Uuid;

use entity::user;

use crate::audit::Actor;
use crate::text::{Arg, t, t_with};
use crate::types::Role;
use crate::{ServiceError, ServiceResult};

/// What a personal API token may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// List, read and download one's own files, and list their shares.
    FilesRead,
    /// Upload and delete one's own files.
    FilesWrite,
    /// Share one's own files and revoke their shares.
    SharesWrite,
    /// Query, export and verify the audit log (admins only).
    AuditRead,
}

impl Scope {
    pub const ALL: [Self; 4] = [
        Self::FilesRead,
        Self::FilesWrite,
        Self::SharesWrite,
        Self::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FilesRead => "files:read",
            Self::FilesWrite => "files:write",
            Self::SharesWrite => "shares:write",
            Self::AuditRead => "audit:read",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The stored form: the words, space-separated, in a fixed order.
    pub fn to_words(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// Reads the stored form; a word this release does not know grants nothing.
    pub fn from_words(words: &str) -> Self {
        words.split_whitespace().filter_map(Scope::parse).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A signed-in session (or the account itself, inside the service): everything the
    /// account's role allows.
    Session,
    /// A signed-in session of an account that must set up a second factor first
    /// (`COFFER_REQUIRE_MFA`): it may do that, see who it is, and sign out; nothing else.
    EnrolmentDue,
    /// A personal API token: only its scopes, and never the account's own settings.
    Token { id: Uuid, scopes: Scopes },
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub access: Access,
}

impl User {
    /// The audit actor this user acts as; through a token, the token is named too.
    pub fn actor(&self) -> Actor {
        let admin = self.role == Role::Admin;
        match (self.access, admin) {
            (Access::Token { id, .. }, _) => Actor::Token {
                user: self.id,
                admin,
                token: id,
            },
            (Access::Session | Access::EnrolmentDue, true) => Actor::Admin(self.id),
            (Access::Session | Access::EnrolmentDue, false) => Actor::User(self.id),
        }
    }

    /// Refuses (403) unless this caller may act within `scope`: a session may do all a user
    /// may, a token only what it was granted. Reading the audit log also needs an admin.
    pub fn require(&self, scope: Scope) -> ServiceResult<()> {
        if scope == Scope::AuditRead && self.role != Role::Admin {
            return Err(ServiceError::Forbidden(t("user-error-admin-only")));
        }
        match self.access {
            Access::Session => Ok(()),
            Access::EnrolmentDue => Err(ServiceError::Forbidden(t("mfa-error-enrol-first"))),
            Access::Token { scopes, .. } if scopes.contains(scope) => Ok(()),
            Access::Token { .. } => Err(ServiceError::Forbidden(t_with(
                "token-error-scope",
                [("scope", Arg::from(scope.as_str()))],
            ))),
        }
    }

    /// Refuses (403) a token: the account's own settings (its password, sessions, tokens and
    /// second factor) are changed only by the person, signed in.
    pub fn require_session(&self) -> ServiceResult<()> {
        match self.access {
            Access::Session => Ok(()),
            Access::EnrolmentDue => Err(ServiceError::Forbidden(t("mfa-error-enrol-first"))),
            Access::Token { .. } => Err(ServiceError::Forbidden(t("token-error-session-only"))),
        }
    }

    /// Refuses (403) a token, but not a session whose second factor is still due: setting it
    /// up, and signing out, are what such a session is for.
    pub fn require_person(&self) -> ServiceResult<()> {
        match self.access {
            Access::Session | Access::EnrolmentDue => Ok(()),
            Access::Token { .. } => Err(ServiceError::Forbidden(t("token-error-session-only"))),
        }
    }

    /// Whether this session must set up a second factor before anything else.
    pub fn enrolment_due(&self) -> bool {
        self.access == Access::EnrolmentDue
    }

    /// Refuses (403) unless this is a signed-in admin: administration is never done with a
    /// token.
    pub fn require_admin(&self) -> ServiceResult<()> {
        if self.role != Role::Admin {
            return Err(ServiceError::Forbidden(t("user-error-admin-only")));
        }
        self.require_session()
    }
}

impl From<user::Model> for User {
    /// The account itself, as the service acts for it.
    fn from(m: user::Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            role: m.role,
            access: Access::Session,
        }
    }
}

/// A signed-in user, as proven by a bearer token (a session's, or a personal API token's: then
/// `id` is the token's and `user.access` says so).
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user: User,
}

/// Whoever administers: an admin (checked by the service it calls), or the operator at the
/// server's console (`coffer` commands), who holds the keys anyway.
#[derive(Debug, Clone, Copy)]
pub enum Operator<'a> {
    Admin(&'a User),
    Console,
}

impl Operator<'_> {
    pub fn actor(&self) -> Actor {
        match self {
            Self::Admin(user) => user.actor(),
            Self::Console => Actor::System,
        }
    }

    /// Refuses (403) anyone but a signed-in admin or the console.
    pub fn require_admin(&self) -> ServiceResult<()> {
        match self {
            Self::Admin(user) => user.require_admin(),
            Self::Console => Ok(()),
        }
    }

    /// Refuses (403) anyone but an admin (signed in, or with an `audit:read` token) or the
    /// console.
    pub fn require_audit_reader(&self) -> ServiceResult<()> {
        match self {
            Self::Admin(user) => user.require(Scope::AuditRead),
            Self::Console => Ok(()),
        }
    }
}

/// Adds the account `by` names (its id, email, role and whether it is disabled, in that order)
/// to a select of sessions or tokens: who a bearer acts for comes in the same round trip.
pub(crate) fn with_account<E: sea_orm::EntityTrait>(
    select: sea_orm::Select<E>,
    by: E::Column,
) -> sea_orm::Select<E> {
    use sea_orm::QuerySelect as _;
    select
        .column_as(user::Column::Id, "account_id")
        .column(user::Column::Email)
        .column(user::Column::Role)
        .column(user::Column::Disabled)
        .join(
            sea_orm::JoinType::InnerJoin,
            sea_orm::RelationDef::from(E::belongs_to(user::Entity).from(by).to(user::Column::Id)),
        )
}
