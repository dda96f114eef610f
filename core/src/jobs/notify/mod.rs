//! The notify job: issues a share's link (a new token; only its hash is stored) and emails it
//! to its recipient, once its files are ready. Also its part of the sweep; what queues it and
//! what cancels it (a file never ready, an owner disabled) is `pending`.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, Condition, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use entity::{share, share_file, user};

use crate::audit::{Action, Actor, Event, Outcome};
use crate::db::by_key;
use crate::mail::{ShareEmail, share_message};
use crate::queue::payload;
use crate::types::{ShareState, Token};
use crate::{Core, JobError};

mod pending;

use pending::{Readiness, cancel_where, readiness};
pub use pending::{cancel_pending, cancel_pending_of_owner, enqueue_pending};

payload! {
    /// Issue one share's link and email it to its recipient.
    SendShareEmail(share_id) in "notify";
}

impl super::Job for SendShareEmail {
    async fn run(self, core: &Core, attempt: usize) -> Result<(), JobError> {
        send_email(core, self.share_id, attempt).await
    }
}

/// After this many failed deliveries a share is marked `email_failed`.
pub const MAX_EMAIL_ATTEMPTS: usize = 5;

/// The link a share's token opens.
pub fn share_url(core: &Core, token: &Token) -> String {
    core.config.public_link(&format!("/s/{}", token.expose()))
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
        let live = match by_key(share::Entity::find_by_id(id), &core.db).await? {
            Some(s) if s.state.is_live() && s.expires_at > now => match s.max_downloads {
                None => true,
                // A download under way may still give its place back: used up means every
                // file's downloads are complete.
                Some(max) => share_file::Entity::find()
                    .filter(share_file::Column::ShareId.eq(id))
                    .filter(share_file::Column::DownloadsCompleted.lt(max))
                    .all(&core.db)
                    .await?
                    .into_iter()
                    .next()
                    .is_some(),
            },
            _ => false,
        };
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
    let files = match readiness(&core.db, share_id).await? {
        Readiness::Ready(files) => files,
        Readiness::Gone(reason) => {
            let txn = crate::db::begin_write(&core.db).await?;
            let why = format!("file not shareable: {reason}");
            cancel_where(
                &txn,
                &core.audit,
                share::Column::Id.eq(share_id),
                &reason,
                &why,
            )
            .await?;
            txn.commit().await?;
            return Ok(());
        }
        Readiness::Waiting => return Ok(()), // enqueued again when the files are ready
    };
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
    let named: Vec<(&str, u64)> = files
        .iter()
        .map(|f| (f.name.as_str(), u64::try_from(f.size).unwrap_or(0)))
        .collect();
    let email = ShareEmail {
        sender: &sender,
        files: &named,
        expires_at: row.expires_at,
        max_downloads: row.max_downloads,
        message: row.message.as_deref(),
        password: row.password_hash.is_some(),
        verify: row.verify_recipient || core.config.require_recipient_verification,
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
                (ShareState::Emailed, Action::ShareEmailed)
            } else {
                (ShareState::Outbox, Action::ShareWrittenToOutbox)
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
                .details(serde_json::json!({
                    "recipient": recipient,
                    "file_id": row.file_id,
                    "file_ids": (files.len() > 1).then(|| files.iter().map(|f| f.id).collect::<Vec<_>>()),
                    "attempt": attempt,
                }))
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
            Event::new(Action::ShareEmailFailed, Actor::System)
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

/// Re-enqueues the pending emails of ready files that have waited too long (a lost enqueue, a
/// killed worker), and removes outbox copies of dead links: the sweep's part for emails.
pub async fn sweep(core: &Core) -> Result<(), JobError> {
    let cutoff = core.config.stuck_before(Utc::now());
    let stuck = share::Entity::find()
        .filter(share::Column::State.eq(ShareState::Pending))
        .filter(share::Column::Recipient.is_not_null())
        .filter(share::Column::CreatedAt.lt(cutoff))
        .all(&core.db)
        .await?;
    for row in stuck {
        if matches!(
            readiness(&core.db, row.id).await?,
            Readiness::Ready(_) | Readiness::Gone(_)
        ) {
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
