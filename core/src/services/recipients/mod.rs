//! Shares from the recipient's side: the landing page and the download, each audited against
//! the share.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, SelectFour, TopologyStar,
};
use secrecy::SecretString;
use uuid::Uuid;

use entity::{file, share, share_file, user};

mod download;
mod transfer;
mod verify;
mod zip;

use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::db::by_key;
use crate::types::{FileStatus, ShareState, Token};
use crate::{Core, ServiceError, password};
pub use download::{Delivered, Opened, Which, deliver, open};
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
    /// A file is not ready yet (409).
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
    /// The files the link opens, in the sender's order (one, unless it is a bundle); those
    /// deleted since are left out.
    pub files: Vec<LandingFile>,
    pub expires_at: DateTime<Utc>,
    pub password: bool,
    /// The sender's note, if any.
    pub message: Option<String>,
    /// Whether the recipient must prove their address, and how far they are.
    pub verification: Verification,
}

/// A file on the landing page.
#[derive(Debug)]
pub struct LandingFile {
    pub id: Uuid,
    pub name: String,
    pub size: u64,
    pub content_type: Option<String>,
    /// Complete downloads of the file the link still allows (those under way subtracted),
    /// when it has a limit.
    pub downloads_left: Option<i32>,
    pub ready: bool,
}

impl Landing {
    /// Whether every file can be downloaded now.
    pub fn ready(&self) -> bool {
        self.files.iter().all(|f| f.ready)
    }

    /// The files' sizes together.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A file of a share, with its downloads through the share.
#[derive(Debug, Clone)]
struct SharedFile {
    counts: share_file::Model,
    file: file::Model,
}

impl SharedFile {
    /// Deleted by its owner, or never accepted: the link no longer opens it.
    fn removed(&self) -> bool {
        matches!(self.file.status, FileStatus::Deleted | FileStatus::Rejected)
    }

    /// Whether every download of the file the share allows is complete or under way.
    fn used_up(&self, share: &share::Model) -> bool {
        share
            .max_downloads
            .is_some_and(|max| self.counts.downloads_used >= max)
    }
}

struct Resolved {
    share: share::Model,
    /// Every file of the share, in order, removed ones too.
    files: Vec<SharedFile>,
    /// The sender's address.
    sender: String,
}

/// What the link shares, in a few words: its file's name, or how many files it holds.
fn title(files: &[SharedFile]) -> String {
    let shared: Vec<&SharedFile> = files.iter().filter(|f| !f.removed()).collect();
    match shared.as_slice() {
        [one] => one.file.name.clone(),
        many => crate::text::t_with(
            "landing-files-title",
            [("count", crate::text::Arg::from(many.len()))],
        ),
    }
}

/// The files of `share`, in the order the recipient sees them.
async fn files_of(core: &Core, share: Uuid) -> Result<Vec<SharedFile>, sea_orm::DbErr> {
    Ok(share_file::Entity::find()
        .filter(share_file::Column::ShareId.eq(share))
        .find_also_related(file::Entity)
        .order_by_asc(share_file::Column::Position)
        .all(&core.db)
        .await?
        .into_iter()
        .filter_map(|(counts, file)| {
            Some(SharedFile {
                counts,
                file: file?,
            })
        })
        .collect())
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
    files: &[SharedFile],
    now: DateTime<Utc>,
) -> Option<&'static str> {
    match share.state {
        ShareState::Revoked => Some("revoked"),
        ShareState::Cancelled => Some("cancelled"),
        ShareState::Expired => Some("expired"),
        _ if share.expires_at <= now => Some("expired"),
        _ if files.iter().all(SharedFile::removed) => Some("file removed"),
        _ => None,
    }
}

