//! Proof that an account's address is its owner's: a link emailed at sign-up (and again on
//! request). Until it is followed, the account can upload and make links, but not have Coffer
//! email anyone in its name.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _, QuerySelect as _,
};
use uuid::Uuid;

use entity::{email_verification, user};

use crate::audit::{Action, Actor, Event, RequestMeta};
use crate::principal::User;
use crate::text::{Arg, t, t_with};
use crate::types::Token;
use crate::{Core, ServiceError, ServiceResult};

/// How long a verification link works.
pub const LINK_TTL: Duration = Duration::from_secs(48 * 60 * 60);
/// Links one account may ask to be sent again per hour.
const RESENDS_PER_HOUR: u32 = 5;

fn outbox_name(user_id: Uuid) -> String {
    format!("verify-{user_id}")
}

/// Whether the account's address is verified.
pub async fn is_verified(core: &Core, user_id: Uuid) -> ServiceResult<bool> {
    let verified: Option<Option<chrono::DateTime<Utc>>> = user::Entity::find_by_id(user_id)
        .select_only()
        .column(user::Column::EmailVerifiedAt)
        .into_tuple()
        .one(&core.db)
        .await?;
    Ok(matches!(verified, Some(Some(_))))
}

/// The refusal of an email-sending action by an account whose address is not verified.
pub(crate) async fn require_verified(core: &Core, owner: &User) -> ServiceResult<()> {
    if is_verified(core, owner.id).await? {
        return Ok(());
    }
    Err(ServiceError::Forbidden(t("verify-error-required")))
}

/// Emails `email` a new verification link for `user_id`.
pub(crate) async fn send_link(core: &Core, user_id: Uuid, email: &str) -> ServiceResult<()> {
    let token = Token::generate();
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(LINK_TTL).unwrap_or(chrono::Duration::hours(48));
    let link = core
        .config
        .public_link(&format!("/app/verify-email?token={}", token.expose()));
    let from = core.config.mail_from.parse().map_err(|e| {
        ServiceError::Invalid(t_with(
            "email-error-mail-from",
            [("error", Arg::from(format!("{e}")))],
        ))
    })?;
    let message = crate::mail::verify_email_message(&from, email, &link, now + ttl)
        .map_err(|e| ServiceError::Invalid(format!("{e:#}")))?;
    email_verification::Entity::insert(email_verification::ActiveModel {
        token_hash: Set(token.hash()),
        user_id: Set(user_id),
        created_at: Set(now),
        expires_at: Set(now + ttl),
    })
    .exec(&core.db)
    .await?;
    core.mailer
        .send(message, &outbox_name(user_id))
        .await
        .map_err(|err| {
            ServiceError::Unavailable(anyhow::anyhow!(
                "the verification email could not be sent: {}",
                err.detail
            ))
        })
}

/// Sends the link off the request (at sign-up: the answer's timing says nothing).
pub(crate) fn send_link_later(core: &Core, user_id: Uuid, email: &str) {
    let (core, email) = (core.clone(), email.to_owned());
    tokio::spawn(async move {
        if let Err(err) = send_link(&core, user_id, &email).await {
            tracing::warn!(%user_id, error = %err, "could not send an email verification link; the owner can ask for another");
        }
    });
}

/// A signed-in owner asks for a new link (at most a few an hour).
pub async fn resend(core: &Core, owner: &User) -> ServiceResult<()> {
    owner.require_session()?;
    if is_verified(core, owner.id).await? {
        return Err(ServiceError::Conflict(t("verify-error-already-verified")));
    }
    let key = format!("verify-resend:{}", owner.id);
    if let Some(retry_after) = core
        .limiter
        .take(&key, RESENDS_PER_HOUR, Duration::from_secs(3600))
        .await?
    {
        return Err(ServiceError::RateLimited { retry_after });
    }
    send_link(core, owner.id, &owner.email).await
}

/// Follows a verification link: the account's address is verified, every link of it stops
/// working, and its outbox copy goes.
pub async fn confirm(core: &Core, raw_token: &str, meta: &RequestMeta) -> ServiceResult<()> {
    let token =
        Token::parse(raw_token).ok_or_else(|| ServiceError::Invalid(t("verify-error-link")))?;
    let found = email_verification::Entity::find_by_id(token.hash())
        .filter(email_verification::Column::ExpiresAt.gt(Utc::now()))
        .one(&core.db)
        .await?
        .ok_or_else(|| ServiceError::Invalid(t("verify-error-link")))?;
    mark_verified(core, found.user_id, Actor::User(found.user_id), meta).await
}

/// Records the account's address as verified (once), as `actor` says.
pub async fn mark_verified(
    core: &Core,
    user_id: Uuid,
    actor: Actor,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    let txn = crate::db::begin_write(&core.db).await?;
    let changed = user::Entity::update_many()
        .col_expr(user::Column::EmailVerifiedAt, Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::EmailVerifiedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    email_verification::Entity::delete_many()
        .filter(email_verification::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    if changed > 0 {
        Event::new(Action::UserEmailVerified, actor)
            .target("user", user_id)
            .from(meta)
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    core.mailer.forget(&outbox_name(user_id)).await;
    Ok(())
}
