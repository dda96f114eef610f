//! Shares waiting for their files: whether a share's email can go out (every file it still
//! shares is ready), queueing it when a file becomes ready, and cancelling it when none of its
//! files ever will be.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QueryOrder as _,
};
use uuid::Uuid;

use entity::{file, share, share_file};

use super::SendShareEmail;
use crate::Core;
use crate::audit::{Action, Actor, AuditWriter, Event, Outcome};
use crate::types::{FileStatus, ShareState};

/// Whether a share's email can go out: its files, as far as they are still shared.
pub(super) enum Readiness {
    /// Every file not removed is ready (at least one is): these.
    Ready(Vec<file::Model>),
    /// A file is still being checked or encrypted.
    Waiting,
    /// Every file was rejected or deleted; the first one's reason.
    Gone(String),
}

/// Deleted by its owner, or never accepted.
fn removed(file: &file::Model) -> bool {
    matches!(file.status, FileStatus::Rejected | FileStatus::Deleted)
}

pub(super) async fn readiness(
    db: &impl ConnectionTrait,
    share_id: Uuid,
) -> Result<Readiness, sea_orm::DbErr> {
    let files: Vec<file::Model> = share_file::Entity::find()
        .filter(share_file::Column::ShareId.eq(share_id))
        .find_also_related(file::Entity)
        .order_by_asc(share_file::Column::Position)
        .all(db)
        .await?
        .into_iter()
        .filter_map(|(_, file)| file)
        .collect();
    if let Some(first) = files.first()
        && files.iter().all(removed)
    {
        return Ok(Readiness::Gone(
            first
                .reject_reason
                .clone()
                .unwrap_or_else(|| "the file was deleted".to_owned()),
        ));
    }
    let live: Vec<file::Model> = files.into_iter().filter(|f| !removed(f)).collect();
    if live.is_empty() || live.iter().any(|f| f.status != FileStatus::Ready) {
        return Ok(Readiness::Waiting);
    }
    Ok(Readiness::Ready(live))
}

/// The ids of the shares that include `file_id`.
async fn shares_of_file(
    db: &impl ConnectionTrait,
    file_id: Uuid,
) -> Result<Vec<Uuid>, sea_orm::DbErr> {
    Ok(share_file::Entity::find()
        .filter(share_file::Column::FileId.eq(file_id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| row.share_id)
        .collect())
}

/// Enqueues the email of every pending share of a file (called when it becomes ready, or
/// leaves a bundle whose other files are): each goes out once all its files are ready.
pub async fn enqueue_pending(core: &Core, file_id: Uuid) {
    let shares = match shares_of_file(&core.db, file_id).await {
        Ok(shares) => shares,
        Err(err) => {
            tracing::warn!(%file_id, error = %err, "could not list pending shares; the sweep will retry");
            return;
        }
    };
    let pending = share::Entity::find()
        .filter(share::Column::Id.is_in(shares))
        .filter(share::Column::State.eq(ShareState::Pending))
        .filter(share::Column::Recipient.is_not_null())
        .all(&core.db)
        .await;
    match pending {
        Ok(rows) => {
            for row in rows {
                if let Err(err) = core.queue.enqueue(SendShareEmail::new(row.id)).await {
                    tracing::warn!(share_id = %row.id, error = %format!("{err:#}"), "could not enqueue a share email; the sweep will retry");
                }
            }
        }
        Err(err) => {
            tracing::warn!(%file_id, error = %err, "could not list pending shares; the sweep will retry")
        }
    }
}

/// Cancels the pending shares of a file that will never be ready, inside the caller's
/// transaction, recording why. A bundle with other files still shared is not cancelled: it
/// goes out without this one once they are ready ([`enqueue_pending`] after the commit).
pub async fn cancel_pending(
    txn: &impl ConnectionTrait,
    audit: &AuditWriter,
    file_id: Uuid,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    let why = format!("file not shareable: {reason}");
    let mut doomed = Vec::new();
    for share_id in shares_of_file(txn, file_id).await? {
        let others_shared = share_file::Entity::find()
            .filter(share_file::Column::ShareId.eq(share_id))
            .filter(share_file::Column::FileId.ne(file_id))
            .find_also_related(file::Entity)
            .all(txn)
            .await?
            .into_iter()
            .any(|(_, file)| file.is_some_and(|f| !removed(&f)));
        if !others_shared {
            doomed.push(share_id);
        }
    }
    if doomed.is_empty() {
        return Ok(());
    }
    cancel_where(txn, audit, share::Column::Id.is_in(doomed), reason, &why).await
}

/// Cancels every pending share email of `owner` (whose account was just disabled): none of them
/// goes out.
pub async fn cancel_pending_of_owner(
    txn: &impl ConnectionTrait,
    audit: &AuditWriter,
    owner: Uuid,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    cancel_where(txn, audit, share::Column::OwnerId.eq(owner), reason, reason).await
}

/// Cancels the pending shares that `which` selects, each audited as `share.email_failed` with
/// `audited` as its reason (`reason` is what the owner reads on the share).
pub(super) async fn cancel_where(
    txn: &impl ConnectionTrait,
    audit: &AuditWriter,
    which: sea_orm::sea_query::SimpleExpr,
    reason: &str,
    audited: &str,
) -> Result<(), sea_orm::DbErr> {
    let pending = share::Entity::find()
        .filter(which)
        .filter(share::Column::State.eq(ShareState::Pending))
        .all(txn)
        .await?;
    for row in pending {
        share::Entity::update_many()
            .col_expr(share::Column::State, Expr::value(ShareState::Cancelled))
            .col_expr(share::Column::LastError, Expr::value(reason))
            .filter(share::Column::Id.eq(row.id))
            .filter(share::Column::State.eq(ShareState::Pending))
            .exec(txn)
            .await?;
        Event::new(Action::ShareEmailFailed, Actor::System)
            .target("share", row.id)
            .outcome(Outcome::Failure)
            .details(serde_json::json!({ "reason": audited, "file_id": row.file_id }))
            .record(txn, audit)
            .await?;
    }
    Ok(())
}
