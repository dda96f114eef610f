//! Shares from the owner's side: creating links (one per recipient), listing, revoking, and the
//! job that issues each link and emails it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, Condition, ConnectionTrait, EntityTrait as _, QueryFilter as _,
    QueryOrder as _,
};
use uuid::Uuid;

use entity::{file, share, user};

use crate::audit::{Actor, AuditWriter, Event, Outcome, RequestMeta};
use crate::db::by_key;
use crate::mail::{ShareEmail, share_message};
use crate::principal::User;
use crate::queue::SendShareEmail;
use crate::types::{EmailAddress, FileStatus, ShareState, Token};
use crate::{Core, JobError, ServiceError, ServiceResult, password};

mod request;

pub use request::{ShareRequest, ShareSpec};

/// After this many failed deliveries a share is marked `email_failed`.
pub const MAX_EMAIL_ATTEMPTS: usize = 5;

/// What an owner sees of a share.
#[derive(Debug, Clone)]
pub struct ShareView {
    pub id: Uuid,
    pub file_id: Uuid,
    pub recipient: Option<String>,
    /// Only in the response that created a share without recipient.
    pub url: Option<String>,
    pub state: ShareState,
    pub expires_at: DateTime<Utc>,
    pub max_downloads: Option<i32>,
    pub downloads_used: i32,
    pub password: bool,
    pub created_at: DateTime<Utc>,
    pub emailed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl ShareView {
    fn from_model(m: share::Model, url: Option<String>, now: DateTime<Utc>) -> Self {
        // A live share past its expiry reads as expired even before the sweep marks it.
        let state = if m.state.is_live() && m.expires_at <= now {
            ShareState::Expired
        } else {
            m.state
        };
        Self {
            id: m.id,
            file_id: m.file_id,
            recipient: m.recipient,
            url,
            state,
            expires_at: m.expires_at,
            max_downloads: m.max_downloads,
            downloads_used: m.downloads_used,
            password: m.password_hash.is_some(),
            created_at: m.created_at,
            emailed_at: m.emailed_at,
            last_error: m.last_error,
        }
    }
}

pub fn share_url(core: &Core, token: &Token) -> String {
    core.config.public_link(&format!("/s/{}", token.expose()))
}

/// Inserts the shares of `spec` for a file inside the caller's transaction. Returns the rows
/// and, for a share without recipient, its link (the only time it is ever shown).
pub async fn insert(
    core: &Core,
    txn: &impl ConnectionTrait,
    owner: &User,
    file_id: Uuid,
    spec: &ShareSpec,
    prepared: Prepared,
    meta: &RequestMeta,
) -> ServiceResult<Vec<ShareView>> {
    let password_hash = prepared.password_hash;
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
            downloads_used: 0,
            password_hash: password_hash.clone(),
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
        Event::new("share.created", owner.actor())
            .target("share", id)
            .details(serde_json::json!({
                "file_id": file_id,
                "recipient": model.recipient,
                "expires_at": model.expires_at,
                "max_downloads": model.max_downloads,
                "password": model.password_hash.is_some(),
            }))
            .from(meta)
            .record(txn, &core.audit)
            .await?;
        let url = token.as_ref().map(|t| share_url(core, t));
        views.push(ShareView::from_model(model, url, now));
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
            Event::new("auth.rate_limited", owner.actor())
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
        detail: format!(
            "an account may email links to at most {limit} recipients a day; these {wanted} would pass that: try again later, or share a link without recipients"
        ),
        retry_after,
    })
}

/// What [`insert`] needs done before its transaction: the emails taken from the owner's daily
/// budget, and the password hashed.
#[derive(Debug)]
pub struct Prepared {
    password_hash: Option<String>,
}

/// Readies `spec` for [`insert`], outside any transaction (the budget's refusal is audited on
/// its own, and hashing takes a while).
pub async fn prepare(
    core: &Core,
    owner: &User,
    spec: &ShareSpec,
    meta: &RequestMeta,
) -> ServiceResult<Prepared> {
    if !spec.recipients.is_empty() {
        super::verification::require_verified(core, owner).await?;
    }
    spend_email_budget(core, owner, spec.recipients.len(), meta).await?;
    let password_hash = match &spec.password {
        Some(p) => Some(password::hash(p.clone()).await?),
        None => None,
    };
    Ok(Prepared { password_hash })
}

/// Shares an existing file. Links for recipients go out at once if the file is ready, or the
/// moment it becomes ready.
pub async fn create(
    core: &Core,
    owner: &User,
    file_id: Uuid,
    request: ShareRequest,
    meta: &RequestMeta,
) -> ServiceResult<Vec<ShareView>> {
    let spec = request.resolve(core)?;
    let prepared = prepare(core, owner, &spec, meta).await?;
    let txn = crate::db::begin_write(&core.db).await?;
    let file = file::Entity::find_by_id(file_id)
        .filter(file::Column::OwnerId.eq(owner.id))
        .filter(file::Column::Status.ne(FileStatus::Deleted))
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound("file"))?;
    if file.status == FileStatus::Rejected {
        return Err(ServiceError::Conflict(format!(
            "the file was rejected and cannot be shared: {}",
            file.reject_reason.unwrap_or_default()
        )));
    }
    let views = insert(core, &txn, owner, file_id, &spec, prepared, meta).await?;
    txn.commit().await?;
    if file.status == FileStatus::Ready {
        enqueue_pending(core, file_id).await;
    }
    Ok(views)
}

