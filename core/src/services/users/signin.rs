//! Signing in and out: the login with its rate limits (per account and address, per address,
//! and a pace per account), password changes, and signing out. Resolving a bearer token is
//! [`super::sessions`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QuerySelect as _};
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};

use entity::{session, user};

use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::config::PasswordUse;
use crate::principal::{Session, User};
use crate::text::t;
use crate::types::{EmailAddress, Role, Token};
use crate::{Core, ServiceError, ServiceResult, password};

const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins to one account from one address per window: the lockout, which nobody
/// elsewhere can impose on the account's owner.
const LOGIN_FAILURES_PER_ACCOUNT_AND_IP: u32 = 10;
/// Failed sign-ins from one address per window, whatever the accounts.
const LOGIN_FAILURES_PER_IP: u32 = 50;
/// Failed sign-ins to one account per window, from all addresses, before its attempts are paced.
const LOGIN_FAILURES_PER_ACCOUNT: u32 = 20;
/// Past that, one attempt on the account per this long: guessing spread over many addresses is
/// slowed to a crawl, and the owner waits seconds, never a window.
const LOGIN_PACE: Duration = Duration::from_secs(2);

/// The rate-limit keys of a sign-in: account and address, address, account, and the
/// account's pace.
fn limiter_keys(email: &str, meta: &RequestMeta) -> [String; 4] {
    let account = hex::encode(&Sha256::digest(email.trim().to_lowercase().as_bytes())[..16]);
    let ip = meta.ip.as_deref().unwrap_or("unknown");
    [
        format!("login:account-ip:{account}:{ip}"),
        format!("login:ip:{ip}"),
        format!("login:account:{account}"),
        format!("login:pace:{account}"),
    ]
}

/// The details of a failed sign-in with no account's address: the address as a keyed hash under
/// the active master key (`hash_key` names its version), which only the keyring's holder can
/// match against a guess.
pub(crate) async fn typed_address(core: &Core, email: &str, reason: &str) -> serde_json::Value {
    let normalized = email.trim().to_lowercase();
    let keyed = match crate::services::keys::active_version(&core.db).await {
        Ok(version) => crate::services::keys::verified_key(core, version)
            .await
            .ok()
            .map(|key| {
                (
                    version,
                    key.keyed_hash(b"coffer audit typed address v1", normalized.as_bytes()),
                )
            }),
        Err(_) => None,
    };
    match keyed {
        Some((version, hash)) => {
            serde_json::json!({ "email_hash": hash, "hash_key": version, "reason": reason })
        }
        None => serde_json::json!({ "reason": reason }),
    }
}

/// Takes one unit of the account-and-address and the address budgets for a password check
/// *before* it is made (so a burst cannot outrun the limit; a failure keeps it), or refuses.
async fn take_password_attempt(
    core: &Core,
    account_ip_key: &str,
    ip_key: &str,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    let budgets = [
        (account_ip_key, LOGIN_FAILURES_PER_ACCOUNT_AND_IP),
        (ip_key, LOGIN_FAILURES_PER_IP),
    ];
    if let Some(retry_after) = core.limiter.take_all(&budgets, LOGIN_WINDOW).await? {
        audit_limited(core, "address", meta).await?;
        return Err(ServiceError::RateLimited { retry_after });
    }
    Ok(())
}

/// After a right password: the account-and-address failures are forgiven, the address's unit
/// is handed back.
async fn give_back_password_attempt(
    core: &Core,
    account_ip_key: &str,
    ip_key: &str,
) -> ServiceResult<()> {
    core.limiter.clear(account_ip_key).await?;
    core.limiter.give_back(ip_key).await?;
    Ok(())
}

/// Audits a sign-in refused by a rate limit, counted with the others refused by the same limit.
async fn audit_limited(core: &Core, limit: &'static str, meta: &RequestMeta) -> ServiceResult<()> {
    core.audit
        .record_repeatable(
            format!("user.login_rate_limited:{limit}"),
            Event::new(Action::UserLoginRateLimited, Actor::Anonymous)
                .outcome(Outcome::Denied)
                .details(serde_json::json!({ "limit": limit }))
                .from(meta),
        )
        .await?;
    Ok(())
}

