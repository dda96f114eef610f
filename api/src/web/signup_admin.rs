//! The admin's sign-up page: the policy (read-only when `COFFER_SIGNUP` fixes it) and
//! invitations, over the same services as `/api/v1/admin/settings` and `/api/v1/admin/invites`.

use chrono::Utc;
use coffer_core::principal::Operator;
use coffer_core::services::signup;
use coffer_core::text::t;
use coffer_core::types::SignupPolicy;
use coffer_core::{Core, ServiceError};
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::{Body, Request, Response};

use super::account::sentence;
use super::admin::{admin_form, admin_view};
use super::page::{self, when};
use super::session::SignedIn;
use super::{INVALID, core};
use crate::auth::meta;

async fn signup_page(
    core: &Core,
    me: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
) -> poem::Result<Response> {
    let fail = |e| page::service_error(Some(me), e);
    let (policy, fixed) = signup::policy(core, Operator::Admin(&me.session.user))
        .await
        .map_err(fail)?;
    let now = Utc::now();
    let invites: Vec<Value> = signup::invites(core, Operator::Admin(&me.session.user))
        .await
        .map_err(fail)?
        .iter()
        .map(|i| {
            context! {
                email => &i.email, state => i.state(now), created => when(i.created_at),
                expires => when(i.expires_at),
                state_label => t(match i.state(now) {
                    "used" => "invite-state-used",
                    "expired" => "invite-state-expired",
                    _ => "invite-state-pending",
                }),
            }
        })
        .collect();
    let (kind, domains) = match &policy {
        SignupPolicy::Open => ("open", String::new()),
        SignupPolicy::Invite => ("invite", String::new()),
        SignupPolicy::Domains(domains) => ("domains", domains.join(", ")),
    };
    Ok(page::view(
        Some(me),
        status,
        "app/signup_admin.html",
        context! {
            policy => policy.to_string(), kind => kind, domains => domains, fixed => fixed,
            invites => invites, error => error,
        },
    ))
}

/// `GET /app/admin/signup`.
#[poem::handler]
pub async fn page_view(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = admin_view(req, core).await?;
    signup_page(core, &me, StatusCode::OK, None).await
}

/// `POST /app/admin/signup`: sets the policy from the form (`kind`, and `domains` for
/// `domains`).
#[poem::handler]
pub async fn change(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = admin_form(req, body).await?;
    let raw = match fields.get("kind").unwrap_or_default() {
        "domains" => format!("domains:{}", fields.get("domains").unwrap_or_default()),
        other => other.to_owned(),
    };
    let policy = match SignupPolicy::parse(&raw) {
        Ok(policy) => policy,
        Err(err) => return signup_page(core, &me, INVALID, Some(&sentence(&err.0))).await,
    };
    match signup::set_policy(core, &me.session.user, policy, &meta(req)).await {
        Ok(_) => Ok(page::redirect("/app/admin/signup")),
        Err(ServiceError::Conflict(detail)) => {
            signup_page(core, &me, StatusCode::CONFLICT, Some(&sentence(&detail))).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

/// `POST /app/admin/invites`: emails an invitation to the form's `email`.
#[poem::handler]
pub async fn invite(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = admin_form(req, body).await?;
    let email = fields.get("email").unwrap_or_default();
    match signup::invite(core, &me.session.user, email, &meta(req)).await {
        Ok(_) => Ok(page::redirect("/app/admin/signup")),
        Err(ServiceError::Invalid(detail)) => {
            signup_page(core, &me, INVALID, Some(&sentence(&detail))).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}
