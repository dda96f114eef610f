//! A second factor for local accounts: TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps,
//! one step of clock skew either way), as every authenticator app speaks it. The secret is
//! wrapped under the active master-key version like a file's key (the account's id bound in),
//! so a copy of the database alone holds no usable secret; rotation rewraps it too. A code is
//! accepted once: the step it matched is recorded, and no code of that step or an earlier one
//! is accepted again. Ten recovery codes, shown once and kept as SHA-256, each work once.
//! Signing in with the second step is [`crate::services::users`]'s.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use secrecy::SecretString;
use uuid::Uuid;

use entity::{mfa_recovery_code, mfa_totp};

use crate::audit::{Action, Event, Outcome, RequestMeta};
use crate::crypto::{SecretKey, WrappedKey};
use crate::principal::{Operator, Session};
use crate::text::t;
use crate::{Core, KeyFailure, ServiceError, ServiceResult, password};

mod codes;

pub use codes::Proof;
pub(crate) use codes::accept;
use codes::{code_hash, digits, now_secs, recovery_code, step_number};

/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// The bytes of the TOTP secret (160 bits, as RFC 4226 recommends), taken from a fresh key.
const SECRET_BYTES: usize = 20;
/// What authenticator apps show the account under.
const ISSUER: &str = "Coffer";

/// What a person needs to add Coffer to an authenticator app: the secret (to type), its
/// `otpauth://` URL, and that URL as a QR code (SVG, drawn by Coffer: no outside service sees
/// the secret).
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret: SecretString,
    pub otpauth_url: SecretString,
    pub qr_svg: String,
}

fn totp(secret: &[u8], account: &str) -> ServiceResult<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(account.replace(':', ""))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("TOTP: {e:?}")))
}

/// The secret of an account's TOTP row, opened with the master key.
async fn secret_of(core: &Core, row: &mfa_totp::Model) -> ServiceResult<Vec<u8>> {
    let wrapped = WrappedKey {
        kek_version: row.kek_version,
        bytes: row.secret.clone(),
    };
    match core.unwrap_key(row.user_id, &wrapped).await {
        Ok(key) => Ok(key.expose()[..SECRET_BYTES].to_vec()),
        Err(KeyFailure::Fault(err)) => Err(err),
        Err(KeyFailure::Altered(err)) => Err(ServiceError::Internal(anyhow::anyhow!(
            "the second factor of account {} does not open: {err}",
            row.user_id
        ))),
    }
}

/// Whether the account has a second factor on (enrolment confirmed).
pub async fn enrolled(core: &Core, user_id: Uuid) -> ServiceResult<bool> {
    Ok(mfa_totp::Entity::find_by_id(user_id)
        .filter(mfa_totp::Column::ConfirmedAt.is_not_null())
        .one(&core.db)
        .await?
        .is_some())
}

/// Starts enrolment for the signed-in person: a fresh secret, waiting for a first code
/// ([`confirm`]). Starting again replaces a secret not yet confirmed; a second factor already
/// on must be turned off first (409).
pub async fn start(core: &Core, session: &Session) -> ServiceResult<Enrolment> {
    use secrecy::ExposeSecret as _;
    session.user.require_person()?;
    let user_id = session.user.id;
    if enrolled(core, user_id).await? {
        return Err(ServiceError::Conflict(t("mfa-error-already-on")));
    }
    let key = SecretKey::generate();
    let wrapped = core.wrap_key(user_id, &key).await?;
    let totp = totp(&key.expose()[..SECRET_BYTES], &session.user.email)?;
    let url = SecretString::from(
        totp.to_url()
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("TOTP URL: {e:?}")))?,
    );
    let qr_svg = qrcode::QrCode::new(url.expose_secret().as_bytes())
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("QR code: {e}")))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    let txn = crate::db::begin_write(&core.db).await?;
    mfa_totp::Entity::delete_many()
        .filter(mfa_totp::Column::UserId.eq(user_id))
        .filter(mfa_totp::Column::ConfirmedAt.is_null())
        .exec(&txn)
        .await?;
    let inserted = mfa_totp::Entity::insert(mfa_totp::ActiveModel {
        user_id: Set(user_id),
        secret: Set(wrapped.bytes),
        kek_version: Set(wrapped.kek_version),
        created_at: Set(Utc::now()),
        confirmed_at: Set(None),
        last_step: Set(None),
    })
    .exec(&txn)
    .await;
    if let Err(err) = inserted {
        // Another set-up of the same account committed first (a double click): one wins.
        return Err(match err.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                ServiceError::Conflict(t("mfa-error-enrolment-busy"))
            }
            _ => err.into(),
        });
    }
    txn.commit().await?;
    Ok(Enrolment {
        secret: SecretString::from(totp.secret().to_base32()),
        otpauth_url: url,
        qr_svg,
    })
}

