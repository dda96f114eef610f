//! Where the signed-in person is signed in: each session ended on its own, or all at once. The
//! same `sessions` service as the API.

use coffer_core::services::users::sessions::{self, SessionView};
use coffer_core::text::t;
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::web::Path;
use poem::{Body, Request, Response};

use super::core;
use super::page::{self, when};
use super::session::{self, SignedIn};
use crate::auth::meta;

fn session_context(v: &SessionView) -> Value {
    context! {
        id => v.id.to_string(), current => v.current,
        agent => v.user_agent.clone().unwrap_or_else(|| t("sessions-unknown-agent")),
        ip => v.ip.clone().unwrap_or_else(|| t("sessions-unknown-ip")),
        created => when(v.created_at), seen => when(v.last_seen_at), ends => when(v.ends_at),
    }
}

/// `GET /app/sessions`
#[poem::handler]
pub async fn list(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let views = sessions::list(core, &me.session)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    let rows: Vec<Value> = views.iter().map(session_context).collect();
    Ok(page::view(
        Some(&me),
        StatusCode::OK,
        "app/sessions.html",
        context! {
            sessions => rows, idle_minutes => core.config.session_idle.as_secs() / 60,
        },
    ))
}

/// `POST /app/sessions/{id}/end`: ending this browser's own session signs it out.
#[poem::handler]
pub async fn end(req: &Request, Path(id): Path<String>, body: Body) -> poem::Result<Response> {
    let (core, me, _) = SignedIn::post(req, body).await?;
    let id = uuid::Uuid::parse_str(&id).map_err(|_| {
        page::service_error(Some(&me), coffer_core::ServiceError::NotFound("session"))
    })?;
    sessions::end(core, &me.session, id, &meta(req))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    if id == me.session.id {
        return Ok(signed_out(core));
    }
    Ok(page::redirect("/app/sessions"))
}

/// `POST /app/sessions/end-all`: signs out everywhere, this browser included.
#[poem::handler]
pub async fn end_all(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, _) = SignedIn::post(req, body).await?;
    sessions::end_all(core, &me.session, &meta(req))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(signed_out(core))
}

fn signed_out(core: &coffer_core::Core) -> Response {
    let mut response = page::redirect("/app/signin");
    page::add_cookie(
        &mut response,
        &session::clear_cookie(core, session::SESSION_COOKIE),
    );
    response
}
