//! Single sign-on in the web app: the page a sign-in with the provider lands on, the page that
//! connects a signed-in account to the provider, and the way on to the provider's own sign-out.
//!
//! Each way to or from the provider passes through a page of Coffer's that moves on by itself
//! (`<meta http-equiv="refresh">`): a form may post only to Coffer (`form-action 'self'`), and a
//! `SameSite=Strict` session cookie is sent only once a page of this site asks.

use coffer_core::services::oidc::{self, Answer};
use coffer_core::text::{Arg, t, t_with};
use minijinja::context;
use poem::http::StatusCode;
use poem::{Body, Request, Response};

use super::core;
use super::page::{self, Fields};
use super::session::SignedIn;
use crate::auth::meta;

/// A page that moves on to `go_to` by itself (and offers a link, should it not).
pub(super) fn moving_on(me: Option<&SignedIn>, heading: &str, text: &str, go_to: &str) -> Response {
    page::view(
        me,
        StatusCode::OK,
        "app/continue.html",
        context! { heading => heading, text => text, go_to => go_to },
    )
}

/// `/app/signed-in?to=…`: where the provider's answer leads once the session's cookie is set.
#[poem::handler]
pub async fn signed_in(req: &Request) -> poem::Result<Response> {
    let query = Fields::query(req);
    let to = oidc::web_page(query.get("to")).unwrap_or_else(|| "/app/files".to_owned());
    Ok(moving_on(
        None,
        &t("continue-signed-in-heading"),
        &t("continue-signed-in-text"),
        &to,
    ))
}

/// `/app/sso`: whether the account is connected to the provider, and a button to connect it.
#[poem::handler]
pub async fn page_view(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let provider = oidc::provider(core).map_err(|e| page::service_error(Some(&me), e))?;
    let linked = oidc::linked(core, me.session.user.id)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(page::view(
        Some(&me),
        StatusCode::OK,
        "app/sso.html",
        context! { provider => provider.name(), linked => linked > 0 },
    ))
}

/// `POST /app/sso/connect`: a sign-in at the provider whose account is then linked to this one.
#[poem::handler]
pub async fn connect(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, _) = SignedIn::post(req, body).await?;
    let provider = oidc::provider(core).map_err(|e| page::service_error(Some(&me), e))?;
    let begun = oidc::begin(
        core,
        Answer::Web,
        Some("/app/sso"),
        Some(&me.session),
        &meta(req),
    )
    .await
    .map_err(|e| page::service_error(Some(&me), e))?;
    let name = Arg::from(provider.name().to_owned());
    let mut response = moving_on(
        Some(&me),
        &t("continue-to-provider-heading"),
        &t_with("continue-to-provider-text", [("provider", name)]),
        &begun.authorization_url,
    );
    page::add_cookie(
        &mut response,
        &crate::routes::oidc::binding_cookie(core, begun.binding.expose()),
    );
    Ok(response)
}

/// After Coffer's session ended: on to the provider's sign-out, when there is one to go to.
pub(super) fn signed_out(core: &coffer_core::Core, provider_logout: &str) -> Response {
    let name = core
        .oidc
        .as_deref()
        .map(|p| p.name().to_owned())
        .unwrap_or_default();
    moving_on(
        None,
        &t("continue-signed-out-heading"),
        &t_with("continue-signed-out-text", [("provider", Arg::from(name))]),
        provider_logout,
    )
}
