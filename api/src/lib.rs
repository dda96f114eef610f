//! The HTTP API: poem + poem-openapi routes, Swagger UI and health endpoints.

mod allow;
mod auth;
mod incident;
mod observe;
mod problem;
mod range;
mod routes;
mod templates;
mod upload;
pub mod web;

use std::net::SocketAddr;
use std::time::Duration;

use coffer_core::Core;
use poem::listener::{Acceptor as _, Listener as _, TcpAcceptor, TcpListener};
use poem::middleware::SetHeader;
use poem::{Endpoint, EndpointExt as _, IntoResponse as _, Route, Server, get};
use poem_openapi::OpenApiService;

type Apis = (
    routes::accounts::AccountsApi,
    routes::files::FilesApi,
    routes::shares::SharesApi,
    routes::activity::ActivityApi,
    routes::recipient::RecipientApi,
    routes::admin::AdminApi,
    routes::audit::AuditApi,
    routes::audit::AuditPublicApi,
    routes::settings::SettingsApi,
    routes::preferences::PreferencesApi,
    routes::tokens::TokensApi,
    routes::sessions::SessionsApi,
    routes::mfa::MfaApi,
    routes::mfa::MfaAdminApi,
    routes::oidc::OidcApi,
);

fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            routes::accounts::AccountsApi,
            routes::files::FilesApi,
            routes::shares::SharesApi,
            routes::activity::ActivityApi,
            routes::recipient::RecipientApi,
            routes::admin::AdminApi,
            routes::audit::AuditApi,
            routes::audit::AuditPublicApi,
            routes::settings::SettingsApi,
            routes::preferences::PreferencesApi,
            routes::tokens::TokensApi,
            routes::sessions::SessionsApi,
            routes::mfa::MfaApi,
            routes::mfa::MfaAdminApi,
            routes::oidc::OidcApi,
        ),
        "Coffer",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Secure file sharing: uploads are quarantined, validated and encrypted at rest.")
}

/// HTML pages: a strict policy (no scripts at all, nothing framed, nothing sent to other sites)
/// on top of the headers every response gets.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// Everything else (JSON, files): nothing may run or load if a browser renders it anyway.
const OTHER_CSP: &str = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'";

#[poem::handler]
fn stylesheet() -> poem::Response {
    poem::Response::builder()
        .content_type("text/css; charset=utf-8")
        .body(include_str!("../templates/coffer.css"))
}

/// Swagger UI under a policy that allows its own inline scripts by hash and nothing else
/// (poem-openapi inlines the whole bundle and the spec into one page).
fn swagger_ui(html: String) -> impl Endpoint<Output = poem::Response> + 'static {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut hashes = Vec::new();
    let mut rest = html.as_str();
    while let Some(open) = rest.find("<script") {
        let Some(body) = rest[open..].find('>').map(|end| &rest[open + end + 1..]) else {
            break;
        };
        let Some(close) = body.find("</script>") else {
            break;
        };
        let digest = sha2::Sha256::digest(&body.as_bytes()[..close]);
        hashes.push(format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ));
        rest = &body[close..];
    }
    let csp = format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        hashes.join(" ")
    );
    poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("text/html; charset=utf-8")
            .header("Content-Security-Policy", csp.as_str())
            .body(html.clone())
    })
}

/// Request bodies other than file uploads are small JSON documents or forms: more is refused, so
/// that no request can make the API hold an unbounded body in memory.
const MAX_SMALL_BODY: u64 = 64 * 1024;

/// 413 for a declared length over [`MAX_SMALL_BODY`] (uploads excepted); an undeclared (chunked)
/// body is cut off there, and the handler then sees a truncated body (400).
async fn limit_small_bodies<E: Endpoint>(
    ep: E,
    mut req: poem::Request,
) -> poem::Result<poem::Response> {
    use futures::{StreamExt as _, stream};
    use poem::http::Method;
    let path = req.uri().path();
    let upload = (req.method() == Method::PUT && path.starts_with("/api/v1/files/"))
        || (req.method() == Method::POST && (path == "/api/v1/files" || path == "/app/files"));
    if !upload {
        let declared = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_SMALL_BODY) {
            return Ok(problem::plain(
                poem::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!("request bodies here are limited to {MAX_SMALL_BODY} bytes"),
            ));
        }
        let body = req.take_body().into_bytes_stream();
        // `None` once the limit was passed: the stream ends after its error.
        let limited = stream::unfold(Some((body, 0u64)), |state| async move {
            let (mut body, seen) = state?;
            let piece = body.next().await?;
            match piece {
                Ok(bytes) if seen + bytes.len() as u64 <= MAX_SMALL_BODY => {
                    let seen = seen + bytes.len() as u64;
                    Some((Ok(bytes), Some((body, seen))))
                }
                Ok(_) => Some((Err(std::io::Error::other("request body too large")), None)),
                Err(err) => Some((Err(err), None)),
            }
        });
        req.set_body(poem::Body::from_bytes_stream(limited));
    }
    Ok(ep.call(req).await?.into_response())
}

