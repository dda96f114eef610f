//! Per-request observability: a request id (kept from `X-Request-Id` when sane, made otherwise)
//! that is echoed in the response, carried into log lines and into the jobs the request
//! enqueues; one log line per request; and the HTTP metrics.

use std::time::Instant;

use coffer_core::metrics::Metrics;
use coffer_core::request_id;
use poem::PathPattern;
use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse as _, Request, Response};
use tracing::Instrument as _;

pub const HEADER: &str = "x-request-id";

/// The matched route pattern (`/s/:param0`, never the token itself), or `unmatched`.
fn route(response: &Response) -> String {
    response
        .data::<PathPattern>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.0.to_string())
}

/// Marks a HEAD request: poem's router answers HEAD with the GET handler and tells it the
/// method is GET, so a handler asks this instead.
#[derive(Debug, Clone, Copy)]
pub struct HeadRequest;

pub async fn observe<E: Endpoint>(
    metrics: Metrics,
    ep: E,
    mut req: Request,
) -> poem::Result<Response> {
    let started = Instant::now();
    let id = request_id::accept_or_new(req.headers().get(HEADER).and_then(|v| v.to_str().ok()));
    let method = req.method().clone();
    if method == poem::http::Method::HEAD {
        req.extensions_mut().insert(HeadRequest);
    }
    let span = tracing::info_span!("request", request_id = %id, method = %method);
    let call = request_id::scope(Some(id.clone()), ep.call(req));
    let mut response = match call.instrument(span.clone()).await {
        Ok(output) => output.into_response(),
        Err(err) => err.into_response(),
    };
    let elapsed = started.elapsed();
    let route = route(&response);
    let status = response.status().as_u16();
    metrics.http_request(method.as_str(), &route, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            %route,
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}
