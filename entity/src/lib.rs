//! sea-orm entities: table shapes, and the closed sets their rows hold. No logic.

pub mod api_token;
pub mod audit_checkpoint;
pub mod audit_event;
pub mod audit_key;
pub mod download_receipt;
pub mod email_verification;
pub mod file;
pub mod invite;
pub mod key_check;
pub mod key_rotation;
pub mod key_version;
pub mod kms_wrapped_key;
pub mod login_challenge;
pub mod mfa_recovery_code;
pub mod mfa_totp;
pub mod oidc_identity;
pub mod oidc_login;
pub mod password_reset;
pub mod receipt_preference;
pub mod recipient_verification;
pub mod session;
pub mod setting;
pub mod share;
pub mod share_file;
pub mod states;
pub mod user;

pub use states::{FileStatus, KeyState, Role, RotationState, ShareState};
