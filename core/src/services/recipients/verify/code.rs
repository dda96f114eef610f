//! The emailed code: sending one, and checking one typed back (which opens the browser's
//! verified session).

use std::time::Duration;

use chrono::Utc;
use rand::Rng as _;
use sea_orm::ExprTrait as _;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use entity::{recipient_verification as verification, share};

use super::super::{Landing, Refusal, Resolved, landing, resolve};
use super::{CODE, SESSION, Verification, Verified, live, masked, required, session_end};
use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::text::{Arg, t_with};
use crate::types::Token;
use crate::{Core, ServiceError};

/// How long an emailed code works.
pub const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Codes one link may be sent, and one client address may have sent, per hour.
const CODES_PER_SHARE: u32 = 5;
const CODES_PER_ADDRESS: u32 = 20;
const CODE_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Wrong codes one link, and one client address, may be given per quarter hour.
const CHECKS_PER_SHARE: u32 = 10;
const CHECKS_PER_ADDRESS: u32 = 30;
const CHECK_WINDOW: Duration = Duration::from_secs(15 * 60);

/// SHA-256 of a code, bound to its share (a code is only ever compared to its share's).
fn code_hash(share_id: Uuid, code: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"coffer recipient code v1\0");
    hasher.update(share_id.as_bytes());
    hasher.update(code.as_bytes());
    hasher.finalize().to_vec()
}

async fn record(
    core: &Core,
    share_id: Uuid,
    action: Action,
    details: serde_json::Value,
    meta: &RequestMeta,
) -> Result<(), ServiceError> {
    let outcome = if action == Action::ShareVerificationFailed {
        Outcome::Denied
    } else {
        Outcome::Success
    };
    core.audit
        .record(
            Event::new(action, Actor::Recipient(share_id))
                .target("share", share_id)
                .outcome(outcome)
                .details(details)
                .from(meta),
        )
        .await?;
    Ok(())
}

/// Emails a new code to the address the link of `raw_token` was sent to (an earlier code stops
/// working), and returns the landing page that asks for it. `Ok(None)` when the link needs no
/// verification.
pub async fn send_code(
    core: &Core,
    raw_token: &str,
    meta: &RequestMeta,
) -> Result<Option<Landing>, Refusal> {
    let Resolved {
        share,
        files,
        sender,
    } = resolve(core, raw_token, meta, true).await?;
    if !required(core, &share) {
        return Ok(None);
    }
    let Some(recipient) = share.recipient.clone() else {
        super::super::deny(core, share.id, "no recipient to verify", meta).await?;
        return Err(Refusal::VerificationRequired);
    };
    let share_key = format!("share-code:share:{}", share.id);
    let ip_key = format!("share-code:ip:{}", meta.ip.as_deref().unwrap_or("unknown"));
    let budgets = [
        (share_key.as_str(), CODES_PER_SHARE),
        (ip_key.as_str(), CODES_PER_ADDRESS),
    ];
    if let Some(wait) = core
        .limiter
        .take_all(&budgets, CODE_WINDOW)
        .await
        .map_err(ServiceError::from)?
    {
        super::super::deny(core, share.id, "verification codes rate-limited", meta).await?;
        return Err(Refusal::RateLimited(wait));
    }
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
    let now = Utc::now();
    let expires_at = now + chrono::Duration::from_std(CODE_TTL).unwrap_or_default();
    let from = core.config.mail_from.parse().map_err(|e| {
        ServiceError::Invalid(t_with(
            "email-error-mail-from",
            [("error", Arg::from(format!("{e}")))],
        ))
    })?;
    let message = crate::mail::recipient_code_message(
        &from,
        &recipient,
        &crate::mail::CodeEmail {
            code: &code,
            sender: &sender,
            file_name: &super::super::title(&files),
            expires_at,
        },
    )
    .map_err(|e| ServiceError::Invalid(format!("{e:#}")))?;
    // One code at a time: a new one replaces any earlier.
    {
        let _gate = core.write_gate.enter().await;
        let txn = crate::db::begin_write(&core.db).await?;
        verification::Entity::delete_many()
            .filter(verification::Column::ShareId.eq(share.id))
            .filter(verification::Column::Kind.eq(CODE))
            .exec(&txn)
            .await?;
        verification::Entity::insert(verification::ActiveModel {
            id: Set(Uuid::now_v7()),
            share_id: Set(share.id),
            kind: Set(CODE.to_owned()),
            secret_hash: Set(code_hash(share.id, &code)),
            created_at: Set(now),
            expires_at: Set(expires_at),
            failures: Set(0),
        })
        .exec(&txn)
        .await?;
        txn.commit().await?;
    }
    core.mailer
        .send(message, &format!("code-{}", share.id))
        .await
        .map_err(|err| {
            ServiceError::Unavailable(anyhow::anyhow!(
                "the verification code could not be sent: {}",
                err.detail
            ))
        })?;
    record(
        core,
        share.id,
        Action::ShareVerificationSent,
        serde_json::json!({ "expires_at": expires_at }),
        meta,
    )
    .await?;
    let mut page = landing(sender, share, files);
    page.verification = Verification::Needed {
        to: Some(masked(&recipient)),
        code_sent: true,
    };
    Ok(Some(page))
}

