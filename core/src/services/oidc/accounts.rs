//! The Coffer account of a provider account: found by the issuer and `sub` it was linked by
//! (never by email address alone), linked to the signed-in account when the person asked,
//! or made just in time when `COFFER_OIDC_JIT` allows; its role follows the role claim at each
//! sign-in when `COFFER_OIDC_ROLE_CLAIM` is set.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait as _, EntityTrait as _, QueryFilter as _, SqlErr};
use secrecy::SecretString;
use uuid::Uuid;

use entity::{oidc_identity, user};

use super::{NotFinished, Provider, Refusal};
use crate::audit::{Action, Actor, Event, RequestMeta};
use crate::config::RoleMapping;
use crate::identity_provider::ProviderAccount;
use crate::principal::User;
use crate::types::{EmailAddress, Role, Token};
use crate::{Core, ServiceError};

fn refused(refusal: Refusal) -> NotFinished {
    NotFinished::Refused(refusal, None)
}

/// The account the provider's `claims` sign in to (`link`: the signed-in account the person
/// asked to link them to).
pub(super) async fn resolve(
    core: &Core,
    provider: &Provider,
    claims: &ProviderAccount,
    link: Option<Uuid>,
    meta: &RequestMeta,
) -> Result<User, NotFinished> {
    let (issuer, subject) = (claims.issuer.clone(), claims.subject.clone());
    let found = oidc_identity::Entity::find_by_id((issuer.clone(), subject.clone()))
        .one(&core.db)
        .await?;
    let account = match (found, link) {
        (Some(identity), Some(asked)) if identity.user_id != asked => {
            return Err(refused(Refusal::LinkedElsewhere));
        }
        (Some(identity), _) => user::Entity::find_by_id(identity.user_id)
            .one(&core.db)
            .await?
            .ok_or_else(|| refused(Refusal::UnknownAccount))?,
        (None, Some(asked)) => link_to(core, &issuer, &subject, asked, meta).await?,
        (None, None) if provider.config.jit => {
            create(core, provider, claims, &issuer, &subject, meta).await?
        }
        (None, None) => return Err(refused(Refusal::UnknownAccount)),
    };
    if account.disabled {
        return Err(refused(Refusal::Disabled));
    }
    let role = match &provider.config.roles {
        Some(mapping) => follow_role(core, &account, role_of(claims, mapping)).await?,
        None => account.role,
    };
    {
        let _gate = core.write_gate.enter().await;
        oidc_identity::Entity::update_many()
            .col_expr(oidc_identity::Column::LastLoginAt, Expr::value(Utc::now()))
            .filter(oidc_identity::Column::Issuer.eq(&issuer))
            .filter(oidc_identity::Column::Subject.eq(&subject))
            .exec(&core.db)
            .await?;
    }
    Ok(User {
        role,
        ..User::from(account)
    })
}

/// The role `claims` give: admin when the mapped claim (a string, or a list of strings) holds
/// the admin group.
fn role_of(claims: &ProviderAccount, mapping: &RoleMapping) -> Role {
    let holds = match claims.other.get(&mapping.claim) {
        Some(serde_json::Value::String(one)) => *one == mapping.admin_group,
        Some(serde_json::Value::Array(many)) => many
            .iter()
            .any(|v| v.as_str() == Some(mapping.admin_group.as_str())),
        _ => false,
    };
    if holds { Role::Admin } else { Role::User }
}

/// Gives `account` the role the provider says, audited as an admin change by the system.
async fn follow_role(core: &Core, account: &user::Model, role: Role) -> Result<Role, NotFinished> {
    if role == account.role {
        return Ok(role);
    }
    let txn = crate::db::begin_write(&core.db).await?;
    user::Entity::update_many()
        .col_expr(user::Column::Role, Expr::value(role))
        .filter(user::Column::Id.eq(account.id))
        .exec(&txn)
        .await?;
    Event::new(Action::AdminUserChanged, Actor::System)
        .target("user", account.id)
        .details(serde_json::json!({
            "role": role.as_str(),
            "was": { "role": account.role.as_str() },
            "via": "identity provider's role claim",
        }))
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.session_cache.empty();
    Ok(role)
}

