//! The second step of a sign-in for an account with a second factor: the right password gives
//! a challenge (kept as its SHA-256, so the step may reach any API instance), which a code of
//! the second factor turns into a session. A challenge lasts five minutes and takes five codes;
//! wrong codes also count against the account, as wrong passwords do.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use uuid::Uuid;

use entity::{login_challenge, user};

use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::principal::User;
use crate::services::mfa;
use crate::types::Token;
use crate::{Core, ServiceError, ServiceResult};

const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
const CODES_PER_CHALLENGE: i32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Wrong codes for one account per window, from every challenge, before it is refused (429).
const FAILURES_PER_ACCOUNT: u32 = 10;

/// A challenge for `user_id`, whose password was right.
pub(super) async fn challenge(core: &Core, user_id: Uuid) -> ServiceResult<(Token, DateTime<Utc>)> {
    let token = Token::generate();
    let now = Utc::now();
    let expires_at =
        now + chrono::Duration::from_std(CHALLENGE_TTL).unwrap_or(chrono::Duration::minutes(5));
    let _gate = core.write_gate.enter().await;
    login_challenge::Entity::insert(login_challenge::ActiveModel {
        token_hash: Set(token.hash()),
        user_id: Set(user_id),
        created_at: Set(now),
        expires_at: Set(expires_at),
        attempts: Set(0),
    })
    .exec(&core.db)
    .await?;
    Ok((token, expires_at))
}

/// Completes a sign-in with a code of the account's second factor (a TOTP code, or a recovery
/// code): the session's token and when it expires. An unknown, expired or used-up challenge
/// is 401 like a wrong code; too many wrong codes for the account is 429.
pub async fn complete(
    core: &Core,
    raw_challenge: &str,
    code: &str,
    replacing: Option<&str>,
    meta: &RequestMeta,
) -> ServiceResult<(Token, DateTime<Utc>)> {
    let token = Token::parse(raw_challenge).ok_or(ServiceError::Unauthorized)?;
    let found = login_challenge::Entity::find_by_id(token.hash())
        .filter(login_challenge::Column::ExpiresAt.gt(Utc::now()))
        .one(&core.db)
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    let counted = {
        let _gate = core.write_gate.enter().await;
        login_challenge::Entity::update_many()
            .col_expr(
                login_challenge::Column::Attempts,
                Expr::col(login_challenge::Column::Attempts).add(1),
            )
            .filter(login_challenge::Column::TokenHash.eq(token.hash()))
            .filter(login_challenge::Column::Attempts.lt(CODES_PER_CHALLENGE))
            .exec(&core.db)
            .await?
            .rows_affected
    };
    if counted == 0 {
        return Err(ServiceError::Unauthorized);
    }
    let account_key = format!("mfa:account:{}", found.user_id);
    if let Some(retry_after) = core
        .limiter
        .take(&account_key, FAILURES_PER_ACCOUNT, WINDOW)
        .await?
    {
        core.audit
            .record_repeatable(
                format!("user.mfa_failed:limited:{}", found.user_id),
                Event::new(Action::UserMfaFailed, Actor::Anonymous)
                    .target("user", found.user_id)
                    .outcome(Outcome::Denied)
                    .details(serde_json::json!({ "reason": "rate limited" }))
                    .from(meta),
            )
            .await?;
        return Err(ServiceError::RateLimited { retry_after });
    }
    let account = user::Entity::find_by_id(found.user_id)
        .one(&core.db)
        .await?
        .filter(|a| !a.disabled)
        .ok_or(ServiceError::Unauthorized)?;
    let Some(proof) = mfa::accept(core, account.id, &account.email, code).await? else {
        core.audit
            .record_repeatable(
                format!("user.mfa_failed:{}", account.id),
                Event::new(Action::UserMfaFailed, Actor::Anonymous)
                    .target("user", account.id)
                    .outcome(Outcome::Denied)
                    .details(serde_json::json!({ "stage": "sign-in" }))
                    .from(meta),
            )
            .await?;
        return Err(ServiceError::Unauthorized);
    };
    {
        let _gate = core.write_gate.enter().await;
        login_challenge::Entity::delete_many()
            .filter(login_challenge::Column::TokenHash.eq(token.hash()))
            .exec(&core.db)
            .await?;
    }
    core.limiter.give_back(&account_key).await?;
    let user = User::from(account);
    super::sessions::open(
        core,
        &user,
        "password",
        Some(proof.as_str()),
        replacing,
        meta,
    )
    .await
}
