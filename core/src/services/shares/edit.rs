//! Changing a share after it went out: its expiry, its download limit, its password, whether
//! its recipient must verify, whether it sends receipts, more files for its bundle; and
//! sending a recipient a fresh link (the old one stops working). Each change is audited as
//! `share.changed` with the old and new values (a password only as whether there is one).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QueryOrder as _,
};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use entity::{file, share, share_file};

use super::request::{download_limit, expiry, link_password, verification};
use super::{ShareView, spend_email_budget};
use crate::audit::{Action, Event, RequestMeta};
use crate::jobs::notify::SendShareEmail;
use crate::principal::{Scope, User};
use crate::text::{Arg, t, t_with};
use crate::types::{FileStatus, ShareState};
use crate::{Core, ServiceError, ServiceResult, password};

/// What an owner asks to change; `None` leaves a thing as it is.
#[derive(Debug, Default, Clone)]
pub struct ShareEdit {
    /// A new expiry, as an absolute time…
    pub expires_at: Option<DateTime<Utc>>,
    /// …or as hours from now (not both), within `COFFER_SHARE_MAX_TTL` from now.
    pub expires_in_hours: Option<i64>,
    /// `Some(None)` removes the limit.
    pub max_downloads: Option<Option<i64>>,
    /// `Some(None)` (or an empty password) removes the password.
    pub password: Option<Option<SecretString>>,
    /// Whether the recipient must prove their address before the download.
    pub verify_recipient: Option<bool>,
    /// Whether the owner is emailed when a recipient completes a download.
    pub receipts: Option<bool>,
    /// Files of the owner's to add to the share (making it a bundle, or a bigger one), after
    /// those it has; one it has already is left as it is.
    pub add_files: Vec<Uuid>,
}

/// The share `share_id` of `owner`, in `txn`, if it still works: a link that has ended
/// (revoked, expired, cancelled) is not brought back by a change; the file is shared anew.
async fn live_share(
    txn: &impl ConnectionTrait,
    owner: &User,
    share_id: Uuid,
) -> ServiceResult<share::Model> {
    let row = share::Entity::find_by_id(share_id)
        .filter(share::Column::OwnerId.eq(owner.id))
        .one(txn)
        .await?
        .ok_or(ServiceError::NotFound("share"))?;
    if !row.state.is_live() || row.expires_at <= Utc::now() {
        return Err(ServiceError::Conflict(t("share-error-ended")));
    }
    Ok(row)
}

fn change(old: impl Into<Value>, new: impl Into<Value>) -> Value {
    json!({ "old": old.into(), "new": new.into() })
}

