//! Shares from the recipient's side: the landing page and the download, each audited against
//! the share.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use secrecy::SecretString;
use uuid::Uuid;

use entity::{file, share, user};

mod download;
mod verify;

use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::db::by_key;
use crate::types::{FileStatus, ShareState, Token};
use crate::{Core, ServiceError, password};
pub use download::{Opened, deliver, open};
pub use verify::{CODE_TTL, Verification, Verified, check_code, forget_expired, send_code};

const PASSWORD_WINDOW: Duration = Duration::from_secs(15 * 60);
const PASSWORD_FAILURES_PER_SHARE: u32 = 5;
const PASSWORD_FAILURES_PER_ADDRESS: u32 = 20;

/// Why a recipient gets no file.
#[derive(Debug)]
pub enum Refusal {
    /// No such link (404).
    Unknown,
    /// The link existed but no longer works (410), and why.
    Gone(&'static str),
    /// The file is not ready yet (409).
    NotReady,
    /// Every download the link allows is under way or complete, and one under way may still
    /// stop short and give its place back (409).
    InProgress,
    PasswordRequired,
    WrongPassword,
    /// The link needs its recipient to prove their address first (403).
    VerificationRequired,
    /// The code typed is wrong or, with `expired`, no code is waiting (expired, used, or
    /// never sent) (403).
    WrongCode {
        expired: bool,
    },
    RateLimited(Duration),
    Error(ServiceError),
}

impl<E: Into<ServiceError>> From<E> for Refusal {
    fn from(err: E) -> Self {
        Self::Error(err.into())
    }
}

/// What the landing page shows.
#[derive(Debug)]
pub struct Landing {
    pub sender: String,
    pub file_name: String,
    pub size: u64,
    pub expires_at: DateTime<Utc>,
    pub downloads_left: Option<i32>,
    pub password: bool,
    pub ready: bool,
    /// The sender's note, if any.
    pub message: Option<String>,
    /// Whether the recipient must prove their address, and how far they are.
    pub verification: Verification,
}

struct Resolved {
    share: share::Model,
    file: file::Model,
    /// The sender's address.
    sender: String,
}

async fn deny(
    core: &Core,
    share_id: Uuid,
    reason: &str,
    meta: &RequestMeta,
) -> Result<(), ServiceError> {
    core.audit
        .record_repeatable(
            format!("share.denied:{share_id}"),
            Event::new(Action::ShareDenied, Actor::Recipient(share_id))
                .target("share", share_id)
                .outcome(Outcome::Denied)
                .details(serde_json::json!({ "reason": reason }))
                .from(meta),
        )
        .await?;
    Ok(())
}

/// Why a share no longer works, if it does not.
fn gone_reason(
    share: &share::Model,
    file: &file::Model,
    now: DateTime<Utc>,
) -> Option<&'static str> {
    match share.state {
        ShareState::Revoked => Some("revoked"),
        ShareState::Cancelled => Some("cancelled"),
        ShareState::Expired => Some("expired"),
        _ if share.expires_at <= now => Some("expired"),
        _ if file.status == FileStatus::Deleted || file.status == FileStatus::Rejected => {
            Some("file removed")
        }
        _ => None,
    }
}

/// Whether every download the share allows is complete or under way.
fn used_up(share: &share::Model) -> bool {
    share
        .max_downloads
        .is_some_and(|max| share.downloads_used >= max)
}

/// The link of `raw_token` while it works. A used-up link is refused too, unless `used_up_ok`
/// (a download decides that itself: a resumed download may continue on one).
async fn resolve(
    core: &Core,
    raw_token: &str,
    meta: &RequestMeta,
    used_up_ok: bool,
) -> Result<Resolved, Refusal> {
    let token = Token::parse(raw_token).ok_or(Refusal::Unknown)?;
    // The share, its file and its sender in one query (no `LIMIT`: see `db::by_key`).
    let found = share::Entity::find()
        .filter(share::Column::TokenHash.eq(token.hash()))
        .find_also_related(file::Entity)
        .find_also_related(user::Entity)
        .all(&core.db)
        .await?
        .into_iter()
        .next();
    let Some((share, Some(file), sender)) = found else {
        return Err(Refusal::Unknown);
    };
    let reason = gone_reason(&share, &file, Utc::now())
        .or_else(|| (!used_up_ok && used_up(&share)).then_some("used up"));
    if let Some(reason) = reason {
        deny(core, share.id, reason, meta).await?;
        return Err(Refusal::Gone(reason));
    }
    // A disabled sender's links stop working (and work again if the account is re-enabled).
    let Some(sender) = sender.filter(|u| !u.disabled) else {
        deny(core, share.id, "sender disabled", meta).await?;
        return Err(Refusal::Gone("revoked"));
    };
    Ok(Resolved {
        share,
        file,
        sender: sender.email,
    })
}

