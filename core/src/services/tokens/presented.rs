//! A presented token: its secret's shape, and resolving it to the account it acts for (noting
//! its use at most once a minute).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QuerySelect as _};
use uuid::Uuid;

use entity::api_token;

use super::{LAST_USED_EVERY, PREFIX};
use crate::principal::{Access, Scopes, Session, User};
use crate::types::{Role, Token};
use crate::{Core, ServiceError, ServiceResult};

/// A token's secret, shown once.
pub struct Secret(pub(super) Token);

impl Secret {
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", self.0.expose())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The token inside a presented secret, if it has the shape Coffer issues.
fn parse(raw: &str) -> Option<Token> {
    raw.strip_prefix(PREFIX).and_then(Token::parse)
}

/// Whether `raw` is meant as a personal API token (rather than a session's).
pub fn looks_like_token(raw: &str) -> bool {
    raw.starts_with(PREFIX)
}

/// Resolves a presented token to the account it acts for, within its scopes. Unknown, revoked
/// and expired tokens, and tokens of a disabled account, are refused alike.
pub(crate) async fn authenticate(core: &Core, raw: &str) -> ServiceResult<Session> {
    type Row = (
        Uuid,
        String,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Uuid,
        String,
        Role,
        bool,
    );
    let token = parse(raw).ok_or(ServiceError::Unauthorized)?;
    let (id, scopes, expires_at, revoked_at, last_used_at, user_id, email, role, disabled): Row =
        crate::principal::with_account(
            api_token::Entity::find().select_only().columns([
                api_token::Column::Id,
                api_token::Column::Scopes,
                api_token::Column::ExpiresAt,
                api_token::Column::RevokedAt,
                api_token::Column::LastUsedAt,
            ]),
            api_token::Column::UserId,
        )
        .filter(api_token::Column::TokenHash.eq(token.hash()))
        .into_tuple::<Row>()
        .all(&core.db)
        .await?
        .into_iter()
        .next()
        .ok_or(ServiceError::Unauthorized)?;
    let now = Utc::now();
    if revoked_at.is_some() || expires_at <= now || disabled {
        return Err(ServiceError::Unauthorized);
    }
    let stale = chrono::Duration::from_std(LAST_USED_EVERY).unwrap_or(chrono::Duration::MAX);
    if last_used_at.is_none_or(|at| now - at >= stale) {
        touch(core, id, now, now - stale).await?;
    }
    Ok(Session {
        id,
        user: User {
            id: user_id,
            email,
            role,
            access: Access::Token {
                id,
                scopes: Scopes::from_words(&scopes),
            },
        },
    })
}

/// Notes a token's use, unless a request a moment ago already did (`stale_before`).
async fn touch(
    core: &Core,
    id: Uuid,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    let _gate = core.write_gate.enter().await;
    api_token::Entity::update_many()
        .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
        .filter(api_token::Column::Id.eq(id))
        .filter(
            sea_orm::Condition::any()
                .add(api_token::Column::LastUsedAt.is_null())
                .add(api_token::Column::LastUsedAt.lt(stale_before)),
        )
        .exec(&core.db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Scope;

    #[test]
    fn scopes_round_trip_through_their_stored_words() {
        let scopes: Scopes = [Scope::SharesWrite, Scope::FilesRead].into_iter().collect();
        assert_eq!(scopes.to_words(), "files:read shares:write");
        assert_eq!(Scopes::from_words("shares:write files:read"), scopes);
        assert_eq!(
            Scopes::from_words("files:read no:such"),
            [Scope::FilesRead].into_iter().collect()
        );
    }

    #[test]
    fn only_the_shape_coffer_issues_is_a_token() {
        let secret = Secret(Token::generate());
        let exposed = secret.expose();
        assert!(looks_like_token(&exposed));
        assert!(parse(&exposed).is_some());
        assert!(parse(&exposed[PREFIX.len()..]).is_none());
        assert!(parse("coffer_pat_short").is_none());
        assert!(parse(&format!("{exposed}x")).is_none());
    }
}