/// Confirms enrolment with a first code from the app: the second factor is on, and the
/// recovery codes are returned (the only time they are shown). A wrong code is 422 and changes
/// nothing.
pub async fn confirm(
    core: &Core,
    session: &Session,
    code: &str,
    meta: &RequestMeta,
) -> ServiceResult<Vec<SecretString>> {
    session.user.require_person()?;
    let user_id = session.user.id;
    let row = mfa_totp::Entity::find_by_id(user_id)
        .filter(mfa_totp::Column::ConfirmedAt.is_null())
        .one(&core.db)
        .await?
        .ok_or_else(|| ServiceError::Conflict(t("mfa-error-no-enrolment")))?;
    let secret = secret_of(core, &row).await?;
    let step = totp(&secret, &session.user.email)?.check(&digits(code), now_secs());
    let Some(step) = step else {
        Event::new(Action::UserMfaFailed, session.user.actor())
            .target("user", user_id)
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "stage": "enrolment" }))
            .from(meta)
            .record(&core.db, &core.audit)
            .await?;
        return Err(ServiceError::Invalid(t("mfa-error-wrong-code")));
    };
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
    let txn = crate::db::begin_write(&core.db).await?;
    let confirmed = mfa_totp::Entity::update_many()
        .col_expr(mfa_totp::Column::ConfirmedAt, Expr::value(Utc::now()))
        .col_expr(mfa_totp::Column::LastStep, Expr::value(step_number(step)))
        .filter(mfa_totp::Column::UserId.eq(user_id))
        .filter(mfa_totp::Column::ConfirmedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if confirmed == 0 {
        return Err(ServiceError::Conflict(t("mfa-error-no-enrolment")));
    }
    mfa_recovery_code::Entity::delete_many()
        .filter(mfa_recovery_code::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    mfa_recovery_code::Entity::insert_many(codes.iter().map(|code| {
        mfa_recovery_code::ActiveModel {
            code_hash: Set(code_hash(code)),
            user_id: Set(user_id),
            used_at: Set(None),
        }
    }))
    .exec(&txn)
    .await?;
    Event::new(Action::UserMfaEnrolled, session.user.actor())
        .target("user", user_id)
        .details(serde_json::json!({ "factor": "totp", "recovery_codes": RECOVERY_CODES }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.session_cache.empty();
    Ok(codes.into_iter().map(SecretString::from).collect())
}

/// Turns the signed-in person's second factor off, given their password.
pub async fn turn_off(
    core: &Core,
    session: &Session,
    password: SecretString,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    session.user.require_session()?;
    let account = entity::user::Entity::find_by_id(session.user.id)
        .one(&core.db)
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    if !password::verify(password, account.password_hash).await? {
        return Err(ServiceError::Forbidden(t("password-error-current-wrong")));
    }
    remove(core, session.user.id, session.user.actor(), "self", meta).await
}

/// An admin resets `target`'s second factor (a lost phone): it is off until they enrol again.
pub async fn reset(
    core: &Core,
    by: Operator<'_>,
    target: Uuid,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    by.require_admin()?;
    if entity::user::Entity::find_by_id(target)
        .one(&core.db)
        .await?
        .is_none()
    {
        return Err(ServiceError::NotFound("account"));
    }
    remove(core, target, by.actor(), "admin", meta).await
}

async fn remove(
    core: &Core,
    user_id: Uuid,
    actor: crate::audit::Actor,
    by: &'static str,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    let txn = crate::db::begin_write(&core.db).await?;
    let removed = mfa_totp::Entity::delete_many()
        .filter(mfa_totp::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?
        .rows_affected;
    mfa_recovery_code::Entity::delete_many()
        .filter(mfa_recovery_code::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    Event::new(Action::UserMfaReset, actor)
        .target("user", user_id)
        .details(serde_json::json!({ "by": by, "was_on": removed > 0 }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.session_cache.empty();
    Ok(())
}

/// Rewraps every second factor's secret not under master-key version `to` (the end of a
/// rotation; a handful of rows, so in one pass). A row changed meanwhile is left for the next.
pub(crate) async fn rewrap_secrets(core: &Core, to: i32) -> Result<(), crate::JobError> {
    let rows = mfa_totp::Entity::find()
        .filter(mfa_totp::Column::KekVersion.ne(to))
        .all(&core.db)
        .await?;
    for row in rows {
        let wrapped = WrappedKey {
            kek_version: row.kek_version,
            bytes: row.secret.clone(),
        };
        let key = match core.unwrap_key(row.user_id, &wrapped).await {
            Ok(key) => key,
            Err(KeyFailure::Fault(err)) => {
                return Err(crate::JobError::Transient(anyhow::anyhow!("{err}")));
            }
            Err(KeyFailure::Altered(err)) => {
                tracing::error!(user = %row.user_id, error = %err, "a second factor's secret does not open: left as it is");
                continue;
            }
        };
        let rewrapped = core
            .wrap_key(row.user_id, &key)
            .await
            .map_err(|e| crate::JobError::Transient(anyhow::anyhow!("{e}")))?;
        let _gate = core.write_gate.enter().await;
        mfa_totp::Entity::update_many()
            .col_expr(mfa_totp::Column::Secret, Expr::value(rewrapped.bytes))
            .col_expr(
                mfa_totp::Column::KekVersion,
                Expr::value(rewrapped.kek_version),
            )
            .filter(mfa_totp::Column::UserId.eq(row.user_id))
            .filter(mfa_totp::Column::KekVersion.eq(row.kek_version))
            .filter(mfa_totp::Column::Secret.eq(row.secret))
            .exec(&core.db)
            .await?;
    }
    Ok(())
}

/// How many second factors' secrets are not under version `to`.
pub(crate) async fn secrets_not_under(
    db: &impl sea_orm::ConnectionTrait,
    to: i32,
) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::PaginatorTrait as _;
    mfa_totp::Entity::find()
        .filter(mfa_totp::Column::KekVersion.ne(to))
        .count(db)
        .await
}
