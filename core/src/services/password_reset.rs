//! Password resets. An admin forces one: the old password stops working and every session ends
//! at once, and the account's address is emailed a link that sets a new one. Or a person who
//! forgot theirs asks for one: the same answer whether or not the address has an account, and
//! the account's address is emailed a short-lived link; nothing changes until it is followed.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use secrecy::SecretString;
use uuid::Uuid;

use entity::{password_reset, user};

use crate::audit::{Action, Event, RequestMeta};
use crate::config::PasswordUse;
use crate::principal::User;
use crate::text::{Arg, t, t_with};
use crate::types::{Role, Token};
use crate::{Core, ServiceError, ServiceResult, password};

/// How long a reset link works.
pub const LINK_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a link someone asked for works: short, since anyone may ask.
pub const REQUESTED_LINK_TTL: Duration = Duration::from_secs(60 * 60);
const REQUEST_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Requests one client address may make per hour, whatever the addresses asked about.
const REQUESTS_PER_IP: u32 = 20;
/// Emails one account's address may be sent per hour: asking more sends nothing more.
const EMAILS_PER_ADDRESS: u32 = 3;

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
    let ended = crate::services::users::sessions::end_every(&txn, target, None).await?;
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
    core.session_cache.empty();
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
    crate::services::users::sessions::end_every(&txn, found.user_id, None).await?;
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
    core.session_cache.empty();
    core.mailer.forget(&outbox_name(found.user_id)).await;
    Ok(())
}

/// Someone who forgot their password asks for a link. The answer is the same, and as quick,
/// whether or not `email` has an account: the lookup and the email happen off the request.
/// Each client address may ask [`REQUESTS_PER_IP`] times an hour (429 past that); an account's
/// address is sent at most [`EMAILS_PER_ADDRESS`] links an hour. Nothing about the account
/// changes until the link is followed ([`confirm`]).
pub async fn request(core: &Core, email: &str, meta: &RequestMeta) -> ServiceResult<()> {
    let email = crate::types::EmailAddress::parse(email)?;
    let ip_key = format!("reset:ip:{}", meta.ip.as_deref().unwrap_or("unknown"));
    if let Some(retry_after) = core
        .limiter
        .take(&ip_key, REQUESTS_PER_IP, REQUEST_WINDOW)
        .await?
    {
        core.audit
            .record_repeatable(
                "auth.rate_limited:password-reset".to_owned(),
                Event::new(Action::AuthRateLimited, crate::audit::Actor::Anonymous)
                    .outcome(crate::audit::Outcome::Denied)
                    .details(serde_json::json!({ "limit": "password reset requests" }))
                    .from(meta),
            )
            .await?;
        return Err(ServiceError::RateLimited { retry_after });
    }
    let (core, meta) = (core.clone(), meta.clone());
    tokio::spawn(async move {
        if let Err(err) = send_requested(&core, &email, &meta).await {
            tracing::warn!(error = %err, "could not send a requested password reset link");
        }
    });
    Ok(())
}

async fn send_requested(
    core: &Core,
    email: &crate::types::EmailAddress,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    let account = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&core.db)
        .await?;
    let password_use = core.config.identity.password_allowed(email.as_str());
    let account = match account {
        Some(a)
            if !a.disabled
                && (password_use == PasswordUse::Anyone
                    || password_use == PasswordUse::BreakGlassAdmin && a.role == Role::Admin) =>
        {
            a
        }
        other => {
            let reason = match &other {
                None => "unknown email",
                Some(a) if a.disabled => "account disabled",
                Some(_) => "local passwords are off",
            };
            let details = crate::services::users::typed_address(core, email.as_str(), reason).await;
            core.audit
                .record_repeatable(
                    "user.password_reset_requested:unknown".to_owned(),
                    Event::new(
                        Action::UserPasswordResetRequested,
                        crate::audit::Actor::Anonymous,
                    )
                    .outcome(crate::audit::Outcome::Denied)
                    .details(details)
                    .from(meta),
                )
                .await?;
            return Ok(());
        }
    };
    let key = format!("reset:account:{}", account.id);
    if core
        .limiter
        .take(&key, EMAILS_PER_ADDRESS, REQUEST_WINDOW)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let token = Token::generate();
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(REQUESTED_LINK_TTL).unwrap_or(chrono::Duration::hours(1));
    let link = core
        .config
        .public_link(&format!("/app/password-reset?token={}", token.expose()));
    let from = core
        .config
        .mail_from
        .parse()
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("COFFER_MAIL_FROM: {e}")))?;
    let message =
        crate::mail::password_reset_requested_message(&from, &account.email, &link, now + ttl)
            .map_err(ServiceError::Internal)?;
    let txn = crate::db::begin_write(&core.db).await?;
    password_reset::Entity::insert(password_reset::ActiveModel {
        token_hash: Set(token.hash()),
        user_id: Set(account.id),
        created_at: Set(now),
        expires_at: Set(now + ttl),
    })
    .exec(&txn)
    .await?;
    Event::new(
        Action::UserPasswordResetRequested,
        crate::audit::Actor::Anonymous,
    )
    .target("user", account.id)
    .details(serde_json::json!({ "forced": false }))
    .from(meta)
    .record(&txn, &core.audit)
    .await?;
    txn.commit().await?;
    core.mailer
        .send(message, &outbox_name(account.id))
        .await
        .map_err(|err| ServiceError::Internal(anyhow::anyhow!("{}", err.detail)))?;
    Ok(())
}
