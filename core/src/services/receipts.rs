//! Download receipts. A share that asks for them tells its owner by email when a recipient
//! completes a download: who (the address the link was sent to), which file, when, and from
//! where (the client's address and user agent). At once, or — for an owner who prefers it — in
//! at most one email a day. Each receipt waits as a row of `download_receipts` until its email
//! went out, so a mail server that is down or a process that stops delays a receipt and never
//! loses it: the sweep sends what waits.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _,
};
use uuid::Uuid;

use entity::{download_receipt as receipt, receipt_preference as preference, user};

use crate::audit::RequestMeta;
use crate::db::by_key;
use crate::principal::User;
use crate::{Core, JobError, ServiceError, ServiceResult};

/// How a daily owner's receipts are spaced: at most one email per this long.
const DIGEST_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Receipts one email lists at most (the rest follow in the next).
const MOST_PER_EMAIL: u64 = 200;
/// How long a sent receipt is kept (the audit log keeps the download for good).
const KEPT_AFTER_SENDING: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// How an account wants its download receipts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preferences {
    /// New shares ask for receipts unless told otherwise.
    pub on_new_shares: bool,
    /// At most one email a day, listing the receipts since the last, instead of one per
    /// download.
    pub daily: bool,
}

/// `user_id`'s preferences (the defaults until they set some).
pub async fn preferences(core: &Core, user_id: Uuid) -> ServiceResult<Preferences> {
    let row = by_key(preference::Entity::find_by_id(user_id), &core.db).await?;
    Ok(row.map_or_else(Preferences::default, |r| Preferences {
        on_new_shares: r.on_new_shares,
        daily: r.daily,
    }))
}

/// A change of preferences; `None` keeps a preference as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreferencesChange {
    pub on_new_shares: Option<bool>,
    pub daily: Option<bool>,
}

/// Changes `owner`'s preferences; answers them as they are now. Switching to daily starts the
/// day now: the first daily email goes out a day later, listing what waited.
pub async fn set_preferences(
    core: &Core,
    owner: &User,
    change: PreferencesChange,
) -> ServiceResult<Preferences> {
    // The account's own settings: never a token's to change.
    owner.require_session()?;
    let before = preferences(core, owner.id).await?;
    let wanted = Preferences {
        on_new_shares: change.on_new_shares.unwrap_or(before.on_new_shares),
        daily: change.daily.unwrap_or(before.daily),
    };
    let mut columns = vec![preference::Column::OnNewShares, preference::Column::Daily];
    if wanted.daily && !before.daily {
        columns.push(preference::Column::DigestSentAt);
    }
    let _gate = core.write_gate.enter().await;
    preference::Entity::insert(preference::ActiveModel {
        user_id: Set(owner.id),
        on_new_shares: Set(wanted.on_new_shares),
        daily: Set(wanted.daily),
        digest_sent_at: Set(Some(Utc::now())),
    })
    .on_conflict(
        OnConflict::column(preference::Column::UserId)
            .update_columns(columns)
            .to_owned(),
    )
    .exec(&core.db)
    .await?;
    Ok(wanted)
}

/// A complete download of a share that asks for receipts, as the download saw it.
#[derive(Debug, Clone)]
pub struct Download {
    pub owner: Uuid,
    pub share: Uuid,
    pub file_name: String,
    pub recipient: Option<String>,
    pub at: DateTime<Utc>,
    pub meta: RequestMeta,
}

/// Keeps the receipt of `download` and, unless its owner wants a daily email, sends it at once
/// (a failure leaves it to the sweep).
pub async fn record(core: &Core, download: Download) -> Result<(), ServiceError> {
    let owner = download.owner;
    let kept = receipt::Model {
        id: Uuid::now_v7(),
        owner_id: owner,
        share_id: download.share,
        file_name: download.file_name,
        recipient: download.recipient,
        downloaded_at: download.at,
        ip: download.meta.ip,
        user_agent: download.meta.user_agent,
        sent_at: None,
    };
    {
        let _gate = core.write_gate.enter().await;
        receipt::Entity::insert(receipt::ActiveModel::from(kept.clone()))
            .exec(&core.db)
            .await?;
    }
    if preferences(core, owner).await?.daily {
        return Ok(());
    }
    if let Err(err) = send(core, owner, vec![kept], false).await {
        tracing::warn!(%owner, error = %err, "a download receipt waits for the sweep");
    }
    Ok(())
}

