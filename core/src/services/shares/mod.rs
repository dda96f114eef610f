//! Shares from the owner's side: creating links (one per recipient), listing, changing,
//! revoking, each one's access report, and marking them expired. The job that issues each
//! emailed link is `crate::jobs::notify`.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QueryOrder as _,
};
use uuid::Uuid;

use entity::{file, share, share_file};

use crate::audit::{Action, Event, Outcome, RequestMeta};
use crate::jobs::notify::{enqueue_pending, share_url};
use crate::principal::{Scope, User};
use crate::text::{Arg, t, t_with};
use crate::types::{EmailAddress, FileStatus, ShareState, Token};
use crate::{Core, JobError, ServiceError, ServiceResult, password};

mod activity;
mod edit;
mod request;
mod view;

pub use activity::{Activity, Entry, MOST_PER_PAGE, activity, export_csv};
pub use edit::{ShareEdit, edit, resend};
pub use request::{ShareRequest, ShareSpec, split_recipients};
pub use view::{ShareView, SharedFileView};
use view::{view, views};

/// Inserts the shares of `spec` for `files` (one, or a bundle's, in the recipient's order)
/// inside the caller's transaction. Returns the rows and, for a share without recipient, its
/// link (the only time it is ever shown).
pub async fn insert(
    core: &Core,
    txn: &impl ConnectionTrait,
    owner: &User,
    files: &[Uuid],
    spec: &ShareSpec,
    prepared: Prepared,
    meta: &RequestMeta,
) -> ServiceResult<Vec<ShareView>> {
    let Prepared {
        password_hash,
        receipts,
    } = prepared;
    let &[file_id, ..] = files else {
        return Err(ServiceError::Invalid(t("share-error-no-files")));
    };
    let now = Utc::now();
    let targets: Vec<Option<&EmailAddress>> = if spec.recipients.is_empty() {
        vec![None]
    } else {
        spec.recipients.iter().map(Some).collect()
    };
    let mut views = Vec::with_capacity(targets.len());
    for recipient in targets {
        let id = Uuid::now_v7();
        // A link without recipient is issued now; emailed links are issued by the email job,
        // so their token exists nowhere but in the email.
        let token = recipient.is_none().then(Token::generate);
        let model = share::Model {
            id,
            file_id,
            owner_id: owner.id,
            recipient: recipient.map(|r| r.as_str().to_owned()),
            token_hash: token.as_ref().map(Token::hash),
            state: if token.is_some() {
                ShareState::Active
            } else {
                ShareState::Pending
            },
            expires_at: spec.expires_at,
            max_downloads: spec.max_downloads,
            password_hash: password_hash.clone(),
            verify_recipient: spec.verify_recipient,
            receipts,
            message: spec.message.clone(),
            last_error: None,
            created_at: now,
            emailed_at: None,
            revoked_at: None,
            claimed_at: None,
        };
        share::Entity::insert(share::ActiveModel::from(model.clone()))
            .exec(txn)
            .await?;
        let rows: Vec<share_file::Model> = files
            .iter()
            .enumerate()
            .map(|(position, file)| share_file::Model {
                share_id: id,
                file_id: *file,
                position: i32::try_from(position).unwrap_or(i32::MAX),
                downloads_used: 0,
                downloads_completed: 0,
            })
            .collect();
        share_file::Entity::insert_many(rows.iter().cloned().map(share_file::ActiveModel::from))
            .exec(txn)
            .await?;
        Event::new(Action::ShareCreated, owner.actor())
            .target("share", id)
            .details(serde_json::json!({
                "file_id": file_id,
                "file_ids": (files.len() > 1).then_some(files),
                "recipient": model.recipient,
                "expires_at": model.expires_at,
                "max_downloads": model.max_downloads,
                "password": model.password_hash.is_some(),
                "verify_recipient": model.verify_recipient,
                "receipts": model.receipts,
            }))
            .from(meta)
            .record(txn, &core.audit)
            .await?;
        let url = token.as_ref().map(|t| share_url(core, t));
        views.push(ShareView::from_model(core, model, rows, url, now));
    }
    Ok(views)
}

