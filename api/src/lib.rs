//! The HTTP API: poem + poem-openapi routes, Swagger UI and health endpoints.

mod auth;
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

fn api_service() -> OpenApiService<(routes::accounts::AccountsApi, routes::files::FilesApi), ()> {
    OpenApiService::new(
        (routes::accounts::AccountsApi, routes::files::FilesApi),
        "Coffer",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Secure file sharing: uploads are quarantined, validated and encrypted at rest.")
    // Relative, so "Try it out" works whatever host name the browser used.
    .server("/api")
}

/// The whole HTTP surface, with `core` available to every handler.
pub fn app(core: Core) -> impl Endpoint + 'static {
    let api = api_service();
    let spec = api.spec_endpoint();
    let ui = api.swagger_ui();
    Route::new()
        .nest("/api", api)
        .nest("/docs", ui)
        .at("/openapi.json", spec)
        .at("/healthz", get(routes::health::healthz))
        .at("/readyz", get(routes::health::readyz))
        .data(core)
        .catch_all_error(problem::catch_all)
        // Outermost, so error responses carry these headers too.
        .with(
            SetHeader::new()
                .overriding("X-Content-Type-Options", "nosniff")
                .overriding("Referrer-Policy", "no-referrer")
                .overriding("Cache-Control", "no-store"),
        )
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

/// Serves until `shutdown` completes, then lets in-flight requests finish for up to 30 s.
pub async fn serve(
    core: Core,
    acceptor: TcpAcceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app(core), shutdown, Some(Duration::from_secs(30)))
        .await
}