/// Changes a live share of `owner`'s; answers it as it is now.
pub async fn edit(
    core: &Core,
    owner: &User,
    share_id: Uuid,
    edit: ShareEdit,
    meta: &RequestMeta,
) -> ServiceResult<ShareView> {
    owner.require(Scope::SharesWrite)?;
    let now = Utc::now();
    let expires_at = expiry(
        edit.expires_at,
        edit.expires_in_hours,
        core.config.share_max_ttl,
        now,
    )?;
    let max_downloads = match edit.max_downloads {
        Some(Some(n)) => Some(Some(download_limit(n)?)),
        Some(None) => Some(None),
        None => None,
    };
    let password = match edit.password.map(|p| p.map(link_password).transpose()) {
        Some(checked) => Some(checked?.flatten()),
        None => None,
    };
    if expires_at.is_none()
        && max_downloads.is_none()
        && password.is_none()
        && edit.verify_recipient.is_none()
        && edit.receipts.is_none()
        && edit.add_files.is_empty()
    {
        return Err(ServiceError::Invalid(t("share-error-nothing-to-change")));
    }
    // Hashing takes a while: before the transaction.
    let password_hash = match password {
        Some(Some(p)) => Some(Some(password::hash(p).await?)),
        Some(None) => Some(None),
        None => None,
    };

    let txn = crate::db::begin_write(&core.db).await?;
    let mut row = live_share(&txn, owner, share_id).await?;
    let mut changes = Map::new();
    let mut update = share::Entity::update_many().filter(share::Column::Id.eq(share_id));
    if let Some(at) = expires_at.filter(|at| *at != row.expires_at) {
        changes.insert(
            "expires_at".into(),
            change(row.expires_at.to_rfc3339(), at.to_rfc3339()),
        );
        update = update.col_expr(share::Column::ExpiresAt, Expr::value(at));
        row.expires_at = at;
    }
    if let Some(max) = max_downloads.filter(|max| *max != row.max_downloads) {
        changes.insert("max_downloads".into(), change(row.max_downloads, max));
        update = update.col_expr(share::Column::MaxDownloads, Expr::value(max));
        row.max_downloads = max;
    }
    if let Some(hash) = password_hash {
        // A new password counts as a change even when there was one: the old stops working.
        changes.insert(
            "password".into(),
            change(row.password_hash.is_some(), hash.is_some()),
        );
        update = update.col_expr(share::Column::PasswordHash, Expr::value(hash.clone()));
        row.password_hash = hash;
    }
    if let Some(verify) = edit.verify_recipient {
        let required = core.config.require_recipient_verification;
        if !verify && required {
            return Err(ServiceError::Invalid(t("share-error-verify-policy-off")));
        }
        // Under the policy the share verifies whatever it says: nothing to record.
        let verify = verification(verify, row.recipient.is_some(), false)?;
        if verify != row.verify_recipient && !required {
            changes.insert(
                "verify_recipient".into(),
                change(row.verify_recipient, verify),
            );
            update = update.col_expr(share::Column::VerifyRecipient, Expr::value(verify));
            row.verify_recipient = verify;
        }
    }
    if let Some(receipts) = edit.receipts.filter(|r| *r != row.receipts) {
        changes.insert("receipts".into(), change(row.receipts, receipts));
        update = update.col_expr(share::Column::Receipts, Expr::value(receipts));
        row.receipts = receipts;
    }
    let columns_changed = !changes.is_empty();
    let added = add_files(&txn, owner, share_id, &edit.add_files).await?;
    if let Some((old, new)) = &added {
        changes.insert("files".into(), change(json!(old), json!(new)));
    }
    if !changes.is_empty() {
        if columns_changed {
            update.exec(&txn).await?;
        }
        Event::new(Action::ShareChanged, owner.actor())
            .target("share", share_id)
            .details(Value::Object(changes))
            .from(meta)
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    if let Some((old, new)) = &added {
        // A link still waiting for its files goes out once the new ones are ready too.
        for file in new.iter().filter(|f| !old.contains(f)) {
            crate::jobs::notify::enqueue_pending(core, *file).await;
        }
    }
    let view = super::view(core, &core.db, row).await?;
    if view
        .max_downloads
        .is_some_and(|max| view.files.iter().all(|f| f.downloads_used >= max))
    {
        // Used up by the new limit: the outbox copy of this link opens nothing any more.
        core.mailer.forget(&share_id.to_string()).await;
    }
    Ok(view)
}

/// Adds `wanted` (files of `owner`'s, neither deleted nor rejected) to the files of
/// `share_id`, after them, in `txn`; the files before and after, when any was added.
async fn add_files(
    txn: &impl ConnectionTrait,
    owner: &User,
    share_id: Uuid,
    wanted: &[Uuid],
) -> ServiceResult<Option<(Vec<Uuid>, Vec<Uuid>)>> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let old: Vec<Uuid> = share_file::Entity::find()
        .filter(share_file::Column::ShareId.eq(share_id))
        .order_by_asc(share_file::Column::Position)
        .all(txn)
        .await?
        .into_iter()
        .map(|row| row.file_id)
        .collect();
    let mut new = old.clone();
    let mut fresh = Vec::new();
    for id in wanted {
        if !new.contains(id) {
            new.push(*id);
            fresh.push(*id);
        }
    }
    if fresh.is_empty() {
        return Ok(None);
    }
    if new.len() > super::MOST_FILES {
        return Err(ServiceError::Invalid(t_with(
            "share-error-too-many-files",
            [("max", Arg::from(super::MOST_FILES))],
        )));
    }
    super::shareable_files(txn, owner, &fresh).await?;
    let rows = fresh.iter().enumerate().map(|(i, file)| {
        share_file::ActiveModel::from(share_file::Model {
            share_id,
            file_id: *file,
            position: i32::try_from(old.len() + i).unwrap_or(i32::MAX),
            downloads_used: 0,
            downloads_completed: 0,
        })
    });
    share_file::Entity::insert_many(rows).exec(txn).await?;
    Ok(Some((old, new)))
}

/// Emails the recipient of a live share a fresh link; the old one stops working at once. The
/// email is taken from the owner's daily budget like a new share's.
pub async fn resend(
    core: &Core,
    owner: &User,
    share_id: Uuid,
    meta: &RequestMeta,
) -> ServiceResult<ShareView> {
    owner.require(Scope::SharesWrite)?;
    crate::services::verification::require_verified(core, owner).await?;
    let mut row = live_share(&core.db, owner, share_id).await?;
    if row.recipient.is_none() {
        return Err(ServiceError::Conflict(t("share-error-resend-no-recipient")));
    }
    let ready = file::Entity::find_by_id(row.file_id)
        .one(&core.db)
        .await?
        .is_some_and(|f| f.status == FileStatus::Ready);
    if !ready {
        return Err(ServiceError::Conflict(t("share-error-resend-not-ready")));
    }
    spend_email_budget(core, owner, 1, meta).await?;

    let txn = crate::db::begin_write(&core.db).await?;
    let previous = live_share(&txn, owner, share_id).await?.state;
    // No token: the old link opens nothing from this commit on; the email job issues the new.
    share::Entity::update_many()
        .col_expr(share::Column::State, Expr::value(ShareState::Pending))
        .col_expr(
            share::Column::TokenHash,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .col_expr(
            share::Column::ClaimedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            share::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .filter(share::Column::Id.eq(share_id))
        .exec(&txn)
        .await?;
    Event::new(Action::ShareChanged, owner.actor())
        .target("share", share_id)
        .details(json!({
            "link": "reissued",
            "recipient": row.recipient,
            "state": change(previous.as_str(), ShareState::Pending.as_str()),
        }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.mailer.forget(&share_id.to_string()).await;
    if let Err(err) = core.queue.enqueue(SendShareEmail::new(share_id)).await {
        tracing::warn!(%share_id, error = %format!("{err:#}"), "could not enqueue a share email; the sweep will retry");
    }
    row.state = ShareState::Pending;
    row.token_hash = None;
    row.last_error = None;
    Ok(super::view(core, &core.db, row).await?)
}