/// The window of `COFFER_SHARE_EMAILS_PER_DAY`.
const EMAIL_DAY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Takes `recipients` emails from the owner's daily budget, all or none: nobody can use Coffer
/// to mail links to any number of addresses.
async fn spend_email_budget(
    core: &Core,
    owner: &User,
    recipients: usize,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    if recipients == 0 {
        return Ok(());
    }
    let limit = core.config.share_emails_per_day;
    let wanted = u32::try_from(recipients).unwrap_or(u32::MAX);
    let key = format!("share-emails:{}", owner.id);
    let Some(retry_after) = core.limiter.take_n(&key, wanted, limit, EMAIL_DAY).await? else {
        return Ok(());
    };
    core.audit
        .record(
            Event::new(Action::AuthRateLimited, owner.actor())
                .outcome(Outcome::Denied)
                .details(serde_json::json!({
                    "limit": "share_emails_per_day",
                    "per_day": limit,
                    "recipients": wanted,
                }))
                .from(meta),
        )
        .await?;
    Err(ServiceError::LimitReached {
        detail: t_with(
            "share-error-email-budget",
            [("limit", Arg::from(limit)), ("wanted", Arg::from(wanted))],
        ),
        retry_after,
    })
}

/// What [`insert`] needs done before its transaction: the emails taken from the owner's daily
/// budget, the password hashed, and whether the shares ask for receipts (the owner's
/// preference, unless the request said).
#[derive(Debug)]
pub struct Prepared {
    password_hash: Option<String>,
    receipts: bool,
}

/// Readies `spec` for [`insert`], outside any transaction (the budget's refusal is audited on
/// its own, and hashing takes a while).
pub async fn prepare(
    core: &Core,
    owner: &User,
    spec: &ShareSpec,
    meta: &RequestMeta,
) -> ServiceResult<Prepared> {
    owner.require(Scope::SharesWrite)?;
    if !spec.recipients.is_empty() {
        super::verification::require_verified(core, owner).await?;
    }
    spend_email_budget(core, owner, spec.recipients.len(), meta).await?;
    let password_hash = match &spec.password {
        Some(p) => Some(password::hash(p.clone()).await?),
        None => None,
    };
    let receipts = match spec.receipts {
        Some(asked) => asked,
        None => {
            super::receipts::preferences(core, owner.id)
                .await?
                .on_new_shares
        }
    };
    Ok(Prepared {
        password_hash,
        receipts,
    })
}

/// Most files one share holds.
pub const MOST_FILES: usize = 100;

/// The files `ids` of `owner`'s, in `txn`, if each may be shared: 404 when one is another's,
/// deleted or unknown, 409 when one was rejected.
async fn shareable_files(
    txn: &impl ConnectionTrait,
    owner: &User,
    ids: &[Uuid],
) -> ServiceResult<Vec<file::Model>> {
    let found = file::Entity::find()
        .filter(file::Column::Id.is_in(ids.iter().copied()))
        .filter(file::Column::OwnerId.eq(owner.id))
        .filter(file::Column::Status.ne(FileStatus::Deleted))
        .all(txn)
        .await?;
    if found.len() != ids.len() {
        return Err(ServiceError::NotFound("file"));
    }
    if let Some(rejected) = found.iter().find(|f| f.status == FileStatus::Rejected) {
        return Err(ServiceError::Conflict(t_with(
            "share-error-file-rejected",
            [(
                "reason",
                Arg::from(rejected.reject_reason.clone().unwrap_or_default()),
            )],
        )));
    }
    Ok(found)
}

