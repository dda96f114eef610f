//! Sessions: a bearer token resolved to its live session (or a personal API token to the
//! account it acts for), and the sweep of dead sessions.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QuerySelect as _};
use uuid::Uuid;

use entity::session;

use crate::principal::{Session, User};
use crate::types::{Role, Token};
use crate::{Core, ServiceError, ServiceResult};

/// Resolves a bearer token to its live session, or a personal API token
/// ([`crate::services::tokens`]) to the account it acts for within its scopes.
pub async fn authenticate(core: &Core, raw_token: &str) -> ServiceResult<Session> {
    if crate::services::tokens::looks_like_token(raw_token) {
        return crate::services::tokens::authenticate(core, raw_token).await;
    }
    authenticate_session(core, raw_token).await
}

/// Resolves a session's token only (the web app's cookie: a personal API token is for scripts,
/// never a browser's session).
pub async fn authenticate_session(core: &Core, raw_token: &str) -> ServiceResult<Session> {
    type Row = (
        Uuid,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Uuid,
        String,
        Role,
        bool,
    );
    let token = Token::parse(raw_token).ok_or(ServiceError::Unauthorized)?;
    // One round trip for the session and its account: this runs before every API call. No
    // `LIMIT` (the token hash is unique; see `db::by_key`).
    let (session_id, expires_at, revoked_at, user_id, email, role, disabled): Row =
        crate::principal::with_account(
            session::Entity::find().select_only().columns([
                session::Column::Id,
                session::Column::ExpiresAt,
                session::Column::RevokedAt,
            ]),
            session::Column::UserId,
        )
        .filter(session::Column::TokenHash.eq(token.hash()))
        .into_tuple::<Row>()
        .all(&core.db)
        .await?
        .into_iter()
        .next()
        .ok_or(ServiceError::Unauthorized)?;
    if revoked_at.is_some() || expires_at <= Utc::now() || disabled {
        return Err(ServiceError::Unauthorized);
    }
    Ok(Session {
        id: session_id,
        user: User {
            id: user_id,
            email,
            role,
            access: crate::principal::Access::Session,
        },
    })
}

/// Deletes sessions that can no longer be used (expired or revoked): they are kept nowhere once
/// dead. Returns how many went.
pub async fn remove_dead_sessions(core: &Core) -> Result<u64, sea_orm::DbErr> {
    let removed = session::Entity::delete_many()
        .filter(
            sea_orm::Condition::any()
                .add(session::Column::ExpiresAt.lte(Utc::now()))
                .add(session::Column::RevokedAt.is_not_null()),
        )
        .exec(&core.db)
        .await?
        .rows_affected;
    if removed > 0 {
        tracing::debug!(removed, "deleted dead sessions");
    }
    Ok(removed)
}