/// Links the provider account to the signed-in account `user_id` (which has none from this
/// issuer yet).
async fn link_to(
    core: &Core,
    issuer: &str,
    subject: &str,
    user_id: Uuid,
    meta: &RequestMeta,
) -> Result<user::Model, NotFinished> {
    let account = user::Entity::find_by_id(user_id)
        .one(&core.db)
        .await?
        .ok_or_else(|| refused(Refusal::Expired))?;
    let has_one = oidc_identity::Entity::find()
        .filter(oidc_identity::Column::UserId.eq(user_id))
        .filter(oidc_identity::Column::Issuer.eq(issuer))
        .one(&core.db)
        .await?
        .is_some();
    if has_one {
        return Err(refused(Refusal::LinkedElsewhere));
    }
    let txn = crate::db::begin_write(&core.db).await?;
    insert_identity(&txn, issuer, subject, user_id).await?;
    linked_event(user_id, Actor::User(user_id), issuer, subject, meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    Ok(account)
}

/// A new account for the provider account (just in time): its address from the ID token
/// (which the provider must not say is unverified), verified; its role from the role claim
/// when mapped; a password nobody knows (a forgotten-password link can set one, where local
/// passwords are allowed).
async fn create(
    core: &Core,
    provider: &Provider,
    claims: &ProviderAccount,
    issuer: &str,
    subject: &str,
    meta: &RequestMeta,
) -> Result<user::Model, NotFinished> {
    let email = claims
        .email
        .as_deref()
        .filter(|_| claims.email_verified != Some(false))
        .and_then(|e| EmailAddress::parse(e).ok())
        .ok_or_else(|| refused(Refusal::NoAddress))?;
    let role = provider
        .config
        .roles
        .as_ref()
        .map_or(Role::User, |mapping| role_of(claims, mapping));
    let unknown = SecretString::from(Token::generate().expose().to_owned());
    let hash = crate::password::hash(unknown)
        .await
        .map_err(ServiceError::from)?;
    let now = Utc::now();
    let account = user::Model {
        id: Uuid::now_v7(),
        email: email.as_str().to_owned(),
        password_hash: hash,
        role,
        disabled: false,
        created_at: now,
        email_verified_at: Some(now),
    };
    let txn = crate::db::begin_write(&core.db).await?;
    let inserted = user::Entity::insert(user::ActiveModel::from(account.clone()))
        .exec(&txn)
        .await;
    if let Err(err) = inserted {
        return Err(match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => refused(Refusal::AddressTaken),
            _ => err.into(),
        });
    }
    insert_identity(&txn, issuer, subject, account.id).await?;
    Event::new(Action::UserSignup, Actor::User(account.id))
        .target("user", account.id)
        .details(serde_json::json!({
            "email": account.email,
            "role": role.as_str(),
            "via": "oidc",
        }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    linked_event(account.id, Actor::System, issuer, subject, meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    Ok(account)
}

async fn insert_identity(
    txn: &sea_orm::DatabaseTransaction,
    issuer: &str,
    subject: &str,
    user_id: Uuid,
) -> Result<(), NotFinished> {
    let now = Utc::now();
    let inserted = oidc_identity::Entity::insert(oidc_identity::ActiveModel {
        issuer: Set(issuer.to_owned()),
        subject: Set(subject.to_owned()),
        user_id: Set(user_id),
        created_at: Set(now),
        last_login_at: Set(now),
    })
    .exec(txn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(err) => Err(match err.sql_err() {
            // Linked a moment ago by a sign-in running beside this one.
            Some(SqlErr::UniqueConstraintViolation(_)) => refused(Refusal::LinkedElsewhere),
            _ => err.into(),
        }),
    }
}

fn linked_event(
    user_id: Uuid,
    actor: Actor,
    issuer: &str,
    subject: &str,
    meta: &RequestMeta,
) -> Event {
    Event::new(Action::UserOidcLinked, actor)
        .target("user", user_id)
        .details(serde_json::json!({ "issuer": issuer, "subject": subject }))
        .from(meta)
}
