//! Proof that whoever opened a link holds the address it was sent to. On a POST from the
//! landing page (never on a GET: mail scanners open links) a six-digit code is emailed to the
//! share's recipient; typed back in time, it gives that browser a verified session of the link
//! for `COFFER_RECIPIENT_VERIFICATION_TTL`. A code, not a link, so that a scanner opening what
//! the email holds uses nothing up. Codes are short-lived, single-use, rate-limited and compared
//! in constant time; only their SHA-256 (and the session's) is kept.

mod code;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use entity::{recipient_verification as verification, share};

use super::Refusal;
use crate::audit::RequestMeta;
use crate::types::Token;
use crate::{Core, ServiceError};

pub use code::{CODE_TTL, check_code, send_code};

/// Wrong codes one code survives.
const CODE_FAILURES: i32 = 5;

const CODE: &str = "code";
const SESSION: &str = "session";

/// Where a link's recipient stands with verification, as the landing page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The link asks for none.
    NotNeeded,
    /// This browser proved the address.
    Verified,
    /// A code must be asked for and typed in. `to` shows the address it goes to, masked
    /// (`None`: the link was sent to nobody, so it cannot be verified and opens nothing);
    /// `code_sent` when a code is waiting to be typed in.
    Needed { to: Option<String>, code_sent: bool },
}

/// A browser's verified session of a link: the cookie's value, shown this once.
pub struct Verified {
    pub secret: Token,
    /// How long it lasts.
    pub lasts: Duration,
}

/// Whether `share` asks its recipient to verify: the share's choice, or the admin's policy.
pub(super) fn required(core: &Core, share: &share::Model) -> bool {
    share.verify_recipient || core.config.require_recipient_verification
}

/// `share`'s verification state for a browser presenting `session` (its cookie).
pub(super) async fn state(
    core: &Core,
    share: &share::Model,
    session: Option<&str>,
) -> Result<Verification, ServiceError> {
    if !required(core, share) {
        return Ok(Verification::NotNeeded);
    }
    if is_verified(core, share.id, session).await? {
        return Ok(Verification::Verified);
    }
    let code_sent = verification::Entity::find()
        .filter(live(share.id, CODE))
        .one(&core.db)
        .await?
        .is_some();
    Ok(Verification::Needed {
        to: share.recipient.as_deref().map(masked),
        code_sent,
    })
}

/// Whether `session` is a live verified session of share `share_id`.
async fn is_verified(
    core: &Core,
    share_id: Uuid,
    session: Option<&str>,
) -> Result<bool, ServiceError> {
    let Some(token) = session.and_then(Token::parse) else {
        return Ok(false);
    };
    // The lookup is by the hash of a 256-bit secret: its timing tells nothing about it.
    Ok(verification::Entity::find()
        .filter(live(share_id, SESSION))
        .filter(verification::Column::SecretHash.eq(token.hash()))
        .one(&core.db)
        .await?
        .is_some())
}

pub(super) fn live(share_id: Uuid, kind: &str) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(verification::Column::ShareId.eq(share_id))
        .add(verification::Column::Kind.eq(kind))
        .add(verification::Column::ExpiresAt.gt(Utc::now()))
        .add(verification::Column::Failures.lt(CODE_FAILURES))
}

/// The refusal of a download by a browser that has not verified, when the share needs it.
pub(super) async fn require(
    core: &Core,
    share: &share::Model,
    session: Option<&str>,
    meta: &RequestMeta,
) -> Result<(), Refusal> {
    if !required(core, share) || is_verified(core, share.id, session).await? {
        return Ok(());
    }
    super::deny(core, share.id, "not verified", meta).await?;
    Err(Refusal::VerificationRequired)
}

/// `b•••@example.org` for `bob@example.org`: enough for the recipient to recognise, little for
/// whoever the link was forwarded to.
pub(super) fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None => "•••".to_owned(),
    }
}

/// When a session verified at `now` ends: `COFFER_RECIPIENT_VERIFICATION_TTL` later, or when the
/// link expires if that is sooner.
pub(super) fn session_end(core: &Core, share: &share::Model, now: DateTime<Utc>) -> DateTime<Utc> {
    let ttl = chrono::Duration::from_std(core.config.recipient_verification_ttl)
        .unwrap_or(chrono::Duration::hours(12));
    Ord::min(now + ttl, share.expires_at)
}

/// Removes codes and sessions that have expired (the sweep's part for verification).
pub async fn forget_expired(core: &Core) -> Result<(), crate::JobError> {
    let _gate = core.write_gate.enter().await;
    verification::Entity::delete_many()
        .filter(verification::Column::ExpiresAt.lte(Utc::now()))
        .exec(&core.db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_first_letter_and_the_domain() {
        assert_eq!(masked("bob@example.org"), "b•••@example.org");
        assert_eq!(masked("nobody"), "•••");
    }
}
