//! Personal API tokens: made by a signed-in person for scripts and integrations, shown once,
//! kept only as their SHA-256, limited to the scopes chosen and to an expiry, revoked at once.
//! A request with one acts as the account within those scopes ([`crate::principal::User`]);
//! what it does is audited as usual with the token named, and its use is noted in `last_used`
//! at most once a minute (a download a second through a token writes one row a minute).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _,
};
use uuid::Uuid;

use entity::api_token;

use crate::audit::{Action, Event, RequestMeta};
use crate::principal::{Scope, Scopes, User};
use crate::text::{Arg, t, t_with};
use crate::types::{Role, Token};
use crate::{Core, ServiceError, ServiceResult};

mod presented;

pub(crate) use presented::authenticate;
pub use presented::{Secret, looks_like_token};

/// What every personal API token starts with: a script's logs, a secret scanner and Coffer
/// itself can tell one from a session's token.
pub const PREFIX: &str = "coffer_pat_";
/// Live tokens an account may hold at once.
pub const MAX_LIVE: u64 = 50;
/// The longest a token may live, and its life when none is asked for.
pub const MAX_DAYS: i64 = 366;
pub const DEFAULT_DAYS: i64 = 30;
const MAX_NAME_CHARS: usize = 100;
/// `last_used` is written when it is older than this.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// Revoked and expired tokens are listed this long, then deleted by the sweep.
const KEPT_AFTER_DEATH: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// What a person asks for.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub name: String,
    /// Scope words (`files:read`, …).
    pub scopes: Vec<String>,
    /// 1 to [`MAX_DAYS`]; [`DEFAULT_DAYS`] when not given.
    pub expires_in_days: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// A token as its owner sees it (never its secret).
#[derive(Debug, Clone)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub state: TokenState,
}

impl From<api_token::Model> for TokenView {
    fn from(m: api_token::Model) -> Self {
        let state = if m.revoked_at.is_some() {
            TokenState::Revoked
        } else if m.expires_at <= Utc::now() {
            TokenState::Expired
        } else {
            TokenState::Active
        };
        Self {
            id: m.id,
            name: m.name,
            scopes: Scopes::from_words(&m.scopes),
            created_at: m.created_at,
            expires_at: m.expires_at,
            last_used_at: m.last_used_at,
            revoked_at: m.revoked_at,
            state,
        }
    }
}

fn checked(owner: &User, new: &NewToken) -> ServiceResult<(String, Scopes, i64)> {
    let name = new.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ServiceError::Invalid(t_with(
            "token-error-name",
            [("max", Arg::from(MAX_NAME_CHARS))],
        )));
    }
    let mut scopes = Vec::with_capacity(new.scopes.len());
    for word in &new.scopes {
        let scope = Scope::parse(word.trim()).ok_or_else(|| {
            ServiceError::Invalid(t_with(
                "token-error-unknown-scope",
                [(
                    "scope",
                    Arg::from(word.chars().take(40).collect::<String>()),
                )],
            ))
        })?;
        if scope == Scope::AuditRead && owner.role != Role::Admin {
            return Err(ServiceError::Invalid(t("token-error-audit-scope")));
        }
        scopes.push(scope);
    }
    let scopes: Scopes = scopes.into_iter().collect();
    if scopes.is_empty() {
        return Err(ServiceError::Invalid(t("token-error-no-scope")));
    }
    let days = new.expires_in_days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ServiceError::Invalid(t_with(
            "token-error-expiry",
            [("max", Arg::from(MAX_DAYS))],
        )));
    }
    Ok((name.to_owned(), scopes, days))
}

