//! A share's access report: every sealed audit event about it (created, emailed, each view,
//! refusal and download, revoked), read from the audit log itself, so it is as tamper-evident
//! as the log: each entry carries its sequence number and chain hash, which the log's
//! verification vouches for.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _,
};
use uuid::Uuid;

use entity::{audit_event, file, share, share_file};

use super::ShareView;
use crate::principal::{Scope, User};
use crate::services::audit::csv_line;
use crate::types::Role;
use crate::{Core, ServiceError, ServiceResult};

/// The most entries one page of the report holds.
pub const MOST_PER_PAGE: u64 = 1000;

/// One event of a share's report.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    /// The audit action (`share.viewed`, `share.downloaded`, …).
    pub action: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Who: `recipient` (whoever holds the link), `user`, `admin` or `system`.
    pub actor_kind: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The event's details as recorded (a refusal's `reason`, a download's `file_id`, repeated
    /// views' `repeated`, `from` and `to`, …).
    pub details: serde_json::Value,
    /// The event's chain hash, hex.
    pub hash: String,
}

impl From<audit_event::Model> for Entry {
    fn from(m: audit_event::Model) -> Self {
        Self {
            seq: m.seq.unwrap_or_default(),
            occurred_at: m.occurred_at,
            action: m.action,
            outcome: m.outcome,
            actor_kind: m.actor_kind,
            ip: m.ip,
            user_agent: m.user_agent,
            details: m.details,
            hash: m.hash.map(hex::encode).unwrap_or_default(),
        }
    }
}

/// One page of a share's report.
#[derive(Debug, Clone)]
pub struct Activity {
    pub share: ShareView,
    /// The share's owner (an admin may read another's report).
    pub owner_id: Uuid,
    /// The names of the share's files, in order, comma-separated.
    pub file_name: String,
    /// Oldest first, in chain order.
    pub events: Vec<Entry>,
    /// The `after_seq` of the next page; `None` on the last one.
    pub next: Option<i64>,
}

/// The share `share_id` if `by` may read its report: its owner, or an admin who may read the
/// audit log (any share). Anyone else learns nothing of it (404).
async fn readable(core: &Core, by: &User, share_id: Uuid) -> ServiceResult<share::Model> {
    by.require(Scope::FilesRead)?;
    let share = crate::db::by_key(share::Entity::find_by_id(share_id), &core.db)
        .await?
        .ok_or(ServiceError::NotFound("share"))?;
    if share.owner_id == by.id || (by.role == Role::Admin && by.require(Scope::AuditRead).is_ok()) {
        Ok(share)
    } else {
        Err(ServiceError::NotFound("share"))
    }
}

/// Sealed events about `share_id` after `after`, at most `limit` and one more (to know whether
/// another page follows). Two reads, each along its own index (`(target_id, seq)` and
/// `(actor_id, seq)`): the events whose target is the share, and those its recipient caused
/// (a share's id is the recipient's actor id). Merged by sequence number.
async fn events(
    db: &impl ConnectionTrait,
    share_id: Uuid,
    after: i64,
    limit: u64,
) -> Result<Vec<audit_event::Model>, sea_orm::DbErr> {
    use audit_event::Column;
    let id = share_id.to_string();
    let read = |column: Column| {
        audit_event::Entity::find()
            .filter(column.eq(id.as_str()))
            .filter(Column::Seq.gt(after))
            .order_by_asc(Column::Seq)
            .limit(limit + 1)
            .all(db)
    };
    let (about, by_recipient) = futures::try_join!(read(Column::TargetId), read(Column::ActorId))?;
    let mut rows: Vec<_> = about.into_iter().chain(by_recipient).collect();
    rows.sort_by_key(|r| r.seq);
    rows.dedup_by_key(|r| r.seq);
    rows.truncate(usize::try_from(limit + 1).unwrap_or(usize::MAX));
    Ok(rows)
}

/// A page of the report of `share_id`: up to `limit` events (at most [`MOST_PER_PAGE`]) after
/// sequence number `after_seq`.
pub async fn activity(
    core: &Core,
    by: &User,
    share_id: Uuid,
    after_seq: Option<i64>,
    limit: u64,
) -> ServiceResult<Activity> {
    let share = readable(core, by, share_id).await?;
    let file_name = share_file::Entity::find()
        .filter(share_file::Column::ShareId.eq(share_id))
        .find_also_related(file::Entity)
        .order_by_asc(share_file::Column::Position)
        .all(&core.db)
        .await?
        .into_iter()
        .filter_map(|(_, file)| file.map(|f| f.name))
        .collect::<Vec<_>>()
        .join(", ");
    let limit = limit.clamp(1, MOST_PER_PAGE);
    let mut rows = events(&core.db, share_id, after_seq.unwrap_or(0), limit).await?;
    // The share as it is now, read after its events: its counts are never behind the events
    // shown (a download's end commits its event and its count together).
    let share = crate::db::by_key(share::Entity::find_by_id(share_id), &core.db)
        .await?
        .unwrap_or(share);
    let next = if rows.len() as u64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last().and_then(|r| r.seq)
    } else {
        None
    };
    Ok(Activity {
        owner_id: share.owner_id,
        share: super::view(core, &core.db, share).await?,
        file_name,
        events: rows.into_iter().map(Entry::from).collect(),
        next,
    })
}

const CSV_HEADER: &str = "seq,occurred_at,action,outcome,actor,ip,user_agent,details,hash\n";

fn csv_row(entry: &Entry) -> String {
    csv_line(&[
        entry.seq.to_string(),
        entry
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        entry.action.clone(),
        entry.outcome.clone(),
        entry.actor_kind.clone(),
        entry.ip.clone().unwrap_or_default(),
        entry.user_agent.clone().unwrap_or_default(),
        entry.details.to_string(),
        entry.hash.clone(),
    ])
}

/// The whole report of `share_id` as CSV, streamed page by page (memory stays flat however
/// busy the link was). Who may read it is checked before the first byte.
pub async fn export_csv(
    core: &Core,
    by: &User,
    share_id: Uuid,
) -> ServiceResult<futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>> {
    use futures::StreamExt as _;
    readable(core, by, share_id).await?;
    let db = core.db.clone();
    let header =
        futures::stream::once(async { Ok(bytes::Bytes::from_static(CSV_HEADER.as_bytes())) });
    let pages = futures::stream::try_unfold(Some(0i64), move |cursor| {
        let db = db.clone();
        async move {
            let Some(after) = cursor else {
                return Ok(None);
            };
            let mut rows = events(&db, share_id, after, MOST_PER_PAGE)
                .await
                .map_err(std::io::Error::other)?;
            if rows.is_empty() {
                return Ok(None);
            }
            let more = rows.len() as u64 > MOST_PER_PAGE;
            rows.truncate(usize::try_from(MOST_PER_PAGE).unwrap_or(usize::MAX));
            let next = more.then(|| rows.last().and_then(|r| r.seq)).flatten();
            let chunk: String = rows.into_iter().map(|r| csv_row(&Entry::from(r))).collect();
            Ok(Some((bytes::Bytes::from(chunk), next)))
        }
    });
    Ok(header.chain(pages).boxed())
}