/// Checks `typed` against the code emailed for the link of `raw_token`. Right and in time, the
/// code is used up and the browser gets a verified session of the link. `Ok(None)` when the
/// link needs no verification.
pub async fn check_code(
    core: &Core,
    raw_token: &str,
    typed: &str,
    meta: &RequestMeta,
) -> Result<Option<Verified>, Refusal> {
    let Resolved { share, .. } = resolve(core, raw_token, meta, true).await?;
    if !required(core, &share) {
        return Ok(None);
    }
    let share_key = format!("share-check:share:{}", share.id);
    let ip_key = format!("share-check:ip:{}", meta.ip.as_deref().unwrap_or("unknown"));
    let budgets = [
        (share_key.as_str(), CHECKS_PER_SHARE),
        (ip_key.as_str(), CHECKS_PER_ADDRESS),
    ];
    // Each attempt takes a unit first (so a burst cannot outrun the limit); a failure keeps it.
    if let Some(wait) = core
        .limiter
        .take_all(&budgets, CHECK_WINDOW)
        .await
        .map_err(ServiceError::from)?
    {
        let reason = serde_json::json!({ "reason": "rate-limited" });
        record(
            core,
            share.id,
            Action::ShareVerificationFailed,
            reason,
            meta,
        )
        .await?;
        return Err(Refusal::RateLimited(wait));
    }
    let typed: String = typed.chars().filter(char::is_ascii_digit).collect();
    let given = code_hash(share.id, &typed);
    let codes = verification::Entity::find()
        .filter(live(share.id, CODE))
        .all(&core.db)
        .await?;
    let matched = codes
        .iter()
        .find(|c| bool::from(c.secret_hash.ct_eq(&given)) && typed.len() == 6);
    let reason = match matched {
        Some(code) => match use_up(core, &share, code.id).await? {
            Some(verified) => {
                for (key, _) in budgets {
                    core.limiter
                        .give_back(key)
                        .await
                        .map_err(ServiceError::from)?;
                }
                core.mailer.forget(&format!("code-{}", share.id)).await;
                let until =
                    Utc::now() + chrono::Duration::from_std(verified.lasts).unwrap_or_default();
                let details = serde_json::json!({ "until": until });
                record(core, share.id, Action::ShareVerified, details, meta).await?;
                return Ok(Some(verified));
            }
            // Another request used it a moment before.
            None => "code used",
        },
        None if codes.is_empty() => "no live code",
        None => {
            let _gate = core.write_gate.enter().await;
            verification::Entity::update_many()
                .col_expr(
                    verification::Column::Failures,
                    Expr::col(verification::Column::Failures).add(1),
                )
                .filter(live(share.id, CODE))
                .exec(&core.db)
                .await?;
            "wrong code"
        }
    };
    let details = serde_json::json!({ "reason": reason });
    record(
        core,
        share.id,
        Action::ShareVerificationFailed,
        details,
        meta,
    )
    .await?;
    Err(Refusal::WrongCode {
        expired: reason != "wrong code",
    })
}

/// Uses up code `code_id` of `share` and opens a verified session in its place, in one commit;
/// `None` when the code was used up meanwhile.
async fn use_up(
    core: &Core,
    share: &share::Model,
    code_id: Uuid,
) -> Result<Option<Verified>, ServiceError> {
    let now = Utc::now();
    let until = session_end(core, share, now);
    let secret = Token::generate();
    let _gate = core.write_gate.enter().await;
    let txn = crate::db::begin_write(&core.db).await?;
    let used = verification::Entity::delete_many()
        .filter(verification::Column::Id.eq(code_id))
        .exec(&txn)
        .await?;
    if used.rows_affected != 1 {
        return Ok(None);
    }
    verification::Entity::insert(verification::ActiveModel {
        id: Set(Uuid::now_v7()),
        share_id: Set(share.id),
        kind: Set(SESSION.to_owned()),
        secret_hash: Set(secret.hash()),
        created_at: Set(now),
        expires_at: Set(until),
        failures: Set(0),
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    let lasts = (until - now).to_std().unwrap_or_default();
    Ok(Some(Verified { secret, lasts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_bound_to_its_share() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(code_hash(a, "123456"), code_hash(a, "123456"));
        assert_ne!(code_hash(a, "123456"), code_hash(b, "123456"));
        assert_ne!(code_hash(a, "123456"), code_hash(a, "123457"));
    }
}