/// Whether every download the share allows, of every file it still opens, is complete or
/// under way.
fn used_up(share: &share::Model, files: &[SharedFile]) -> bool {
    files
        .iter()
        .filter(|f| !f.removed())
        .all(|f| f.used_up(share))
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
    // The share, its sender and its files in one query (a row per file; no `LIMIT`: see
    // `db::by_key`): every download through a link starts here. On SQLite, in place (see
    // `db::in_place`).
    let hash = token.hash();
    let rows = match core.in_place.as_ref().and_then(|r| r.link(&hash)) {
        Some(rows) => rows,
        None => linked(core, hash).await?,
    };
    let Some((share, sender)) = rows.first().map(|(s, u, _, _)| (s.clone(), u.clone())) else {
        return Err(Refusal::Unknown);
    };
    let files: Vec<SharedFile> = rows
        .into_iter()
        .filter_map(|(_, _, counts, file)| {
            Some(SharedFile {
                counts: counts?,
                file: file?,
            })
        })
        .collect();
    let reason = gone_reason(&share, &files, Utc::now())
        .or_else(|| (!used_up_ok && used_up(&share, &files)).then_some("used up"));
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
        files,
        sender: sender.email,
    })
}

/// The query of the link whose token hashes to `hash`: its share, sender, and each file with
/// its counts, a row per file in the recipient's order. What [`resolve`] asks sea-orm when the
/// link is not read in place (and what `db::in_place`'s tests hold that reader to).
pub(crate) fn link_select(
    hash: Vec<u8>,
) -> SelectFour<share::Entity, user::Entity, share_file::Entity, file::Entity, TopologyStar> {
    share::Entity::find()
        .filter(share::Column::TokenHash.eq(hash))
        .find_also_related(user::Entity)
        .find_also(share::Entity, share_file::Entity)
        .find_also(share_file::Entity, file::Entity)
        .order_by_asc(share_file::Column::Position)
}

/// The rows of [`link_select`]: on PostgreSQL on a connection kept out of the pool (see
/// `db::kept`), else (or when none is free) through sea-orm.
async fn linked(
    core: &Core,
    hash: Vec<u8>,
) -> Result<Vec<crate::db::in_place::LinkRow>, sea_orm::DbErr> {
    let select = link_select(hash);
    if let Some(kept) = &core.kept {
        type Rows =
            sea_orm::SelectFourModel<share::Model, user::Model, share_file::Model, file::Model>;
        if let Some(rows) = kept.rows::<Rows>(&select).await {
            return rows;
        }
    }
    select.all(&core.db).await
}

/// The landing page again, for a retry (a password, a code): neither audited nor counted as a
/// view. `session` is the browser's verified session of the link, if it presents one.
pub async fn peek(core: &Core, raw_token: &str, session: Option<&str>) -> Option<Landing> {
    let token = Token::parse(raw_token)?;
    let by_token = share::Entity::find().filter(share::Column::TokenHash.eq(token.hash()));
    let share = by_key(by_token, &core.db).await.ok()??;
    let files = files_of(core, share.id).await.ok()?;
    let sender = by_key(user::Entity::find_by_id(share.owner_id), &core.db)
        .await
        .ok()?
        .filter(|u| !u.disabled)?;
    let verification = verify::state(core, &share, session).await.ok()?;
    let mut page = landing(sender.email, share, files);
    page.verification = verification;
    Some(page)
}

fn landing(sender: String, share: share::Model, files: Vec<SharedFile>) -> Landing {
    let files = files
        .into_iter()
        .filter(|f| !f.removed())
        .map(|SharedFile { counts, file }| LandingFile {
            id: file.id,
            name: file.name,
            size: u64::try_from(file.size).unwrap_or(0),
            content_type: file.content_type,
            downloads_left: share
                .max_downloads
                .map(|max| Ord::max(max - counts.downloads_used, 0)),
            ready: file.status == FileStatus::Ready,
        })
        .collect();
    Landing {
        sender,
        files,
        expires_at: share.expires_at,
        password: share.password_hash.is_some(),
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
        files,
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
    let mut page = landing(sender, share, files);
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