/// Enqueues the email of every pending share of a file (called when it becomes ready).
pub async fn enqueue_pending(core: &Core, file_id: Uuid) {
    let pending = share::Entity::find()
        .filter(share::Column::FileId.eq(file_id))
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
/// transaction, recording why.
pub async fn cancel_pending(
    txn: &impl ConnectionTrait,
    audit: &AuditWriter,
    file_id: Uuid,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    let why = format!("file not shareable: {reason}");
    cancel_where(txn, audit, share::Column::FileId.eq(file_id), reason, &why).await
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
async fn cancel_where(
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
        Event::new("share.email_failed", Actor::System)
            .target("share", row.id)
            .outcome(Outcome::Failure)
            .details(serde_json::json!({ "reason": audited, "file_id": row.file_id }))
            .record(txn, audit)
            .await?;
    }
    Ok(())
}

pub async fn list(core: &Core, owner: &User, file_id: Uuid) -> ServiceResult<Vec<ShareView>> {
    file::Entity::find_by_id(file_id)
        .filter(file::Column::OwnerId.eq(owner.id))
        .filter(file::Column::Status.ne(FileStatus::Deleted))
        .one(&core.db)
        .await?
        .ok_or(ServiceError::NotFound("file"))?;
    let now = Utc::now();
    Ok(share::Entity::find()
        .filter(share::Column::FileId.eq(file_id))
        .order_by_asc(share::Column::Id)
        .all(&core.db)
        .await?
        .into_iter()
        .map(|m| ShareView::from_model(m, None, now))
        .collect())
}

/// Revokes a share at once: its link stops working for every later request.
pub async fn revoke(
    core: &Core,
    owner: &User,
    share_id: Uuid,
    meta: &RequestMeta,
) -> ServiceResult<()> {
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
        Event::new("share.revoked", owner.actor())
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

/// Removes outbox copies whose link no longer works (revoked, expired, used up, cancelled, or
/// gone): the outbox holds live links, so it keeps only those that still open something.
pub async fn forget_dead_outbox_copies(core: &Core) -> Result<usize, JobError> {
    let names =
        core.mailer.outbox_names().await.map_err(|e| {
            JobError::Transient(anyhow::Error::new(e).context("listing the outbox"))
        })?;
    let mut forgotten = 0;
    let now = Utc::now();
    for name in names {
        // Only share emails hold a link; other messages (to account owners) stay.
        let Ok(id) = Uuid::parse_str(&name) else {
            continue;
        };
        let live = by_key(share::Entity::find_by_id(id), &core.db)
            .await?
            .is_some_and(|s| {
                s.state.is_live()
                    && s.expires_at > now
                    && s.max_downloads.is_none_or(|max| s.downloads_used < max)
            });
        if !live {
            core.mailer.forget(&name).await;
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

/// The email job: issues the share's link (a new token; only its hash is stored) and emails
/// it. A repeat after success is a no-op; a retry after a failure issues a fresh link.
pub async fn send_email(core: &Core, share_id: Uuid, attempt: usize) -> Result<(), JobError> {
    let Some(row) = by_key(share::Entity::find_by_id(share_id), &core.db).await? else {
        return Ok(());
    };
    if row.state != ShareState::Pending {
        return Ok(());
    }
    let Some(recipient) = row.recipient.clone() else {
        return Ok(());
    };
    let Some(file) = by_key(file::Entity::find_by_id(row.file_id), &core.db).await? else {
        return Ok(());
    };
    match file.status {
        FileStatus::Ready => {}
        FileStatus::Rejected | FileStatus::Deleted => {
            let reason = file
                .reject_reason
                .clone()
                .unwrap_or_else(|| "the file was deleted".to_owned());
            let txn = crate::db::begin_write(&core.db).await?;
            cancel_pending(&txn, &core.audit, file.id, &reason).await?;
            txn.commit().await?;
            return Ok(());
        }
        _ => return Ok(()), // enqueued again when the file is ready
    }
    if row.expires_at <= Utc::now() {
        return Ok(()); // the sweep marks it expired
    }
    let owner = by_key(user::Entity::find_by_id(row.owner_id), &core.db).await?;
    let sender = owner
        .map(|o| o.email)
        .unwrap_or_else(|| "A Coffer user".to_owned());

    // Claim the share with its new link. A second delivery of this job (the share was created
    // just as its file became ready, or the sweep found it) leaves a fresh claim alone: issuing
    // another link would kill the one being emailed. A claim older than
    // `COFFER_SWEEP_STUCK_AFTER_SECS` (longer than a send may take: lettre gives up after 30 s)
    // was left by a worker that died mid-send; the link is then issued and sent again.
    let token = Token::generate();
    let now = Utc::now();
    let claimed = share::Entity::update_many()
        .col_expr(share::Column::TokenHash, Expr::value(token.hash()))
        .col_expr(share::Column::ClaimedAt, Expr::value(now))
        .filter(share::Column::Id.eq(share_id))
        .filter(share::Column::State.eq(ShareState::Pending))
        .filter(
            Condition::any()
                .add(share::Column::ClaimedAt.is_null())
                .add(share::Column::ClaimedAt.lt(core.config.stuck_before(now))),
        )
        .exec(&core.db)
        .await?;
    if claimed.rows_affected == 0 {
        return Ok(());
    }
    let url = share_url(core, &token);
    let email = ShareEmail {
        sender: &sender,
        file_name: &file.name,
        size: u64::try_from(file.size).unwrap_or(0),
        expires_at: row.expires_at,
        max_downloads: row.max_downloads,
        message: row.message.as_deref(),
        password: row.password_hash.is_some(),
        url: &url,
    };
    let from: lettre::message::Mailbox = core
        .config
        .mail_from
        .parse()
        .map_err(|e| JobError::Permanent(format!("COFFER_MAIL_FROM: {e}")))?;
    let message = share_message(&from, &recipient, &email)
        .map_err(|e| JobError::Permanent(format!("{e:#}")))?;
    match core.mailer.send(message, &share_id.to_string()).await {
        Ok(()) => {
            // Without a mail server the share says so: nobody has been emailed.
            let (reached, action) = if core.mailer.sends() {
                (ShareState::Emailed, "share.emailed")
            } else {
                (ShareState::Outbox, "share.written_to_outbox")
            };
            let txn = crate::db::begin_write(&core.db).await?;
            share::Entity::update_many()
                .col_expr(share::Column::State, Expr::value(reached))
                .col_expr(share::Column::EmailedAt, Expr::value(Utc::now()))
                .col_expr(
                    share::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .filter(share::Column::Id.eq(share_id))
                .filter(share::Column::State.eq(ShareState::Pending))
                .exec(&txn)
                .await?;
            Event::new(action, Actor::System)
                .target("share", share_id)
                .details(serde_json::json!({ "recipient": recipient, "file_id": file.id, "attempt": attempt }))
                .record(&txn, &core.audit)
                .await?;
            txn.commit().await?;
            Ok(())
        }
        Err(err) if err.permanent || attempt >= MAX_EMAIL_ATTEMPTS => {
            let txn = crate::db::begin_write(&core.db).await?;
            share::Entity::update_many()
                .col_expr(share::Column::State, Expr::value(ShareState::EmailFailed))
                .col_expr(share::Column::LastError, Expr::value(err.detail.clone()))
                .filter(share::Column::Id.eq(share_id))
                .filter(share::Column::State.eq(ShareState::Pending))
                .exec(&txn)
                .await?;
            Event::new("share.email_failed", Actor::System)
                .target("share", share_id)
                .outcome(Outcome::Failure)
                .details(serde_json::json!({ "recipient": recipient, "reason": err.detail, "attempts": attempt }))
                .record(&txn, &core.audit)
                .await?;
            txn.commit().await?;
            Err(JobError::Permanent(format!(
                "email to a recipient failed: {}",
                err.detail
            )))
        }
        Err(err) => {
            // Release the claim, so that this job's retry may take the share again.
            share::Entity::update_many()
                .col_expr(share::Column::LastError, Expr::value(err.detail.clone()))
                .col_expr(
                    share::Column::ClaimedAt,
                    Expr::value(Option::<chrono::DateTime<Utc>>::None),
                )
                .filter(share::Column::Id.eq(share_id))
                .exec(&core.db)
                .await?;
            Err(JobError::Transient(anyhow::anyhow!(
                "sending a share email: {}",
                err.detail
            )))
        }
    }
}

/// Marks shares past their expiry; re-enqueues pending emails of ready files.
pub async fn sweep(core: &Core) -> Result<(), JobError> {
    let now = Utc::now();
    let expired = share::Entity::update_many()
        .col_expr(share::Column::State, Expr::value(ShareState::Expired))
        .filter(share::Column::State.is_in(ShareState::LIVE))
        .filter(share::Column::ExpiresAt.lte(now))
        .exec(&core.db)
        .await?;
    if expired.rows_affected > 0 {
        tracing::info!(count = expired.rows_affected, "sweep marked expired shares");
    }
    let cutoff = core.config.stuck_before(now);
    let stuck = share::Entity::find()
        .filter(share::Column::State.eq(ShareState::Pending))
        .filter(share::Column::Recipient.is_not_null())
        .filter(share::Column::CreatedAt.lt(cutoff))
        .all(&core.db)
        .await?;
    for row in stuck {
        let ready = file::Entity::find_by_id(row.file_id)
            .one(&core.db)
            .await?
            .is_some_and(|f| f.status == FileStatus::Ready);
        if ready {
            core.queue.enqueue(SendShareEmail::new(row.id)).await?;
        }
    }
    let forgotten = forget_dead_outbox_copies(core).await?;
    if forgotten > 0 {
        tracing::info!(
            count = forgotten,
            "sweep removed outbox copies of dead links"
        );
    }
    Ok(())
}
