//! The web app for owners and admins: server-rendered pages over the same services the JSON API
//! calls. Handlers parse the form, call a service, then render or redirect (303 after a
//! successful post). Every form carries a CSRF token; everything but the upload progress bar
//! works without JavaScript. The pages are not part of the OpenAPI document.

mod account;
mod activity;
mod admin;
mod audit;
mod bundles;
mod emailed_links;
mod files;
mod mfa;
mod page;
mod preferences;
pub(crate) mod session;
mod sessions;
mod shares;
mod signup_admin;
mod sso;
mod tokens;

use coffer_core::Core;
use poem::http::{Method, StatusCode};
use poem::{
    Endpoint, EndpointExt as _, IntoResponse as _, PathPattern, Request, Response, Route, get, post,
};

/// Every page route and the methods it answers (what `Allow` lists on a 405, and what the
/// authorization matrix must cover).
pub const ROUTES: &[(&str, &str)] = &[
    ("/", "GET"),
    ("/assets/upload.js", "GET"),
    ("/app/signup", "GET, POST"),
    ("/app/signin", "GET, POST"),
    ("/app/signin/mfa", "POST"),
    ("/app/verify-email", "GET, POST"),
    ("/app/password-reset", "GET, POST"),
    ("/app/forgot-password", "GET, POST"),
    ("/app/signout", "POST"),
    ("/app/signed-in", "GET"),
    ("/app/sso", "GET"),
    ("/app/sso/connect", "POST"),
    ("/app/password", "GET, POST"),
    ("/app/tokens", "GET, POST"),
    ("/app/sessions", "GET"),
    ("/app/preferences", "GET, POST"),
    ("/app/mfa", "GET"),
    ("/app/mfa/start", "POST"),
    ("/app/mfa/confirm", "POST"),
    ("/app/mfa/off", "POST"),
    ("/app/sessions/{id}/end", "POST"),
    ("/app/sessions/end-all", "POST"),
    ("/app/tokens/{id}/revoke", "POST"),
    ("/app/files", "GET, POST"),
    ("/app/upload", "GET"),
    ("/app/files/{id}", "GET"),
    ("/app/files/{id}/download", "GET"),
    ("/app/files/{id}/delete", "GET, POST"),
    ("/app/files/{id}/shares", "POST"),
    ("/app/shares", "POST"),
    ("/app/shares/new", "GET"),
    ("/app/shares/{id}/revoke", "POST"),
    ("/app/shares/{id}/edit", "GET, POST"),
    ("/app/shares/{id}/resend", "POST"),
    ("/app/shares/{id}/activity", "GET"),
    ("/app/shares/{id}/activity/export", "GET"),
    ("/app/admin/audit", "GET"),
    ("/app/admin/audit/export", "GET"),
    ("/app/admin/audit/verify", "POST"),
    ("/app/admin/keys", "GET"),
    ("/app/admin/keys/rotate", "POST"),
    ("/app/admin/users", "GET"),
    ("/app/admin/users/{id}", "POST"),
    ("/app/admin/users/{id}/mfa-reset", "POST"),
    ("/app/admin/signup", "GET, POST"),
    ("/app/admin/invites", "POST"),
];

/// The routes under `/app`, with their errors rendered as pages.
pub fn routes() -> impl poem::Endpoint<Output = Response> + 'static {
    Route::new()
        .at("/signup", get(account::signup_page).post(account::signup))
        .at("/signin", get(account::signin_page).post(account::signin))
        .at("/signin/mfa", post(account::second_step))
        .at(
            "/verify-email",
            get(emailed_links::verify_email_page).post(emailed_links::verify_email),
        )
        .at(
            "/password-reset",
            get(emailed_links::password_reset_page).post(emailed_links::reset_password),
        )
        .at(
            "/forgot-password",
            get(emailed_links::forgot_password_page).post(emailed_links::forgot_password),
        )
        .at("/signout", post(account::signout))
        .at("/signed-in", get(sso::signed_in))
        .at("/sso", get(sso::page_view))
        .at("/sso/connect", post(sso::connect))
        .at(
            "/password",
            get(account::password_page).post(account::change_password),
        )
        .at("/tokens", get(tokens::list).post(tokens::create))
        .at("/tokens/:id/revoke", post(tokens::revoke))
        .at("/sessions", get(sessions::list))
        .at(
            "/preferences",
            get(preferences::show).post(preferences::save),
        )
        .at("/mfa", get(mfa::page_view))
        .at("/mfa/start", post(mfa::start))
        .at("/mfa/confirm", post(mfa::confirm))
        .at("/mfa/off", post(mfa::turn_off))
        .at("/sessions/end-all", post(sessions::end_all))
        .at("/sessions/:id/end", post(sessions::end))
        .at("/files", get(files::list).post(files::upload_file))
        .at("/upload", get(files::upload_page))
        .at("/files/:id", get(files::details))
        .at("/files/:id/download", get(files::download))
        .at(
            "/files/:id/delete",
            get(files::delete_page).post(files::delete),
        )
        .at("/files/:id/shares", post(shares::create))
        .at("/shares", post(bundles::create))
        .at("/shares/new", get(bundles::new))
        .at("/shares/:id/revoke", post(shares::revoke))
        .at(
            "/shares/:id/edit",
            get(shares::edit_form).post(shares::edit),
        )
        .at("/shares/:id/resend", post(shares::resend))
        .at("/shares/:id/activity", get(activity::activity))
        .at("/shares/:id/activity/export", get(activity::export))
        .at("/admin/audit", get(audit::audit_log))
        .at("/admin/audit/export", get(audit::export_log))
        .at("/admin/audit/verify", post(audit::verify))
        .at("/admin/keys", get(admin::key_versions))
        .at("/admin/keys/rotate", post(admin::rotate))
        .at("/admin/users", get(admin::users))
        .at("/admin/users/:id", post(admin::change_user))
        .at(
            "/admin/users/:id/mfa-reset",
            post(admin::reset_second_factor),
        )
        .at(
            "/admin/signup",
            get(signup_admin::page_view).post(signup_admin::change),
        )
        .at("/admin/invites", post(signup_admin::invite))
        .catch_all_error(page::catch_all)
}

/// `/` (the API is nested there, so it is no route of its own): a browser goes on to its files
/// when signed in, else to the sign-in page.
pub async fn root<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    if req.uri().path() != "/" {
        return Ok(ep.call(req).await?.into_response());
    }
    let mut response = match *req.method() {
        Method::GET | Method::HEAD => match core(&req) {
            Ok(core) => match session::SignedIn::optional(&req, core).await {
                Some(_) => page::redirect("/app/files"),
                None => page::redirect("/app/signin"),
            },
            Err(err) => err.into_response(),
        },
        _ => page::catch_all(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED)).await,
    };
    response.set_data(PathPattern("/".into()));
    Ok(response)
}

/// Our own small script: the upload progress bar and drag-and-drop.
#[poem::handler]
pub fn upload_script() -> Response {
    Response::builder()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("../../templates/upload.js"))
}

fn core(req: &Request) -> poem::Result<&Core> {
    crate::auth::core(req).map_err(|_| page::fail(page::broken(&"core missing from request data")))
}

/// The status of a form that comes back with an error for the user to fix.
const INVALID: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
