//! Admin pages: master keys (rotation with live progress) and accounts (role, enable and
//! disable); the audit log is in `audit.rs`. Other users get a 403 page.

use coffer_core::principal::Operator;
use coffer_core::services::accounts::{self, Account};
use coffer_core::services::{keys, rotation};
use coffer_core::text::t;
use coffer_core::types::{KeyState, Role, RotationState};
use coffer_core::{Core, ServiceError};
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::web::Path;
use poem::{Body, Request, Response};

use super::account::sentence;
use super::page::{self, Fields, when};
use super::session::SignedIn;
use super::{INVALID, core};
use crate::auth::meta;

const USERS_PAGE: u64 = 50;

/// The signed-in admin of a page view, or the 403 page.
pub(super) async fn admin_view(req: &Request, core: &Core) -> poem::Result<SignedIn> {
    let me = SignedIn::from_view(req, core).await?;
    if me.is_admin() {
        Ok(me)
    } else {
        Err(page::forbidden(&me))
    }
}

/// An admin's form post (CSRF checked first), or the 403 page.
pub(super) async fn admin_form(
    req: &Request,
    body: Body,
) -> poem::Result<(&Core, SignedIn, Fields)> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    if me.is_admin() {
        Ok((core, me, fields))
    } else {
        Err(page::forbidden(&me))
    }
}

async fn keys_page(
    core: &Core,
    me: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
) -> poem::Result<Response> {
    let fail = |e| page::service_error(Some(me), e);
    let versions = keys::versions(core, Operator::Admin(&me.session.user))
        .await
        .map_err(fail)?;
    let rotation = rotation::progress(core, Operator::Admin(&me.session.user))
        .await
        .map_err(fail)?;
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            context! {
                version => v.version, state => v.state.as_str(), created => when(v.created_at),
                wrapped_keys => v.wrapped_keys,
                state_label => t(match v.state {
                    KeyState::Active => "key-state-active",
                    KeyState::Retiring => "key-state-retiring",
                    KeyState::Retired => "key-state-retired",
                }),
            }
        })
        .collect();
    let running = rotation
        .as_ref()
        .is_some_and(|r| r.state == RotationState::Running);
    let rotation = rotation.map(|r| {
        let percent = if r.total > 0 {
            (r.done.min(r.total) * 100 / r.total).clamp(0, 100)
        } else {
            100
        };
        context! {
            from => r.from, to => r.to, done => r.done, total => r.total, state => r.state.as_str(),
            percent => percent, started => when(r.started_at), finished => r.finished_at.map(when),
            state_label => t(match r.state {
                RotationState::Running => "rotation-state-running",
                RotationState::Finished => "rotation-state-finished",
            }),
        }
    });
    Ok(page::view(
        Some(me),
        status,
        "app/keys.html",
        context! { versions => versions, rotation => rotation, refresh => running, error => error },
    ))
}

#[poem::handler]
pub async fn key_versions(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = admin_view(req, core).await?;
    keys_page(core, &me, StatusCode::OK, None).await
}

#[poem::handler]
pub async fn rotate(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, _) = admin_form(req, body).await?;
    match rotation::rotate(core, Operator::Admin(&me.session.user), &meta(req)).await {
        Ok(_) => Ok(page::redirect("/app/admin/keys")),
        Err(ServiceError::Conflict(detail)) => {
            keys_page(core, &me, StatusCode::CONFLICT, Some(&sentence(&detail))).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

fn account_context(a: &Account, me: &SignedIn) -> Value {
    context! {
        id => a.id.to_string(), email => &a.email, role => a.role.as_str(),
        disabled => a.disabled, created => when(a.created_at), is_me => a.id == me.session.user.id,
    }
}

async fn users_page(
    core: &Core,
    me: &SignedIn,
    cursor: Option<&str>,
    status: StatusCode,
    error: Option<&str>,
) -> poem::Result<Response> {
    let (rows, next) = accounts::list(core, Operator::Admin(&me.session.user), cursor, USERS_PAGE)
        .await
        .map_err(|e| page::service_error(Some(me), e))?;
    let rows: Vec<Value> = rows.iter().map(|a| account_context(a, me)).collect();
    let page_link = |c: &str| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("cursor", c)
            .finish();
        format!("/app/admin/users?{query}")
    };
    Ok(page::view(
        Some(me),
        status,
        "app/users.html",
        context! {
            users => rows,
            cursor => cursor,
            paged => cursor.is_some(),
            next => next.as_deref().map(page_link),
            error => error,
        },
    ))
}

#[poem::handler]
pub async fn users(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = admin_view(req, core).await?;
    let query = Fields::query(req);
    users_page(core, &me, query.given("cursor"), StatusCode::OK, None).await
}

/// `POST /app/admin/users/{id}`: `role` and/or `disabled` (`true` or `false`), as the API's
/// `PATCH` takes them; back to the same page of the list.
#[poem::handler]
pub async fn change_user(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
) -> poem::Result<Response> {
    let (core, me, fields) = admin_form(req, body).await?;
    let id = page::parse_id(&me, &id, "user")?;
    let cursor = fields.given("cursor");
    let role = match fields.given("role") {
        None => None,
        Some(raw) => match Role::parse(raw) {
            Some(role) => Some(role),
            None => {
                return users_page(core, &me, cursor, INVALID, Some(&t("users-error-role"))).await;
            }
        },
    };
    let disabled = match fields.given("disabled") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            let text = &t("users-error-disabled");
            return users_page(core, &me, cursor, INVALID, Some(text)).await;
        }
    };
    let change = accounts::Change { role, disabled };
    match accounts::change(core, &me.session.user, id, change, &meta(req)).await {
        Ok(_) => Ok(page::redirect(&match cursor {
            Some(c) => format!(
                "/app/admin/users?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("cursor", c)
                    .finish()
            ),
            None => "/app/admin/users".to_owned(),
        })),
        Err(ServiceError::Conflict(detail)) => {
            let text = sentence(&detail);
            users_page(core, &me, cursor, StatusCode::CONFLICT, Some(&text)).await
        }
        Err(ServiceError::Invalid(detail)) => {
            let text = sentence(&detail);
            users_page(core, &me, cursor, INVALID, Some(&text)).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

/// `POST /app/admin/users/{id}/mfa-reset`: the account's second factor is off until it enrols
/// again (a lost phone), as `DELETE /api/v1/admin/users/{id}/mfa` does.
#[poem::handler]
pub async fn reset_second_factor(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
) -> poem::Result<Response> {
    let (core, me, _) = admin_form(req, body).await?;
    let id = page::parse_id(&me, &id, "user")?;
    coffer_core::services::mfa::reset(core, Operator::Admin(&me.session.user), id, &meta(req))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(page::redirect("/app/admin/users"))
}
