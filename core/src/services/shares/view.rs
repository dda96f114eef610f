//! What an owner sees of a share: its state, limits and each file's downloads.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QueryOrder as _,
};
use uuid::Uuid;

use entity::{share, share_file};

use crate::Core;
use crate::types::ShareState;

/// What an owner sees of a share.
#[derive(Debug, Clone)]
pub struct ShareView {
    pub id: Uuid,
    /// The share's first file (its only one, unless it is a bundle).
    pub file_id: Uuid,
    /// Every file of the share, in the order the recipient sees them, with its downloads.
    pub files: Vec<SharedFileView>,
    pub recipient: Option<String>,
    /// Only in the response that created a share without recipient.
    pub url: Option<String>,
    pub state: ShareState,
    pub expires_at: DateTime<Utc>,
    /// Complete downloads each file allows.
    pub max_downloads: Option<i32>,
    /// Complete downloads, and those under way, of the file with fewest (of the only file,
    /// unless the share is a bundle).
    pub downloads_used: i32,
    /// Downloads that delivered the file to its last byte, of the file with fewest: how many
    /// times the recipient received every file.
    pub downloads_completed: i32,
    pub password: bool,
    /// Whether the recipient must prove their address before the download (the share's
    /// choice, or `COFFER_REQUIRE_RECIPIENT_VERIFICATION`).
    pub verify_recipient: bool,
    /// Whether the owner is emailed when a recipient completes a download.
    pub receipts: bool,
    pub created_at: DateTime<Utc>,
    pub emailed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// A file of a share, with its downloads through the share.
#[derive(Debug, Clone)]
pub struct SharedFileView {
    pub file_id: Uuid,
    /// Complete downloads of the file, and those under way.
    pub downloads_used: i32,
    /// Downloads that delivered the file to its last byte.
    pub downloads_completed: i32,
}

impl From<share_file::Model> for SharedFileView {
    fn from(m: share_file::Model) -> Self {
        Self {
            file_id: m.file_id,
            downloads_used: m.downloads_used,
            downloads_completed: m.downloads_completed,
        }
    }
}

/// The files of each of `shares` (one query), in order.
async fn files_of(
    db: &impl ConnectionTrait,
    shares: &[share::Model],
) -> Result<std::collections::HashMap<Uuid, Vec<share_file::Model>>, sea_orm::DbErr> {
    let mut by_share: std::collections::HashMap<Uuid, Vec<share_file::Model>> =
        std::collections::HashMap::new();
    if shares.is_empty() {
        return Ok(by_share);
    }
    for row in share_file::Entity::find()
        .filter(share_file::Column::ShareId.is_in(shares.iter().map(|s| s.id)))
        .order_by_asc(share_file::Column::ShareId)
        .order_by_asc(share_file::Column::Position)
        .all(db)
        .await?
    {
        by_share.entry(row.share_id).or_default().push(row);
    }
    Ok(by_share)
}

/// What owners see of `shares`, with their files.
pub(super) async fn views(
    core: &Core,
    db: &impl ConnectionTrait,
    shares: Vec<share::Model>,
) -> Result<Vec<ShareView>, sea_orm::DbErr> {
    let mut files = files_of(db, &shares).await?;
    let now = Utc::now();
    Ok(shares
        .into_iter()
        .map(|m| {
            let of_share = files.remove(&m.id).unwrap_or_default();
            ShareView::from_model(core, m, of_share, None, now)
        })
        .collect())
}

/// What its owner sees of one share.
pub(super) async fn view(
    core: &Core,
    db: &impl ConnectionTrait,
    share: share::Model,
) -> Result<ShareView, sea_orm::DbErr> {
    let mut all = views(core, db, vec![share]).await?;
    Ok(all.remove(0))
}

impl ShareView {
    pub(super) fn from_model(
        core: &Core,
        m: share::Model,
        files: Vec<share_file::Model>,
        url: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        // A live share past its expiry reads as expired even before the sweep marks it.
        let state = if m.state.is_live() && m.expires_at <= now {
            ShareState::Expired
        } else {
            m.state
        };
        let fewest = |count: fn(&share_file::Model) -> i32| files.iter().map(count).min();
        Self {
            id: m.id,
            file_id: m.file_id,
            downloads_used: fewest(|f| f.downloads_used).unwrap_or(0),
            downloads_completed: fewest(|f| f.downloads_completed).unwrap_or(0),
            files: files.into_iter().map(SharedFileView::from).collect(),
            recipient: m.recipient,
            url,
            state,
            expires_at: m.expires_at,
            max_downloads: m.max_downloads,
            password: m.password_hash.is_some(),
            verify_recipient: m.verify_recipient || core.config.require_recipient_verification,
            receipts: m.receipts,
            created_at: m.created_at,
            emailed_at: m.emailed_at,
            last_error: m.last_error,
        }
    }
}
