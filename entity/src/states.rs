//! The closed sets stored in rows: a file's status, a share's state, a key version's state, a
//! rotation's state and an account's role.
//!
//! Each is stored as text whose bytes never change: the values feed audit details (and so the
//! chain hash), appear in the API and are matched by older rows. A new variant is a new word; a
//! rename is a migration. No native PostgreSQL enum, so adding a variant needs no DDL.

use sea_orm::entity::prelude::*;

/// Where a file is in its life: uploaded into quarantine, validated, encrypted and ready, or
/// rejected or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum FileStatus {
    /// Sealed in quarantine until the validation and encryption jobs have run.
    #[sea_orm(string_value = "quarantined")]
    Quarantined,
    /// Its type and size passed; encryption is next.
    #[sea_orm(string_value = "validated")]
    Validated,
    /// Encrypted at rest under a data key: it can be downloaded and shared.
    #[sea_orm(string_value = "ready")]
    Ready,
    #[sea_orm(string_value = "rejected")]
    Rejected,
    #[sea_orm(string_value = "deleted")]
    Deleted,
}

/// Where a share's link is: waiting, emailed, handed out, or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum ShareState {
    /// Waiting for the file to be ready or for its email to go out.
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "emailed")]
    Emailed,
    /// No mail server is configured: the email waits in the data dir's outbox, unsent.
    #[sea_orm(string_value = "outbox")]
    Outbox,
    #[sea_orm(string_value = "email_failed")]
    EmailFailed,
    /// A link without a recipient, handed to the owner.
    #[sea_orm(string_value = "active")]
    Active,
    #[sea_orm(string_value = "revoked")]
    Revoked,
    #[sea_orm(string_value = "expired")]
    Expired,
    /// The file was rejected or deleted before the link went out.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl ShareState {
    /// The states in which a link works (until its expiry or download limit). `Pending` too:
    /// the link is in a sent email a moment before the job records it, and mail scanners
    /// follow links at once.
    pub const LIVE: [Self; 5] = [
        Self::Pending,
        Self::Emailed,
        Self::Outbox,
        Self::EmailFailed,
        Self::Active,
    ];

    pub fn is_live(self) -> bool {
        Self::LIVE.contains(&self)
    }
}

/// A master-key version's part: wrapping new keys, being rotated away, or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum KeyState {
    /// New data keys are wrapped under it.
    #[sea_orm(string_value = "active")]
    Active,
    /// Still unwraps the keys it wraps while a rotation moves them away.
    #[sea_orm(string_value = "retiring")]
    Retiring,
    /// Wraps nothing any more; it may be removed from the keyring.
    #[sea_orm(string_value = "retired")]
    Retired,
}

/// A key rotation runs until every key under older versions is rewrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum RotationState {
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "finished")]
    Finished,
}

/// What an account may do: its own files, or also the administration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Role {
    #[sea_orm(string_value = "user")]
    User,
    #[sea_orm(string_value = "admin")]
    Admin,
}

/// The stored word of each closed set, for logs, audit details and pages.
macro_rules! words {
    ($($ty:ty { $($variant:ident => $word:literal),+ $(,)? })+) => {$(
        impl $ty {
            /// The word stored in rows and shown in the API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }

            /// The variant a client or a row names, if any.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

words! {
    FileStatus {
        Quarantined => "quarantined",
        Validated => "validated",
        Ready => "ready",
        Rejected => "rejected",
        Deleted => "deleted",
    }
    ShareState {
        Pending => "pending",
        Emailed => "emailed",
        Outbox => "outbox",
        EmailFailed => "email_failed",
        Active => "active",
        Revoked => "revoked",
        Expired => "expired",
        Cancelled => "cancelled",
    }
    KeyState {
        Active => "active",
        Retiring => "retiring",
        Retired => "retired",
    }
    RotationState {
        Running => "running",
        Finished => "finished",
    }
    Role {
        User => "user",
        Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Iterable as _;

    /// The words the derive stores and the words `as_str` shows are one list, and none has
    /// changed since the first release: rows written then must still read.
    #[test]
    fn stored_words_are_the_shown_words_and_never_change() {
        fn check<E>(
            shown: impl Fn(E) -> &'static str,
            parse: impl Fn(&str) -> Option<E>,
            expected: &[&str],
        ) where
            E: sea_orm::ActiveEnum<Value = String> + Copy + PartialEq + std::fmt::Debug,
        {
            let stored: Vec<String> = E::iter().map(|v| v.to_value()).collect();
            assert_eq!(stored, expected);
            for v in E::iter() {
                assert_eq!(shown(v), v.to_value());
                assert_eq!(parse(shown(v)), Some(v));
            }
        }
        check(
            FileStatus::as_str,
            FileStatus::parse,
            &["quarantined", "validated", "ready", "rejected", "deleted"],
        );
        check(
            ShareState::as_str,
            ShareState::parse,
            &[
                "pending",
                "emailed",
                "outbox",
                "email_failed",
                "active",
                "revoked",
                "expired",
                "cancelled",
            ],
        );
        check(
            KeyState::as_str,
            KeyState::parse,
            &["active", "retiring", "retired"],
        );
        check(
            RotationState::as_str,
            RotationState::parse,
            &["running", "finished"],
        );
        check(Role::as_str, Role::parse, &["user", "admin"]);
        assert_eq!(FileStatus::iter().count(), 5);
        assert_eq!(FileStatus::try_from_value(&"bogus".to_owned()).ok(), None);
    }
}