/// Shares existing files of `owner`'s (one, or several as a bundle, in the order given). Links
/// for recipients go out at once if every file is ready, or the moment they all are.
pub async fn create(
    core: &Core,
    owner: &User,
    file_ids: &[Uuid],
    request: ShareRequest,
    meta: &RequestMeta,
) -> ServiceResult<Vec<ShareView>> {
    owner.require(Scope::SharesWrite)?;
    let mut files = Vec::with_capacity(file_ids.len());
    for id in file_ids {
        if !files.contains(id) {
            files.push(*id);
        }
    }
    if files.is_empty() {
        return Err(ServiceError::Invalid(t("share-error-no-files")));
    }
    if files.len() > MOST_FILES {
        return Err(ServiceError::Invalid(t_with(
            "share-error-too-many-files",
            [("max", Arg::from(MOST_FILES))],
        )));
    }
    let spec = request.resolve(core)?;
    let prepared = prepare(core, owner, &spec, meta).await?;
    let txn = crate::db::begin_write(&core.db).await?;
    let found = shareable_files(&txn, owner, &files).await?;
    let views = insert(core, &txn, owner, &files, &spec, prepared, meta).await?;
    txn.commit().await?;
    if let Some(ready) = found.iter().find(|f| f.status == FileStatus::Ready) {
        // Each share's email goes out if all its files are ready.
        enqueue_pending(core, ready.id).await;
    }
    Ok(views)
}

pub async fn list(core: &Core, owner: &User, file_id: Uuid) -> ServiceResult<Vec<ShareView>> {
    owner.require(Scope::FilesRead)?;
    file::Entity::find_by_id(file_id)
        .filter(file::Column::OwnerId.eq(owner.id))
        .filter(file::Column::Status.ne(FileStatus::Deleted))
        .one(&core.db)
        .await?
        .ok_or(ServiceError::NotFound("file"))?;
    let of_file = share_file::Entity::find()
        .filter(share_file::Column::FileId.eq(file_id))
        .all(&core.db)
        .await?;
    let rows = share::Entity::find()
        .filter(share::Column::Id.is_in(of_file.into_iter().map(|r| r.share_id)))
        .order_by_asc(share::Column::Id)
        .all(&core.db)
        .await?;
    Ok(views(core, &core.db, rows).await?)
}

/// One share of `owner`'s.
pub async fn get(core: &Core, owner: &User, share_id: Uuid) -> ServiceResult<ShareView> {
    owner.require(Scope::FilesRead)?;
    let row = share::Entity::find_by_id(share_id)
        .filter(share::Column::OwnerId.eq(owner.id))
        .one(&core.db)
        .await?
        .ok_or(ServiceError::NotFound("share"))?;
    Ok(view(core, &core.db, row).await?)
}

/// Revokes a share at once: its link stops working for every later request.
pub async fn revoke(
    core: &Core,
    owner: &User,
    share_id: Uuid,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    owner.require(Scope::SharesWrite)?;
    let txn = crate::db::begin_write(&core.db).await?;
    let row = share::Entity::find_by_id(share_id)
        .filter(share::Column::OwnerId.eq(owner.id))
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound("share"))?;
    if row.state != ShareState::Revoked {
        share::Entity::update_many()
            .col_expr(share::Column::State, Expr::value(ShareState::Revoked))
            .col_expr(share::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(share::Column::Id.eq(share_id))
            .exec(&txn)
            .await?;
        Event::new(Action::ShareRevoked, owner.actor())
            .target("share", share_id)
            .details(
                serde_json::json!({ "file_id": row.file_id, "previous_state": row.state.as_str() }),
            )
            .from(meta)
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    core.mailer.forget(&share_id.to_string()).await;
    Ok(())
}

/// Marks shares past their expiry (the sweep's part for shares).
pub async fn expire(core: &Core) -> Result<(), JobError> {
    let expired = share::Entity::update_many()
        .col_expr(share::Column::State, Expr::value(ShareState::Expired))
        .filter(share::Column::State.is_in(ShareState::LIVE))
        .filter(share::Column::ExpiresAt.lte(Utc::now()))
        .exec(&core.db)
        .await?;
    if expired.rows_affected > 0 {
        tracing::info!(count = expired.rows_affected, "sweep marked expired shares");
    }
    Ok(())
}
