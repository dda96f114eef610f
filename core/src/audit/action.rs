//! Every action the audit log records. The word of each is stored in its row and covered by the
//! row's MAC and the chain's hash: a word is never changed once written (rows already sealed
//! would stop verifying), and a new action is a new word.

macro_rules! actions {
    ($($(#[doc = $doc:literal])* $variant:ident => $word:literal,)+) => {
        /// What an audit event records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[doc = $doc])* $variant,)+
        }

        impl Action {
            /// Every action, in the order README's list gives them.
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            /// The word stored in the row.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)+
                }
            }

            /// The action a stored word names, if it is one this version writes.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

actions! {
    AdminSettingsChanged => "admin.settings_changed",
    AdminUserChanged => "admin.user_changed",
    AuditCheckpoint => "audit.checkpoint",
    AuditExported => "audit.exported",
    AuthRateLimited => "auth.rate_limited",
    FileDeleted => "file.deleted",
    FileDownloaded => "file.downloaded",
    FileEncrypted => "file.encrypted",
    FileIntegrityFailed => "file.integrity_failed",
    FileRejected => "file.rejected",
    FileUploaded => "file.uploaded",
    FileValidated => "file.validated",
    KeyAuditKeyAdded => "key.audit_key_added",
    KeyKmsRewrapped => "key.kms_rewrapped",
    KeyMigrated => "key.migrated",
    KeyRetired => "key.retired",
    KeyRewrapped => "key.rewrapped",
    KeyRotationStarted => "key.rotation_started",
    ShareChanged => "share.changed",
    ShareCreated => "share.created",
    ShareDenied => "share.denied",
    ShareDownloadStarted => "share.download_started",
    ShareDownloaded => "share.downloaded",
    ShareEmailFailed => "share.email_failed",
    ShareEmailed => "share.emailed",
    ShareRevoked => "share.revoked",
    ShareVerificationFailed => "share.verification_failed",
    ShareVerificationSent => "share.verification_sent",
    ShareVerified => "share.verified",
    ShareViewed => "share.viewed",
    ShareWrittenToOutbox => "share.written_to_outbox",
    TokenCreated => "token.created",
    TokenRevoked => "token.revoked",
    UserEmailVerified => "user.email_verified",
    UserInvited => "user.invited",
    UserLogin => "user.login",
    UserLoginFailed => "user.login_failed",
    UserLoginRateLimited => "user.login_rate_limited",
    UserLogout => "user.logout",
    UserMfaEnrolled => "user.mfa_enrolled",
    UserMfaFailed => "user.mfa_failed",
    UserMfaReset => "user.mfa_reset",
    UserOidcLinked => "user.oidc_linked",
    UserPasswordChangeFailed => "user.password_change_failed",
    UserPasswordChanged => "user.password_changed",
    UserPasswordResetRequested => "user.password_reset_requested",
    UserSignup => "user.signup",
    UserSignupExisting => "user.signup_existing",
    UserSignupRateLimited => "user.signup_rate_limited",
    UserSignupRefused => "user.signup_refused",
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Action;

    /// README's list of actions is the code's, in the same order, and every word parses back.
    #[test]
    fn readme_lists_every_action() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("**What it records.**")
            .expect("README has the list of audit actions");
        let paragraph = &readme[start
            ..readme[start..]
                .find("\n\n")
                .map_or(readme.len(), |e| start + e)];
        let listed: Vec<&str> = paragraph.split('`').skip(1).step_by(2).collect();
        let code: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(listed, code);
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(*action));
        }
    }
}
