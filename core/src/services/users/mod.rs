//! Accounts: signing up (with the sign-up policy and verification), the first admin, and
//! `coffer admin create`. Signing in and out is [`signin`]; bearer tokens are resolved in
//! [`sessions`].

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _, SqlErr};
use secrecy::SecretString;
use uuid::Uuid;

use entity::user;

use crate::audit::{Action, Actor, Event, Outcome, RequestMeta};
use crate::principal::User;
use crate::text::t;
use crate::types::{EmailAddress, Role};
use crate::{Core, ServiceError, ServiceResult, password};

mod second_step;
pub mod sessions;
mod signin;

pub use second_step::complete as complete_second_step;
pub use sessions::{authenticate, authenticate_session, remove_dead_sessions};
pub(crate) use signin::typed_address;
pub use signin::{SignIn, change_password, login, logout};

/// How long the per-address sign-up budget (`COFFER_SIGNUPS_PER_HOUR`) lasts.
const SIGNUP_WINDOW: Duration = Duration::from_secs(3600);

/// Creates an account. The answer is the same whether or not the address has one already, and
/// takes as long (the password is hashed either way): sign-up tells nobody who is a user. The
/// owner of an existing account is told by email instead. Each client address has a budget of
/// sign-ups, taken before any hashing, and sign-ups wait in a hashing line of their own that
/// never holds up a login.
pub async fn signup(
    core: &Core,
    email: &str,
    password: SecretString,
    invite: Option<&str>,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    use secrecy::ExposeSecret as _;
    if !core.config.identity.local_login {
        return Err(ServiceError::Forbidden(t("signup-error-local-off")));
    }
    let email = EmailAddress::parse(email)?;
    password::check_strength(password.expose_secret())?;
    let ip_key = format!("signup:ip:{}", meta.ip.as_deref().unwrap_or("unknown"));
    let budget = [(ip_key.as_str(), core.config.signups_per_hour)];
    if let Some(retry_after) = core.limiter.take_all(&budget, SIGNUP_WINDOW).await? {
        core.audit
            .record_repeatable(
                Action::UserSignupRateLimited.to_string(),
                Event::new(Action::UserSignupRateLimited, Actor::Anonymous)
                    .outcome(Outcome::Denied)
                    .from(meta),
            )
            .await?;
        return Err(ServiceError::RateLimited { retry_after });
    }
    let admission = match super::signup::admit(core, &email, invite).await {
        Ok(admission) => admission,
        Err(refused) => {
            super::signup::record_refusal(core, &email, meta).await?;
            return Err(refused);
        }
    };
    let hash = password::hash_for_signup(&core.signup_slots, password).await?;
    // An invitation was emailed to the address: following it proved the address.
    let invited = matches!(admission, super::signup::Admission::Invited(_));
    let created = create_user(core, &email, hash, Role::User, invited, meta).await;
    if let super::signup::Admission::Invited(invite) = admission
        && matches!(created, Ok(_) | Err(ServiceError::Conflict(_)))
    {
        super::signup::redeem(core, invite).await?;
    }
    match created {
        Ok(user) => {
            if !invited {
                super::verification::send_link_later(core, user.id, &user.email);
            }
            Ok(())
        }
        Err(ServiceError::Conflict(_)) => {
            if let Some(existing) = find_by_email(core, &email).await? {
                core.audit
                    .record(
                        Event::new(Action::UserSignupExisting, Actor::Anonymous)
                            .target("user", existing.id)
                            .outcome(Outcome::Denied)
                            .from(meta),
                    )
                    .await?;
            }
            tell_existing_owner(core, &email);
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Emails the owner of an address that someone tried to sign up with, off the request (so the
/// answer's timing says nothing either).
fn tell_existing_owner(core: &Core, email: &EmailAddress) {
    let (core, to) = (core.clone(), email.as_str().to_owned());
    tokio::spawn(async move {
        let sign_in = core.config.public_link("/app/signin");
        let sent = match core.config.mail_from.parse() {
            Ok(from) => match crate::mail::account_exists_message(&from, &to, &sign_in) {
                Ok(message) => core
                    .mailer
                    .send(
                        message,
                        &format!("account-exists-{}", Uuid::new_v4().simple()),
                    )
                    .await
                    .map_err(|e| e.detail),
                Err(err) => Err(format!("{err:#}")),
            },
            Err(err) => Err(format!("COFFER_MAIL_FROM: {err}")),
        };
        if let Err(err) = sent {
            tracing::warn!(error = %err, "could not tell an account's owner of a sign-up with their address");
        }
    });
}

async fn create_user(
    core: &Core,
    email: &EmailAddress,
    hash: String,
    role: Role,
    verified: bool,
    meta: &RequestMeta,
) -> ServiceResult<User> {
    let id = Uuid::now_v7();
    let txn = crate::db::begin_write(&core.db).await?;
    let inserted = user::Entity::insert(user::ActiveModel {
        id: Set(id),
        email: Set(email.as_str().to_owned()),
        password_hash: Set(hash),
        role: Set(role),
        disabled: Set(false),
        created_at: Set(Utc::now()),
        email_verified_at: Set(verified.then(Utc::now)),
    })
    .exec(&txn)
    .await;
    if let Err(err) = inserted {
        return Err(match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                ServiceError::Conflict(t("user-error-exists"))
            }
            _ => err.into(),
        });
    }
    Event::new(Action::UserSignup, Actor::User(id))
        .target("user", id)
        .details(serde_json::json!({ "email": email.as_str(), "role": role.as_str() }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    Ok(User {
        id,
        email: email.as_str().to_owned(),
        role,
        access: crate::principal::Access::Session,
    })
}

/// The first admin, from `COFFER_ADMIN_EMAIL`/`COFFER_ADMIN_PASSWORD` at start-up: creates the
/// account when there is none, and otherwise changes nothing. Start-up never takes over an
/// account someone signed up with, nor re-enables or re-promotes one an admin has changed; what
/// it leaves alone it says in the log.
pub async fn bootstrap_admin(
    core: &Core,
    email: &EmailAddress,
    password: SecretString,
) -> ServiceResult<()> {
    use secrecy::ExposeSecret as _;
    match find_by_email(core, email).await? {
        None => {
            password::check_strength(password.expose_secret())?;
            create_admin_account(core, email, password).await?;
        }
        Some(existing) if existing.role != Role::Admin => tracing::warn!(
            "COFFER_ADMIN_EMAIL names an existing account that is not an admin: it was left as it is (to make it an admin, run `coffer admin create --email … --promote`, which also sets its password)"
        ),
        Some(existing) => {
            if existing.disabled {
                tracing::warn!(
                    "the account COFFER_ADMIN_EMAIL names is disabled: start-up leaves it so (another admin can enable it)"
                );
            }
            if !password::verify(password, existing.password_hash)
                .await
                .map_err(ServiceError::Internal)?
            {
                tracing::warn!(
                    "COFFER_ADMIN_PASSWORD is not the password of the account COFFER_ADMIN_EMAIL names: it only sets the password of an account it creates; change the password where the account signs in"
                );
            }
        }
    }
    Ok(())
}

/// A new admin account with `password` (checked by the caller), its address verified: an
/// operator made it, at start-up or with `coffer admin create`.
async fn create_admin_account(
    core: &Core,
    email: &EmailAddress,
    password: SecretString,
) -> ServiceResult<User> {
    let hash = password::hash(password).await?;
    create_user(
        core,
        email,
        hash,
        Role::Admin,
        true,
        &RequestMeta::default(),
    )
    .await
}

/// `coffer admin create`: a new admin account, or, with `promote`, an existing account made an
/// admin (enabled, with the password given, signed out everywhere). Without `promote` an
/// existing account is refused: the command never takes over an account silently.
pub async fn create_admin(
    core: &Core,
    email: &EmailAddress,
    password: SecretString,
    promote: bool,
) -> ServiceResult<User> {
    use secrecy::ExposeSecret as _;
    password::check_strength(password.expose_secret())?;
    let Some(existing) = find_by_email(core, email).await? else {
        return create_admin_account(core, email, password).await;
    };
    if !promote {
        return Err(ServiceError::Conflict(t("user-error-exists-promote")));
    }
    let hash = password::hash(password).await?;
    let txn = crate::db::begin_write(&core.db).await?;
    user::Entity::update_many()
        .col_expr(user::Column::Role, Expr::value(Role::Admin))
        .col_expr(user::Column::Disabled, Expr::value(false))
        .col_expr(user::Column::PasswordHash, Expr::value(hash))
        .filter(user::Column::Id.eq(existing.id))
        .exec(&txn)
        .await?;
    sessions::end_every(&txn, existing.id, None).await?;
    Event::new(Action::AdminUserChanged, Actor::System)
        .target("user", existing.id)
        .details(serde_json::json!({
            "role": Role::Admin.as_str(),
            "disabled": false,
            "password": "set",
            "was": { "role": existing.role.as_str(), "disabled": existing.disabled },
            "via": "coffer admin create --promote",
        }))
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.session_cache.empty();
    Ok(User {
        id: existing.id,
        email: existing.email,
        role: Role::Admin,
        access: crate::principal::Access::Session,
    })
}

async fn find_by_email(core: &Core, email: &EmailAddress) -> ServiceResult<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&core.db)
        .await?)
}