/// Makes a token for the signed-in `owner` (never through another token). The secret is in the
/// answer only.
pub async fn create(
    core: &Core,
    owner: &User,
    new: NewToken,
    meta: &RequestMeta,
) -> ServiceResult<(TokenView, Secret)> {
    owner.require_session()?;
    let (name, scopes, days) = checked(owner, &new)?;
    let now = Utc::now();
    let txn = crate::db::begin_write(&core.db).await?;
    let live = api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(owner.id))
        .filter(api_token::Column::RevokedAt.is_null())
        .filter(api_token::Column::ExpiresAt.gt(now))
        .count(&txn)
        .await?;
    if live >= MAX_LIVE {
        return Err(ServiceError::Conflict(t_with(
            "token-error-too-many",
            [("max", Arg::from(MAX_LIVE))],
        )));
    }
    let secret = Token::generate();
    let model = api_token::Model {
        id: Uuid::now_v7(),
        user_id: owner.id,
        name,
        token_hash: secret.hash(),
        scopes: scopes.to_words(),
        created_at: now,
        expires_at: now + chrono::Duration::days(days),
        last_used_at: None,
        revoked_at: None,
    };
    api_token::Entity::insert(api_token::ActiveModel {
        id: Set(model.id),
        user_id: Set(model.user_id),
        name: Set(model.name.clone()),
        token_hash: Set(model.token_hash.clone()),
        scopes: Set(model.scopes.clone()),
        created_at: Set(model.created_at),
        expires_at: Set(model.expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
    })
    .exec(&txn)
    .await?;
    Event::new(Action::TokenCreated, owner.actor())
        .target("token", model.id)
        .details(serde_json::json!({
            "name": model.name,
            "scopes": model.scopes,
            "expires_at": model.expires_at.to_rfc3339(),
        }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    Ok((model.into(), Secret(secret)))
}

/// The signed-in `owner`'s tokens, newest first: live ones, and dead ones for a while.
pub async fn list(core: &Core, owner: &User) -> ServiceResult<Vec<TokenView>> {
    owner.require_session()?;
    Ok(api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(owner.id))
        .order_by_desc(api_token::Column::Id)
        .all(&core.db)
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect())
}

/// Revokes one of the signed-in `owner`'s tokens: the next request with it is refused.
/// Revoking one already dead changes nothing and is not an error.
pub async fn revoke(core: &Core, owner: &User, id: Uuid, meta: &RequestMeta) -> ServiceResult<()> {
    owner.require_session()?;
    let txn = crate::db::begin_write(&core.db).await?;
    let found = api_token::Entity::find_by_id(id)
        .filter(api_token::Column::UserId.eq(owner.id))
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound("token"))?;
    if found.revoked_at.is_some() {
        return Ok(());
    }
    api_token::Entity::update_many()
        .col_expr(api_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(api_token::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    Event::new(Action::TokenRevoked, owner.actor())
        .target("token", id)
        .details(serde_json::json!({ "name": found.name }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Revokes every live token of `user_id` inside `txn` (a forced password reset); returns how
/// many (expired ones are dead already and not counted).
pub async fn revoke_all(
    txn: &impl sea_orm::ConnectionTrait,
    user_id: Uuid,
) -> Result<u64, sea_orm::DbErr> {
    Ok(api_token::Entity::update_many()
        .col_expr(api_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(api_token::Column::UserId.eq(user_id))
        .filter(api_token::Column::RevokedAt.is_null())
        .filter(api_token::Column::ExpiresAt.gt(Utc::now()))
        .exec(txn)
        .await?
        .rows_affected)
}

/// Deletes tokens dead (revoked or expired) for [`KEPT_AFTER_DEATH`]. Returns how many went.
pub async fn remove_dead(core: &Core) -> Result<u64, sea_orm::DbErr> {
    let before = Utc::now()
        - chrono::Duration::from_std(KEPT_AFTER_DEATH).unwrap_or(chrono::Duration::days(30));
    Ok(api_token::Entity::delete_many()
        .filter(
            sea_orm::Condition::any()
                .add(api_token::Column::ExpiresAt.lte(before))
                .add(api_token::Column::RevokedAt.lte(before)),
        )
        .exec(&core.db)
        .await?
        .rows_affected)
}
