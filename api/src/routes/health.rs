//! Liveness, readiness and metrics.

use std::future::Future;
use std::time::Duration;

use coffer_core::Core;
use poem::web::Data;
use poem::{IntoResponse, Response, handler, http::StatusCode};
use serde_json::json;

#[handler]
pub fn healthz() -> Response {
    poem::web::Json(json!({ "status": "ok" })).into_response()
}

/// How long one readiness check may take before it counts as down: probes must not hang.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn check<E: std::fmt::Display>(
    what: &'static str,
    probe: impl Future<Output = Result<(), E>>,
) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(check = what, error = %err, "readiness check failed");
            false
        }
        Err(_) => {
            tracing::warn!(check = what, "readiness check timed out");
            false
        }
    }
}

/// Checks the database, the queue and the storage (at once, each within a deadline); 503 with
/// `Retry-After` if any is down. A configured malware scanner that is down leaves the service
/// `degraded` (200): downloads work, new uploads wait in quarantine until it is back.
#[handler]
pub async fn readyz(core: Data<&Core>) -> Response {
    let scanner = async {
        match &core.scanner {
            Some(scanner) => Some(check("scanner", scanner.ping()).await),
            None => None,
        }
    };
    let (database, queue, storage, scanner) = tokio::join!(
        check("database", core.db.ping()),
        check("queue", async {
            core.queue.check().await.map_err(|e| format!("{e:#}"))
        }),
        check("storage", core.storage.check()),
        scanner,
    );
    let ready = database && queue && storage;
    let show = |ok: bool| if ok { "ok" } else { "unavailable" };
    // A keyring fault (a master-key version missing, or differing from the database's) stops
    // new work that needs that version; what is already readable stays readable.
    let keyring = core.keys.fault().is_none();
    let status = match (ready, scanner, keyring) {
        (false, _, _) => "unavailable",
        (true, Some(false), _) | (true, _, false) => "degraded",
        (true, _, true) => "ready",
    };
    let mut body = json!({
        "status": status,
        "database": show(database),
        "queue": show(queue),
        "storage": show(storage),
        "keyring": if keyring { "ok" } else { "fault" },
    });
    if let Some(scanner) = scanner {
        body["scanner"] = json!(show(scanner));
    }
    if ready {
        (StatusCode::OK, poem::web::Json(body)).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, poem::web::Json(body))
            .with_header("Retry-After", "5")
            .into_response()
    }
}

/// Prometheus metrics of this process (OpenMetrics text format), on the ops listener.
#[handler]
pub async fn metrics(core: Data<&Core>) -> Response {
    render_metrics(&core).await
}

async fn render_metrics(core: &Core) -> Response {
    Response::builder()
        .content_type(coffer_core::metrics::CONTENT_TYPE)
        .body(core.metrics.render(core).await)
}

/// The same on the public listener, for whoever holds `COFFER_METRICS_TOKEN`: they say how busy
/// the service is and how many files it holds, which is nobody else's business.
#[handler]
pub async fn public_metrics(req: &poem::Request, core: Data<&Core>) -> poem::Result<Response> {
    use secrecy::ExposeSecret as _;
    let Some(token) = &core.config.metrics_token else {
        return Err(
            crate::problem::ApiError::from(coffer_core::ServiceError::NotFound(
                "metrics (served on COFFER_METRICS_BIND, or here with COFFER_METRICS_TOKEN)",
            ))
            .into(),
        );
    };
    let given = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let matches: bool =
        subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.expose_secret().as_bytes()).into();
    if !matches {
        return Err(crate::problem::ApiError::from(coffer_core::ServiceError::Unauthorized).into());
    }
    Ok(render_metrics(&core).await)
}
