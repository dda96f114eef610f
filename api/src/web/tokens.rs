//! Personal API tokens in the web app: the list, making one (its secret shown on the answering
//! page only), revoking one. The same `tokens` service as the API, so the same rules.

use coffer_core::principal::Scope;
use coffer_core::services::tokens::{self, NewToken, TokenState, TokenView};
use coffer_core::text::t;
use coffer_core::types::Role;
use coffer_core::{Core, ServiceError};
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::web::Path;
use poem::{Body, Request, Response};

use super::account::sentence;
use super::page::{self, when};
use super::session::SignedIn;
use super::{INVALID, core};
use crate::auth::meta;

/// The expiries the form offers, in days.
const EXPIRIES: [i64; 4] = [7, 30, 90, 365];

fn scope_label(scope: Scope) -> String {
    t(match scope {
        Scope::FilesRead => "tokens-scope-files-read",
        Scope::FilesWrite => "tokens-scope-files-write",
        Scope::SharesWrite => "tokens-scope-shares-write",
        Scope::AuditRead => "tokens-scope-audit-read",
    })
}

fn state_label(state: TokenState) -> String {
    t(match state {
        TokenState::Active => "tokens-state-active",
        TokenState::Expired => "tokens-state-expired",
        TokenState::Revoked => "tokens-state-revoked",
    })
}

fn token_context(v: &TokenView) -> Value {
    let scopes: Vec<&str> = v.scopes.iter().map(Scope::as_str).collect();
    context! {
        id => v.id.to_string(), name => &v.name, scopes => scopes, state => v.state.as_str(),
        state_label => state_label(v.state),
        created => when(v.created_at), expires => when(v.expires_at),
        last_used => v.last_used_at.map(when), live => v.state == TokenState::Active,
    }
}

async fn tokens_page(
    core: &Core,
    me: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
    secret: Option<&str>,
) -> poem::Result<Response> {
    let views = tokens::list(core, &me.session.user)
        .await
        .map_err(|e| page::service_error(Some(me), e))?;
    let rows: Vec<Value> = views.iter().map(token_context).collect();
    let scopes: Vec<Value> = Scope::ALL
        .into_iter()
        .filter(|s| *s != Scope::AuditRead || me.session.user.role == Role::Admin)
        .map(|s| context! { word => s.as_str(), label => scope_label(s) })
        .collect();
    Ok(page::view(
        Some(me),
        status,
        "app/tokens.html",
        context! {
            tokens => rows, scopes => scopes, expiries => EXPIRIES.to_vec(),
            default_expiry => tokens::DEFAULT_DAYS, error => error, secret => secret,
        },
    ))
}

/// `GET /app/tokens`
#[poem::handler]
pub async fn list(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    tokens_page(core, &me, StatusCode::OK, None, None).await
}

/// `POST /app/tokens`: makes a token and shows its secret on this answer only.
#[poem::handler]
pub async fn create(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    let expires_in_days = match fields.given("expires_in_days") {
        None => None,
        Some(days) => match days.parse() {
            Ok(days) => Some(days),
            Err(_) => {
                let error = t("tokens-error-expiry");
                return tokens_page(core, &me, INVALID, Some(&error), None).await;
            }
        },
    };
    let new = NewToken {
        name: fields.get("name").unwrap_or_default().to_owned(),
        scopes: fields.all("scopes"),
        expires_in_days,
    };
    match tokens::create(core, &me.session.user, new, &meta(req)).await {
        Ok((_, secret)) => {
            let secret = secret.expose();
            tokens_page(core, &me, StatusCode::CREATED, None, Some(&secret)).await
        }
        Err(ServiceError::Invalid(detail) | ServiceError::Conflict(detail)) => {
            tokens_page(core, &me, INVALID, Some(&sentence(&detail)), None).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

/// `POST /app/tokens/{id}/revoke`
#[poem::handler]
pub async fn revoke(req: &Request, Path(id): Path<String>, body: Body) -> poem::Result<Response> {
    let (core, me, _) = SignedIn::post(req, body).await?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| page::service_error(Some(&me), ServiceError::NotFound("token")))?;
    tokens::revoke(core, &me.session.user, id, &meta(req))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(page::redirect("/app/tokens"))
}
