//! The signed-in person's sessions: listed, ended one at a time, or all at once ("sign out
//! everywhere").

use chrono::{DateTime, Utc};
use coffer_core::services::users::sessions::{self, SessionView};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use crate::auth::{UserAuth, core, meta};
use crate::problem::ApiError;

pub struct SessionsApi;

#[derive(Object)]
struct SessionInfo {
    id: uuid::Uuid,
    /// When it was opened (signed in).
    created_at: DateTime<Utc>,
    /// When it was last used, to the minute.
    last_seen_at: DateTime<Utc>,
    /// When it ends unless it is used before (`COFFER_SESSION_IDLE_MINUTES`), or its lifetime
    /// if that comes first.
    ends_at: DateTime<Utc>,
    /// The client address it was opened from.
    ip: Option<String>,
    user_agent: Option<String>,
    /// The session of this request.
    current: bool,
}

impl From<SessionView> for SessionInfo {
    fn from(v: SessionView) -> Self {
        Self {
            id: v.id,
            created_at: v.created_at,
            last_seen_at: v.last_seen_at,
            ends_at: v.ends_at,
            ip: v.ip,
            user_agent: v.user_agent,
            current: v.current,
        }
    }
}

#[derive(Object)]
struct SessionList {
    /// The sessions that still work, newest first.
    sessions: Vec<SessionInfo>,
}

#[derive(ApiResponse)]
enum Ended {
    /// Ended: its token stops working at once.
    #[oai(status = 204)]
    Ended,
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Auth")]
impl SessionsApi {
    /// Where you are signed in
    #[oai(path = "/me/sessions", method = "get")]
    async fn list(&self, req: &Request, auth: UserAuth) -> Result<Json<SessionList>, ApiError> {
        let views = sessions::list(core(req)?, &auth.0).await?;
        Ok(Json(SessionList {
            sessions: views.into_iter().map(SessionInfo::from).collect(),
        }))
    }

    /// Sign out everywhere: every session ends, this one included
    #[oai(path = "/me/sessions", method = "delete")]
    async fn end_all(&self, req: &Request, auth: UserAuth) -> Result<Ended, ApiError> {
        sessions::end_all(core(req)?, &auth.0, &meta(req)).await?;
        Ok(Ended::Ended)
    }

    /// End one of your sessions
    #[oai(path = "/me/sessions/:id", method = "delete")]
    async fn end(
        &self,
        req: &Request,
        auth: UserAuth,
        id: Path<String>,
    ) -> Result<Ended, ApiError> {
        let id = uuid::Uuid::parse_str(&id.0)
            .map_err(|_| ApiError::from(coffer_core::ServiceError::NotFound("session")))?;
        sessions::end(core(req)?, &auth.0, id, &meta(req)).await?;
        Ok(Ended::Ended)
    }
}