/// Checks the password and opens a session. Unknown email, wrong password and disabled account
/// look the same from outside (same error, a hash verified either way). `replacing` is the
/// token of the session this sign-in takes the place of (the browser's cookie): a successful
/// sign-in ends it, whoever it belonged to, so that signing in again never leaves the old
/// session alive.
pub async fn login(
    core: &Core,
    email: &str,
    password: SecretString,
    replacing: Option<&str>,
    meta: &RequestMeta,
) -> ServiceResult<SignIn> {
    let password_use = core.config.identity.password_allowed(email);
    if password_use == PasswordUse::Refused {
        core.audit
            .record_repeatable(
                "user.login_failed:local-off".to_owned(),
                Event::new(Action::UserLoginFailed, Actor::Anonymous)
                    .outcome(Outcome::Denied)
                    .details(serde_json::json!({ "reason": "local passwords are off" }))
                    .from(meta),
            )
            .await?;
        return Err(ServiceError::Forbidden(t("signin-error-local-off")));
    }
    let [account_ip_key, ip_key, account_key, pace_key] = limiter_keys(email, meta);
    take_password_attempt(core, &account_ip_key, &ip_key, meta).await?;
    // Many failures on the account from everywhere: one attempt per pace.
    let counted = core
        .limiter
        .take(&account_key, LOGIN_FAILURES_PER_ACCOUNT, LOGIN_WINDOW)
        .await?
        .is_none();
    if !counted && let Some(retry_after) = core.limiter.take(&pace_key, 1, LOGIN_PACE).await? {
        core.limiter.give_back(&account_ip_key).await?;
        core.limiter.give_back(&ip_key).await?;
        audit_limited(core, "account", meta).await?;
        return Err(ServiceError::RateLimited { retry_after });
    }

    let account = match EmailAddress::parse(email) {
        Ok(parsed) => {
            user::Entity::find()
                .filter(user::Column::Email.eq(parsed.as_str()))
                .one(&core.db)
                .await?
        }
        Err(_) => None,
    };
    let stored = match &account {
        Some(a) => a.password_hash.clone(),
        None => password::dummy_hash()
            .await
            .map_err(ServiceError::Internal)?,
    };
    let matches = password::verify(password, stored).await?;

    // With local passwords off, the break-glass admin's address takes only an admin's account.
    let allowed = |a: &user::Model| password_use == PasswordUse::Anyone || a.role == Role::Admin;
    let account = match account {
        Some(a) if matches && !a.disabled && allowed(&a) => a,
        other => {
            let reason = match &other {
                None => "unknown email",
                Some(a) if a.disabled => "account disabled",
                Some(a) if !allowed(a) => "local passwords are off",
                Some(_) => "wrong password",
            };
            let event = Event::new(Action::UserLoginFailed, Actor::Anonymous)
                .outcome(Outcome::Denied)
                .from(meta);
            let (event, kind) = match &other {
                Some(a) => (
                    event
                        .target("user", a.id)
                        .details(serde_json::json!({ "email": a.email, "reason": reason })),
                    format!("user.login_failed:{}", a.id),
                ),
                // What was typed is no account's address: it may be a password typed in the
                // wrong field, so it is never stored, only a keyed hash of it (and unknown
                // addresses are as many as a sprayer can invent: one kind for all).
                None => (
                    event.details(typed_address(core, email, reason).await),
                    "user.login_failed:unknown".to_owned(),
                ),
            };
            core.audit.record_repeatable(kind, event).await?;
            return Err(ServiceError::Unauthorized);
        }
    };

    let signed_in = if crate::services::mfa::enrolled(core, account.id).await? {
        let (challenge, expires_at) = super::second_step::challenge(core, account.id).await?;
        SignIn::SecondStep {
            challenge,
            expires_at,
        }
    } else {
        let user = User::from(account);
        let (token, expires_at) =
            super::sessions::open(core, &user, "password", None, replacing, meta).await?;
        SignIn::Session(token, expires_at)
    };
    give_back_password_attempt(core, &account_ip_key, &ip_key).await?;
    if counted {
        core.limiter.give_back(&account_key).await?;
    }
    Ok(signed_in)
}

/// What a right password leads to.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in: the session's token, and when the session expires.
    Session(Token, DateTime<Utc>),
    /// The account has a second factor: the sign-in completes with a code and this challenge
    /// ([`super::second_step::complete`]) before it expires.
    SecondStep {
        challenge: Token,
        expires_at: DateTime<Utc>,
    },
}

/// Changes the signed-in account's password, given the current one: every other session of
/// the account ends (whoever holds one may be why the password changes); this one stays. A
/// wrong current password counts against the sign-in limits of the account and address.
pub async fn change_password(
    core: &Core,
    session: &Session,
    current: SecretString,
    new: SecretString,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    use secrecy::ExposeSecret as _;
    session.user.require_session()?;
    password::check_strength(new.expose_secret())?;
    let account = user::Entity::find_by_id(session.user.id)
        .one(&core.db)
        .await?
        .ok_or(ServiceError::Unauthorized)?;
    let [account_ip_key, ip_key, _, _] = limiter_keys(&account.email, meta);
    take_password_attempt(core, &account_ip_key, &ip_key, meta).await?;
    if !password::verify(current, account.password_hash.clone()).await? {
        Event::new(Action::UserPasswordChangeFailed, session.user.actor())
            .target("user", account.id)
            .outcome(Outcome::Denied)
            .details(serde_json::json!({ "reason": "wrong current password" }))
            .from(meta)
            .record(&core.db, &core.audit)
            .await?;
        return Err(ServiceError::Forbidden(t("password-error-current-wrong")));
    }
    let hash = password::hash(new).await?;
    let txn = crate::db::begin_write(&core.db).await?;
    user::Entity::update_many()
        .col_expr(
            user::Column::PasswordHash,
            sea_orm::sea_query::Expr::value(hash),
        )
        .filter(user::Column::Id.eq(account.id))
        .exec(&txn)
        .await?;
    let ended = super::sessions::end_every(&txn, account.id, Some(session.id)).await?;
    Event::new(Action::UserPasswordChanged, session.user.actor())
        .target("user", account.id)
        .details(serde_json::json!({ "other_sessions_ended": ended }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.session_cache.empty();
    give_back_password_attempt(core, &account_ip_key, &ip_key).await?;
    Ok(())
}

/// Ends a signed-in session (a personal API token is revoked through its own route instead):
/// how it was opened (`password`, `oidc`), for the web app to end the identity provider's
/// session too (`services::oidc::logout_url`).
pub async fn logout(
    core: &Core,
    session: &Session,
    meta: &RequestMeta,
) -> ServiceResult<Option<String>> {
    session.user.require_person()?;
    let method: Option<String> = session::Entity::find_by_id(session.id)
        .select_only()
        .column(session::Column::Method)
        .into_tuple::<Option<String>>()
        .one(&core.db)
        .await?
        .flatten();
    let txn = crate::db::begin_write(&core.db).await?;
    session::Entity::update_many()
        .col_expr(
            session::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(session::Column::Id.eq(session.id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    Event::new(Action::UserLogout, session.user.actor())
        .target("user", session.user.id)
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.session_cache.empty();
    Ok(method)
}