/// Emails `owner` the receipts `waiting`, and marks them sent.
async fn send(
    core: &Core,
    owner: Uuid,
    waiting: Vec<receipt::Model>,
    digest: bool,
) -> Result<(), JobError> {
    if waiting.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = waiting.iter().map(|r| r.id).collect();
    let account = by_key(user::Entity::find_by_id(owner), &core.db).await?;
    let Some(account) = account.filter(|a| !a.disabled) else {
        // Nobody to tell: a disabled or removed account is sent nothing.
        mark_sent(core, &ids).await?;
        return Ok(());
    };
    let from = core
        .config
        .mail_from
        .parse()
        .map_err(|e| JobError::Permanent(format!("COFFER_MAIL_FROM: {e}")))?;
    let told: Vec<crate::mail::Receipt<'_>> = waiting
        .iter()
        .map(|r| crate::mail::Receipt {
            recipient: r.recipient.as_deref(),
            file_name: &r.file_name,
            at: r.downloaded_at,
            ip: r.ip.as_deref(),
            user_agent: r.user_agent.as_deref(),
        })
        .collect();
    let settings = core.config.public_link("/app/preferences");
    let message = crate::mail::receipts_message(&from, &account.email, &told, &settings)
        .map_err(|e| JobError::Permanent(format!("{e:#}")))?;
    match core
        .mailer
        .send(message, &format!("receipt-{}", ids[0]))
        .await
    {
        Ok(()) => {}
        Err(err) if err.permanent => {
            tracing::warn!(%owner, error = %err.detail, "the owner's mail server refused a download receipt; it is dropped");
        }
        Err(err) => return Err(JobError::Transient(anyhow::anyhow!(err.detail))),
    }
    mark_sent(core, &ids).await?;
    if digest {
        let _gate = core.write_gate.enter().await;
        preference::Entity::update_many()
            .col_expr(preference::Column::DigestSentAt, Expr::value(Utc::now()))
            .filter(preference::Column::UserId.eq(owner))
            .exec(&core.db)
            .await?;
    }
    Ok(())
}

async fn mark_sent(core: &Core, ids: &[Uuid]) -> Result<(), sea_orm::DbErr> {
    let _gate = core.write_gate.enter().await;
    receipt::Entity::update_many()
        .col_expr(receipt::Column::SentAt, Expr::value(Utc::now()))
        .filter(receipt::Column::Id.is_in(ids.iter().copied()))
        .filter(receipt::Column::SentAt.is_null())
        .exec(&core.db)
        .await?;
    Ok(())
}

/// The sweep's part: sends what waits — a receipt whose email failed (or whose process
/// stopped) once it has waited `COFFER_SWEEP_STUCK_AFTER_SECS`, and each daily owner's email
/// once a day has passed since the last — and forgets receipts sent a week ago.
pub async fn sweep(core: &Core) -> Result<(), JobError> {
    let now = Utc::now();
    let owners: Vec<Uuid> = receipt::Entity::find()
        .select_only()
        .column(receipt::Column::OwnerId)
        .distinct()
        .filter(receipt::Column::SentAt.is_null())
        .into_tuple()
        .all(&core.db)
        .await?;
    for owner in owners {
        let row = by_key(preference::Entity::find_by_id(owner), &core.db).await?;
        let daily = row.as_ref().is_some_and(|r| r.daily);
        let mut waiting = receipt::Entity::find()
            .filter(receipt::Column::OwnerId.eq(owner))
            .filter(receipt::Column::SentAt.is_null())
            .order_by_asc(receipt::Column::DownloadedAt)
            .limit(MOST_PER_EMAIL);
        if daily {
            let last = row.and_then(|r| r.digest_sent_at);
            if last.is_some_and(|last| last + DIGEST_EVERY > now) {
                continue;
            }
        } else {
            // Younger ones are being sent by the download that made them.
            waiting =
                waiting.filter(receipt::Column::DownloadedAt.lt(core.config.stuck_before(now)));
        }
        let waiting = waiting.all(&core.db).await?;
        send(core, owner, waiting, daily).await?;
    }
    let _gate = core.write_gate.enter().await;
    receipt::Entity::delete_many()
        .filter(receipt::Column::SentAt.lt(now - KEPT_AFTER_SENDING))
        .exec(&core.db)
        .await?;
    Ok(())
}
