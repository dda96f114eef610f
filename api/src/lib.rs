//! The HTTP API: poem + poem-openapi routes, Swagger UI and health endpoints.

mod auth;
mod observe;
mod problem;
mod range;
mod routes;
mod upload;

use std::net::SocketAddr;
use std::time::Duration;

use coffer_core::Core;
use poem::listener::{Acceptor as _, Listener as _, TcpAcceptor, TcpListener};
use poem::middleware::SetHeader;
use poem::{Endpoint, EndpointExt as _, Route, Server, get};
use poem_openapi::OpenApiService;

type Apis = (
    routes::accounts::AccountsApi,
    routes::files::FilesApi,
    routes::shares::SharesApi,
    routes::recipient::RecipientApi,
    routes::admin::AdminApi,
);

fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            routes::accounts::AccountsApi,
            routes::files::FilesApi,
            routes::shares::SharesApi,
            routes::recipient::RecipientApi,
            routes::admin::AdminApi,
        ),
        "Coffer",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Secure file sharing: uploads are quarantined, validated and encrypted at rest.")
}

/// Pages recipients open: a strict policy (no scripts at all, nothing framed, nothing sent to
/// other sites) on top of the headers every response gets.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

#[poem::handler]
fn stylesheet() -> poem::Response {
    poem::Response::builder()
        .content_type("text/css; charset=utf-8")
        .body(include_str!("../templates/coffer.css"))
}

/// The whole HTTP surface, with `core` available to every handler.
pub fn app(core: Core) -> impl Endpoint<Output = poem::Response> + 'static {
    let api = api_service();
    let spec = api.spec_endpoint();
    let ui = api.swagger_ui();
    let metrics = core.metrics.clone();
    Route::new()
        .nest("/", api)
        .nest("/docs", ui)
        .at("/assets/coffer.css", get(stylesheet))
        .at("/openapi.json", spec)
        .at("/healthz", get(routes::health::healthz))
        .at("/readyz", get(routes::health::readyz))
        .at("/metrics", get(routes::health::metrics))
        .catch_all_error(problem::catch_all)
        .around(move |ep, req| observe::observe(metrics.clone(), ep, req))
        .data(core)
        .around(|ep, req| async move {
            let page = req.uri().path().starts_with("/s/");
            let mut response = ep.call(req).await?;
            if page {
                let headers = response.headers_mut();
                headers.insert(
                    "Content-Security-Policy",
                    poem::http::HeaderValue::from_static(PAGE_CSP),
                );
                headers.insert(
                    "X-Frame-Options",
                    poem::http::HeaderValue::from_static("DENY"),
                );
            }
            Ok(response)
        })
        // Outermost, so error responses carry these headers too.
        .with(
            SetHeader::new()
                .overriding("X-Content-Type-Options", "nosniff")
                .overriding("Referrer-Policy", "no-referrer")
                .overriding("Cache-Control", "no-store"),
        )
}

/// What a worker process serves for its operators: liveness, readiness and metrics.
pub fn ops_app(core: Core) -> impl Endpoint<Output = poem::Response> + 'static {
    let metrics = core.metrics.clone();
    Route::new()
        .at("/healthz", get(routes::health::healthz))
        .at("/readyz", get(routes::health::readyz))
        .at("/metrics", get(routes::health::metrics))
        .catch_all_error(problem::catch_all)
        .around(move |ep, req| observe::observe(metrics.clone(), ep, req))
        .data(core)
        .with(SetHeader::new().overriding("Cache-Control", "no-store"))
}

/// Binds the listener (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpAcceptor, SocketAddr)> {
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    Ok((acceptor, local))
}

/// What a listener serves.
#[derive(Debug, Clone, Copy)]
pub enum Surface {
    /// The API, recipient pages, docs, health and metrics.
    Api,
    /// Health and metrics only (a worker's `COFFER_METRICS_BIND`).
    Ops,
}

/// Serves until `shutdown` completes, then lets in-flight requests finish for up to 30 s.
pub async fn serve(
    core: Core,
    surface: Surface,
    acceptor: TcpAcceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let endpoint = match surface {
        Surface::Api => app(core).boxed(),
        Surface::Ops => ops_app(core).boxed(),
    };
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(endpoint, shutdown, Some(Duration::from_secs(30)))
        .await
}
