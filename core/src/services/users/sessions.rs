//! Sessions: opened by a sign-in, resolved from a bearer token (or a personal API token to the
//! account it acts for), ended by their lifetime (`COFFER_SESSION_TTL_HOURS`), by
//! `COFFER_SESSION_IDLE_MINUTES` without use, or by the person (one, or all: "sign out
//! everywhere"); the sweep deletes them once dead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, Condition, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Select,
};
use uuid::Uuid;

use entity::session;

use crate::audit::{Action, Event, RequestMeta};
use crate::principal::{Access, Session, User};
use crate::types::{Role, Token};
use crate::{Core, ServiceError, ServiceResult};

/// `last_seen_at` is written when it is older than this: a session in use writes one row a
/// minute, and its idle time is measured to the minute.
const SEEN_EVERY: Duration = Duration::from_secs(60);

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A session as its owner sees it in the list (never its token).
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// When it was last used, to the minute.
    pub last_seen_at: DateTime<Utc>,
    /// When it ends unless used before: the idle limit, or its lifetime if that comes first.
    pub ends_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The session this request came with.
    pub current: bool,
}

/// Opens a session for `user`, who has just proven who they are by `method` (`password`,
/// `oidc`) and, when they have one, their `second_factor` (`totp`, `recovery_code`), audited
/// as `user.login`. `replacing` is the token of the session this sign-in
/// takes the place of (the browser's cookie): it ends, whoever it belonged to, so that signing
/// in again never leaves the old session alive.
pub(crate) async fn open(
    core: &Core,
    user: &User,
    method: &'static str,
    second_factor: Option<&'static str>,
    replacing: Option<&str>,
    meta: &RequestMeta,
) -> ServiceResult<(Token, DateTime<Utc>)> {
    let token = Token::generate();
    let now = Utc::now();
    let expires_at = now + span(core.config.session_ttl);
    let txn = crate::db::begin_write(&core.db).await?;
    session::Entity::insert(session::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        token_hash: Set(token.hash()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        last_seen_at: Set(Some(now)),
        ip: Set(meta.ip.clone()),
        user_agent: Set(meta
            .user_agent
            .as_ref()
            .map(|ua| ua.chars().take(512).collect())),
        method: Set(Some(method.to_owned())),
    })
    .exec(&txn)
    .await?;
    let replaced = match replacing.and_then(Token::parse) {
        Some(old) => {
            session::Entity::update_many()
                .col_expr(session::Column::RevokedAt, Expr::value(now))
                .filter(session::Column::TokenHash.eq(old.hash()))
                .filter(session::Column::RevokedAt.is_null())
                .exec(&txn)
                .await?
                .rows_affected
                > 0
        }
        None => false,
    };
    Event::new(Action::UserLogin, user.actor())
        .target("user", user.id)
        .details(serde_json::json!({
            "method": method,
            "second_factor": second_factor,
            "replaced_session": replaced,
        }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    core.session_cache.empty();
    Ok((token, expires_at))
}

/// Resolves a bearer token to its live session, or a personal API token
/// ([`crate::services::tokens`]) to the account it acts for within its scopes.
pub async fn authenticate(core: &Core, raw_token: &str) -> ServiceResult<Session> {
    if crate::services::tokens::looks_like_token(raw_token) {
        return crate::services::tokens::authenticate(core, raw_token).await;
    }
    authenticate_session(core, raw_token).await
}

/// Resolves a session's token only (the web app's cookie: a personal API token is for scripts,
/// never a browser's session). A session unused for `COFFER_SESSION_IDLE_MINUTES` is ended.
pub async fn authenticate_session(core: &Core, raw_token: &str) -> ServiceResult<Session> {
    type Row = (
        Uuid,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<String>,
        Uuid,
        String,
        Role,
        bool,
    );
    let token = Token::parse(raw_token).ok_or(ServiceError::Unauthorized)?;
    let hash = token.hash();
    let now = Utc::now();
    // Resolved a moment ago (`crate::session_cache`: at most a second, emptied by anything in
    // this process that ends sessions or changes what they may do).
    if let Some(hit) = core.session_cache.get(&hash)
        && hit.expires_at > now
        && now - hit.seen < span(core.config.session_idle)
    {
        if now - hit.seen >= span(SEEN_EVERY) {
            seen_now(core, hit.session.id, now).await?;
            core.session_cache.seen(&hash, now);
        }
        return Ok(hit.session);
    }
    let generation = core.session_cache.generation();
    // One round trip for the session and its account: this runs before every API call not
    // answered from the cache. No `LIMIT` (the token hash is unique; see `db::by_key`).
    let (
        id,
        created_at,
        expires_at,
        revoked_at,
        last_seen_at,
        method,
        user_id,
        email,
        role,
        disabled,
    ): Row = crate::principal::with_account(
        session::Entity::find().select_only().columns([
            session::Column::Id,
            session::Column::CreatedAt,
            session::Column::ExpiresAt,
            session::Column::RevokedAt,
            session::Column::LastSeenAt,
            session::Column::Method,
        ]),
        session::Column::UserId,
    )
    .filter(session::Column::TokenHash.eq(hash.clone()))
    .into_tuple::<Row>()
    .all(&core.db)
    .await?
    .into_iter()
    .next()
    .ok_or(ServiceError::Unauthorized)?;
    let mut seen = last_seen_at.unwrap_or(created_at);
    if revoked_at.is_some()
        || expires_at <= now
        || disabled
        || now - seen >= span(core.config.session_idle)
    {
        return Err(ServiceError::Unauthorized);
    }
    if now - seen >= span(SEEN_EVERY) {
        seen_now(core, id, now).await?;
        seen = now;
    }
    // With `COFFER_REQUIRE_MFA`, a session of an account without a second factor may only set
    // one up (one more read per request, and only then). A session the identity provider
    // opened is not a local account's: the provider does its own second factor.
    let local = method.as_deref() != Some("oidc");
    let access = if core.config.require_mfa
        && local
        && !crate::services::mfa::enrolled(core, user_id).await?
    {
        Access::EnrolmentDue
    } else {
        Access::Session
    };
    let session = Session {
        id,
        user: User {
            id: user_id,
            email,
            role,
            access,
        },
    };
    core.session_cache.put(
        hash,
        crate::session_cache::Resolved {
            session: session.clone(),
            expires_at,
            seen,
        },
        generation,
    );
    Ok(session)
}

/// Notes a session's use, unless a request a moment ago already did.
async fn seen_now(core: &Core, id: Uuid, now: DateTime<Utc>) -> Result<(), sea_orm::DbErr> {
    let _gate = core.write_gate.enter().await;
    session::Entity::update_many()
        .col_expr(session::Column::LastSeenAt, Expr::value(now))
        .filter(session::Column::Id.eq(id))
        .filter(
            Condition::any()
                .add(session::Column::LastSeenAt.is_null())
                .add(session::Column::LastSeenAt.lt(now - span(SEEN_EVERY))),
        )
        .exec(&core.db)
        .await?;
    Ok(())
}

/// The live sessions of `session`'s account, newest first; `session` is marked `current`.
pub async fn list(core: &Core, session: &Session) -> ServiceResult<Vec<SessionView>> {
    session.user.require_person()?;
    let now = Utc::now();
    let idle = span(core.config.session_idle);
    Ok(live(session.user.id, now - idle)
        .order_by_desc(session::Column::Id)
        .all(&core.db)
        .await?
        .into_iter()
        .map(|s| {
            let seen = s.last_seen_at.unwrap_or(s.created_at);
            SessionView {
                id: s.id,
                created_at: s.created_at,
                last_seen_at: seen,
                ends_at: (seen + idle).min(s.expires_at),
                ip: s.ip,
                user_agent: s.user_agent,
                current: s.id == session.id,
            }
        })
        .collect())
}

/// The account's sessions that still work (seen since `idle_before`).
fn live(user_id: Uuid, idle_before: DateTime<Utc>) -> Select<session::Entity> {
    session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(Utc::now()))
        .filter(
            Condition::any()
                .add(session::Column::LastSeenAt.gt(idle_before))
                .add(
                    Condition::all()
                        .add(session::Column::LastSeenAt.is_null())
                        .add(session::Column::CreatedAt.gt(idle_before)),
                ),
        )
}

/// Ends one of the account's sessions (this one too, if it is named), audited as
/// `user.logout`.
pub async fn end(
    core: &Core,
    session: &Session,
    id: Uuid,
    meta: &RequestMeta,
) -> ServiceResult<()> {
    session.user.require_person()?;
    let ended = end_where(
        core,
        session,
        session::Column::Id.eq(id),
        serde_json::json!({ "session": id.to_string() }),
        meta,
    )
    .await?;
    if ended == 0 {
        return Err(ServiceError::NotFound("session"));
    }
    Ok(())
}

/// Signs the account out everywhere: every session ends, this one included. Returns how many.
pub async fn end_all(core: &Core, session: &Session, meta: &RequestMeta) -> ServiceResult<u64> {
    session.user.require_person()?;
    end_where(
        core,
        session,
        session::Column::UserId.eq(session.user.id),
        serde_json::json!({ "everywhere": true }),
        meta,
    )
    .await
}

async fn end_where(
    core: &Core,
    session: &Session,
    which: sea_orm::sea_query::SimpleExpr,
    details: serde_json::Value,
    meta: &RequestMeta,
) -> ServiceResult<u64> {
    let txn = crate::db::begin_write(&core.db).await?;
    let ended = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::UserId.eq(session.user.id))
        .filter(which)
        .filter(session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if ended > 0 {
        let mut details = details;
        details["sessions_ended"] = ended.into();
        Event::new(Action::UserLogout, session.user.actor())
            .target("user", session.user.id)
            .details(details)
            .from(meta)
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    core.session_cache.empty();
    Ok(ended)
}

/// Ends every live session of `user_id` inside `txn`, but `except` (the caller's own), as a
/// password change, a forced reset, a promotion or a disabling does; returns how many.
pub(crate) async fn end_every(
    txn: &impl sea_orm::ConnectionTrait,
    user_id: Uuid,
    except: Option<Uuid>,
) -> Result<u64, sea_orm::DbErr> {
    let mut ending = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null());
    if let Some(kept) = except {
        ending = ending.filter(session::Column::Id.ne(kept));
    }
    Ok(ending.exec(txn).await?.rows_affected)
}

/// Deletes sessions that can no longer be used (expired, revoked, or idle too long): they are
/// kept nowhere once dead. Returns how many went.
pub async fn remove_dead_sessions(core: &Core) -> Result<u64, sea_orm::DbErr> {
    let now = Utc::now();
    let idle_before = now - span(core.config.session_idle);
    let removed = session::Entity::delete_many()
        .filter(
            Condition::any()
                .add(session::Column::ExpiresAt.lte(now))
                .add(session::Column::RevokedAt.is_not_null())
                .add(session::Column::LastSeenAt.lte(idle_before))
                .add(
                    Condition::all()
                        .add(session::Column::LastSeenAt.is_null())
                        .add(session::Column::CreatedAt.lte(idle_before)),
                ),
        )
        .exec(&core.db)
        .await?
        .rows_affected;
    if removed > 0 {
        tracing::debug!(removed, "deleted dead sessions");
    }
    entity::login_challenge::Entity::delete_many()
        .filter(entity::login_challenge::Column::ExpiresAt.lte(now))
        .exec(&core.db)
        .await?;
    Ok(removed)
}
