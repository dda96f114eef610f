//! Admins manage accounts: list them, change a role, disable or re-enable one.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect};
use uuid::Uuid;

use entity::user;

use crate::audit::{Action, Event, RequestMeta};
use crate::principal::{Operator, User};
use crate::text::t;
use crate::types::Role;
use crate::{Core, ServiceError, ServiceResult};

/// An account as an admin sees it (never its password hash).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for Account {
    fn from(m: user::Model) -> Self {
        Self {
            role: m.role,
            id: m.id,
            email: m.email,
            disabled: m.disabled,
            created_at: m.created_at,
        }
    }
}

/// Accounts in email order, `limit` at a time, after the email `after`; with the cursor of the
/// next page when there is one.
pub async fn list(
    core: &Core,
    by: Operator<'_>,
    after: Option<&str>,
    limit: u64,
) -> ServiceResult<(Vec<Account>, Option<String>)> {
    by.require_admin()?;
    let mut query = user::Entity::find()
        .order_by_asc(user::Column::Email)
        .limit(limit + 1);
    if let Some(after) = after {
        query = query.filter(user::Column::Email.gt(after));
    }
    let mut rows = query.all(&core.db).await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last().map(|r| r.email.clone())
    } else {
        None
    };
    Ok((rows.into_iter().map(Account::from).collect(), next))
}

/// What an admin may change about an account.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// Applies `change` to an account. Disabling signs the account out everywhere at once. An admin
/// cannot demote or disable their own account, so there is always one admin left to undo it.
pub async fn change(
    core: &Core,
    admin: &User,
    target: Uuid,
    change: Change,
    meta: &RequestMeta,
) -> ServiceResult<Account> {
    admin.require_admin()?;
    if change.role.is_none() && change.disabled.is_none() {
        return Err(ServiceError::Invalid(t("account-error-nothing-to-change")));
    }
    if target == admin.id && (change.role == Some(Role::User) || change.disabled == Some(true)) {
        return Err(ServiceError::Conflict(t("account-error-own-account")));
    }
    let txn = crate::db::begin_write(&core.db).await?;
    let before = user::Entity::find_by_id(target)
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound("user"))?;
    let mut update = user::Entity::update_many().filter(user::Column::Id.eq(target));
    if let Some(role) = change.role {
        update = update.col_expr(user::Column::Role, Expr::value(role));
    }
    if let Some(disabled) = change.disabled {
        update = update.col_expr(user::Column::Disabled, Expr::value(disabled));
    }
    update.exec(&txn).await?;
    if change.disabled == Some(true) {
        crate::services::users::sessions::end_every(&txn, target, None).await?;
        crate::jobs::notify::cancel_pending_of_owner(
            &txn,
            &core.audit,
            target,
            "the sender's account is disabled",
        )
        .await?;
    }
    let after = user::Model {
        role: change.role.unwrap_or(before.role),
        disabled: change.disabled.unwrap_or(before.disabled),
        ..before.clone()
    };
    Event::new(Action::AdminUserChanged, admin.actor())
        .target("user", target)
        .details(serde_json::json!({
            "role": after.role.as_str(),
            "disabled": after.disabled,
            "was": { "role": before.role.as_str(), "disabled": before.disabled },
        }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.session_cache.empty();
    Ok(after.into())
}