/// What every response gets on its way out: frame and content policies (a page's own policy
/// when it set one, the strict page policy for other HTML, a nothing-loads policy for the rest),
/// and `Connection: close` after a 413 whose body was left unread.
async fn response_policies<E: Endpoint>(ep: E, req: poem::Request) -> poem::Result<poem::Response> {
    use poem::http::HeaderValue;
    let mut response = ep.call(req).await?.into_response();
    let html = response
        .content_type()
        .is_some_and(|t| t.starts_with("text/html"));
    let headers = response.headers_mut();
    if !headers.contains_key("Content-Security-Policy") {
        let policy = if html { PAGE_CSP } else { OTHER_CSP };
        headers.insert("Content-Security-Policy", HeaderValue::from_static(policy));
    }
    headers.insert("X-Frame-Options", HeaderValue::from_static("DENY"));
    if response.status() == poem::http::StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body stays unread, so the connection cannot carry another request.
        response.headers_mut().insert(
            poem::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    Ok(response)
}

/// The OpenAPI document as served. Every JSON request body refuses unknown fields (each is
/// `#[oai(deny_unknown_fields)]`), and so does the upload form: poem-openapi does not write it
/// into the schema, so it is said here, as `additionalProperties: false` on each body's schema.
fn published_spec(raw: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(raw) else {
        return raw.to_owned();
    };
    let bodies: Vec<String> = doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(serde_json::Value::as_object)
        .flat_map(|operations| operations.values())
        .filter_map(|op| op["requestBody"]["content"].as_object())
        .flat_map(|content| content.iter())
        .filter(|(media, _)| media.starts_with("application/json"))
        .filter_map(|(_, body)| {
            body["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .map(str::to_owned)
        })
        .collect();
    // The upload form refuses a part it does not know, too (its schema is written inline).
    if let Some(paths) = doc["paths"].as_object_mut() {
        for body in paths
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|operations| operations.values_mut())
            // `get_mut`, not indexing: indexing a missing key would add it as `null`.
            .filter_map(|op| {
                op.get_mut("requestBody")?
                    .get_mut("content")?
                    .as_object_mut()
            })
            .flat_map(|content| content.iter_mut())
            .filter(|(media, _)| media.starts_with("multipart/form-data"))
            .filter_map(|(_, body)| body.get_mut("schema")?.as_object_mut())
        {
            body.insert("additionalProperties".into(), false.into());
        }
    }
    for name in bodies {
        if let Some(schema) = doc
            .get_mut("components")
            .and_then(|c| c.get_mut("schemas"))
            .and_then(|s| s.get_mut(&name))
            .and_then(serde_json::Value::as_object_mut)
        {
            schema.insert("additionalProperties".into(), false.into());
        }
    }
    serde_json::to_string(&doc).unwrap_or_else(|_| raw.to_owned())
}

/// The whole HTTP surface, with `core` available to every handler.
pub fn app(core: Core) -> impl Endpoint<Output = poem::Response> + 'static {
    let api = api_service();
    let document = published_spec(&api.spec());
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let ui = swagger_ui(api.swagger_ui_html());
    let mut extra = vec![
        ("/docs", "GET"),
        ("/openapi.json", "GET"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
        ("/assets/coffer.css", "GET"),
    ];
    extra.extend_from_slice(web::ROUTES);
    let allow = std::sync::Arc::new(allow::AllowTable::new(&api.spec(), &extra));
    let handlers = Route::new()
        .nest("/", api)
        .nest("/app", web::routes())
        .at("/docs", ui)
        .at("/assets/coffer.css", get(stylesheet))
        .at("/assets/upload.js", get(web::upload_script))
        .at("/openapi.json", spec)
        .at("/healthz", get(routes::health::healthz))
        .at("/readyz", get(routes::health::readyz))
        .at("/metrics", get(routes::health::public_metrics))
        .around(web::root)
        .around(limit_small_bodies)
        .catch_all_error(problem::catch_all)
        .around(move |ep, req| {
            let allow = allow.clone();
            async move { allow::allow_on_405(&allow, ep, req).await }
        });
    with_common_layers(handlers, core)
}

/// The layers every listener's handlers get, inside out: request ids, logs and metrics; the
/// service context; response policies; and, outermost so that error answers carry them too,
/// the headers every response gets.
fn with_common_layers(
    handlers: impl Endpoint<Output = poem::Response> + 'static,
    core: Core,
) -> impl Endpoint<Output = poem::Response> + 'static {
    let metrics = core.metrics.clone();
    // Behind https, browsers are told to use nothing else (a year, the usual preload minimum).
    let https = core.config.public_url.scheme() == "https";
    handlers
        .around(move |ep, req| observe::observe(metrics.clone(), ep, req))
        .data(core)
        .around(response_policies)
        .with(
            SetHeader::new()
                .overriding("X-Content-Type-Options", "nosniff")
                .overriding("Referrer-Policy", "no-referrer")
                .overriding("Cache-Control", "no-store"),
        )
        .with_if(
            https,
            SetHeader::new().overriding("Strict-Transport-Security", "max-age=31536000"),
        )
}

/// What a worker process serves for its operators: liveness, readiness and metrics.
pub fn ops_app(core: Core) -> impl Endpoint<Output = poem::Response> + 'static {
    let handlers = Route::new()
        .at("/healthz", get(routes::health::healthz))
        .at("/readyz", get(routes::health::readyz))
        .at("/metrics", get(routes::health::metrics))
        .catch_all_error(problem::catch_all);
    with_common_layers(handlers, core)
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
