//! An admin forces a password reset: the old password stops working and every session ends at
//! once, and the account's address is emailed a link that sets a new one.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use secrecy::SecretString;
use uuid::Uuid;

use entity::{password_reset, session, user};

use crate::audit::{Action, Event, RequestMeta};
use crate::principal::User;
use crate::text::{Arg, t, t_with};
use crate::types::Token;
use crate::{Core, ServiceError, ServiceResult, password};

/// How long a reset link works.
pub const LINK_TTL: Duration = Duration::from_secs(24 * 60 * 60);

fn outbox_name(user_id: Uuid) -> String {
    format!("password-reset-{user_id}")
}

/// An admin resets `target`'s password: it is replaced by one nobody knows, every session and
/// personal API token of the account ends, and a link to set a new one is emailed to the account's address.
pub async fn force(
    core: &Core,
    admin: &User,
    target: Uuid,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    admin.require_admin()?;
    if target == admin.id {
        return Err(ServiceError::Conflict(t("reset-error-own-password")));
    }
    let account = user::Entity::find_by_id(target)
        .one(&core.db)
        .await?
        .ok_or(ServiceError::NotFound("account"))?;
    let unknown = password::hash(SecretString::from(Token::generate().expose().to_owned())).await?;
    let token = Token::generate();
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(LINK_TTL).unwrap_or(chrono::Duration::hours(24));
    let link = core
        .config
        .public_link(&format!("/app/password-reset?token={}", token.expose()));
    let from = core.config.mail_from.parse().map_err(|e| {
        ServiceError::Invalid(t_with(
            "email-error-mail-from",
            [("error", Arg::from(format!("{e}")))],
        ))
    })?;
    let message = crate::mail::password_reset_message(&from, &account.email, &link, now + ttl)
        .map_err(|e| ServiceError::Invalid(format!("{e:#}")))?;
    let txn = crate::db::begin_write(&core.db).await?;
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(unknown))
        .filter(user::Column::Id.eq(target))
        .exec(&txn)
        .await?;
    let ended = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .filter(session::Column::UserId.eq(target))
        .filter(session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    // Whoever took the account over may have made tokens to come back with.
    let tokens_revoked = crate::services::tokens::revoke_all(&txn, target).await?;
    password_reset::Entity::delete_many()
        .filter(password_reset::Column::UserId.eq(target))
        .exec(&txn)
        .await?;
    password_reset::Entity::insert(password_reset::ActiveModel {
        token_hash: Set(token.hash()),
        user_id: Set(target),
        created_at: Set(now),
        expires_at: Set(now + ttl),
    })
    .exec(&txn)
    .await?;
    Event::new(Action::UserPasswordResetRequested, admin.actor())
        .target("user", target)
        .details(serde_json::json!({
            "forced": true,
            "sessions_ended": ended,
            "tokens_revoked": tokens_revoked,
        }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.mailer
        .send(message, &outbox_name(target))
        .await
        .map_err(|err| {
            ServiceError::Unavailable(anyhow::anyhow!(
                "the password was reset, but the email with the new link could not be sent ({}); reset it again once mail works",
                err.detail
            ))
        })
}

/// Follows a reset link: the account gets `new` as its password (the link was emailed to its
/// address, which it also verifies), and every link of it stops working.
pub async fn confirm(
    core: &Core,
    raw_token: &str,
    new: SecretString,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    use secrecy::ExposeSecret as _;
    let token =
        Token::parse(raw_token).ok_or_else(|| ServiceError::Invalid(t("reset-error-link")))?;
    let found = password_reset::Entity::find_by_id(token.hash())
        .filter(password_reset::Column::ExpiresAt.gt(Utc::now()))
        .one(&core.db)
        .await?
        .ok_or_else(|| ServiceError::Invalid(t("reset-error-link")))?;
    password::check_strength(new.expose_secret())?;
    let hash = password::hash(new).await?;
    let now = Utc::now();
    let txn = crate::db::begin_write(&core.db).await?;
    let used = password_reset::Entity::delete_many()
        .filter(password_reset::Column::UserId.eq(found.user_id))
        .exec(&txn)
        .await?
        .rows_affected;
    if used == 0 {
        // Another request used it meanwhile.
        return Err(ServiceError::Invalid(t("reset-error-link")));
    }
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(hash))
        .filter(user::Column::Id.eq(found.user_id))
        .exec(&txn)
        .await?;
    user::Entity::update_many()
        .col_expr(user::Column::EmailVerifiedAt, Expr::value(now))
        .filter(user::Column::Id.eq(found.user_id))
        .filter(user::Column::EmailVerifiedAt.is_null())
        .exec(&txn)
        .await?;
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .filter(session::Column::UserId.eq(found.user_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    Event::new(
        Action::UserPasswordChanged,
        crate::audit::Actor::User(found.user_id),
    )
    .target("user", found.user_id)
    .details(serde_json::json!({ "via": "reset link" }))
    .from(meta)
    .record(&txn, &core.audit)
    .await?;
    txn.commit().await?;
    core.mailer.forget(&outbox_name(found.user_id)).await;
    Ok(())
}
