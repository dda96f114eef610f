//! The signed-in person's preferences: how download receipts come. The same `receipts`
//! service as the API.

use coffer_core::services::receipts::{self, PreferencesChange};
use minijinja::context;
use poem::http::StatusCode;
use poem::{Body, Request, Response};

use super::core;
use super::page;
use super::session::SignedIn;

/// `GET /app/preferences`
#[poem::handler]
pub async fn show(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let now = receipts::preferences(core, me.session.user.id)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(page::view(
        Some(&me),
        StatusCode::OK,
        "app/preferences.html",
        context! {
            on_new_shares => now.on_new_shares,
            daily => now.daily,
            saved => req.uri().query() == Some("saved"),
        },
    ))
}

/// `POST /app/preferences`: the form's boxes, as ticked; back to the page.
#[poem::handler]
pub async fn save(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    // An unticked box sends nothing: the form sets both.
    let change = PreferencesChange {
        on_new_shares: Some(fields.given("receipts_on_new_shares").is_some()),
        daily: Some(fields.given("receipts") == Some("daily")),
    };
    receipts::set_preferences(core, &me.session.user, change)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(page::redirect("/app/preferences?saved"))
}