/// The landing page again, for a retry (a password, a code): neither audited nor counted as a
/// view. `session` is the browser's verified session of the link, if it presents one.
pub async fn peek(core: &Core, raw_token: &str, session: Option<&str>) -> Option<Landing> {
    let token = Token::parse(raw_token)?;
    let by_token = share::Entity::find().filter(share::Column::TokenHash.eq(token.hash()));
    let share = by_key(by_token, &core.db).await.ok()??;
    let file = by_key(file::Entity::find_by_id(share.file_id), &core.db)
        .await
        .ok()??;
    let sender = by_key(user::Entity::find_by_id(share.owner_id), &core.db)
        .await
        .ok()?
        .filter(|u| !u.disabled)?;
    let verification = verify::state(core, &share, session).await.ok()?;
    let mut page = landing(sender.email, share, file);
    page.verification = verification;
    Some(page)
}

fn landing(sender: String, share: share::Model, file: file::Model) -> Landing {
    Landing {
        sender,
        file_name: file.name,
        size: u64::try_from(file.size).unwrap_or(0),
        expires_at: share.expires_at,
        downloads_left: share
            .max_downloads
            .map(|max| Ord::max(max - share.downloads_used, 0)),
        password: share.password_hash.is_some(),
        ready: file.status == FileStatus::Ready,
        message: share.message,
        verification: Verification::NotNeeded,
    }
}

/// The landing page of a link; the view is audited. `session` is the browser's verified
/// session of the link, if it presents one.
pub async fn view(
    core: &Core,
    raw_token: &str,
    session: Option<&str>,
    meta: &RequestMeta,
) -> Result<Landing, Refusal> {
    let Resolved {
        share,
        file,
        sender,
    } = resolve(core, raw_token, meta, false).await?;
    core.audit
        .record_repeatable(
            format!("share.viewed:{}", share.id),
            Event::new(Action::ShareViewed, Actor::Recipient(share.id))
                .target("share", share.id)
                .from(meta),
        )
        .await?;
    let verification = verify::state(core, &share, session).await?;
    let mut page = landing(sender, share, file);
    page.verification = verification;
    Ok(page)
}

async fn check_password(
    core: &Core,
    share: &share::Model,
    given: Option<SecretString>,
    meta: &RequestMeta,
) -> Result<(), Refusal> {
    let Some(stored) = share.password_hash.clone() else {
        return Ok(());
    };
    let share_key = format!("share-pw:share:{}", share.id);
    let ip_key = format!("share-pw:ip:{}", meta.ip.as_deref().unwrap_or("unknown"));
    let Some(given) = given else {
        return Err(Refusal::PasswordRequired);
    };
    // Each attempt takes a unit first (so a burst cannot outrun the limit); a failure keeps it.
    let budgets = [
        (share_key.as_str(), PASSWORD_FAILURES_PER_SHARE),
        (ip_key.as_str(), PASSWORD_FAILURES_PER_ADDRESS),
    ];
    if let Some(wait) = core
        .limiter
        .take_all(&budgets, PASSWORD_WINDOW)
        .await
        .map_err(ServiceError::from)?
    {
        deny(core, share.id, "password attempts rate-limited", meta).await?;
        return Err(Refusal::RateLimited(wait));
    }
    if password::verify(given, stored)
        .await
        .map_err(ServiceError::from)?
    {
        for (key, _) in budgets {
            core.limiter
                .give_back(key)
                .await
                .map_err(ServiceError::from)?;
        }
        return Ok(());
    }
    deny(core, share.id, "wrong password", meta).await?;
    Err(Refusal::WrongPassword)
}
