//! Liveness, readiness and metrics.

use coffer_core::Core;
use coffer_core::services::health;
use poem::web::Data;
use poem::{IntoResponse, Response, handler, http::StatusCode};
use serde_json::json;

#[handler]
pub fn healthz() -> Response {
    poem::web::Json(json!({ "status": "ok" })).into_response()
}

/// Checks the database, the queue and the storage (at once, each within a deadline); 503 with
/// `Retry-After` if any is down. A configured malware scanner that is down leaves the service
/// `degraded` (200): downloads work, new uploads wait in quarantine until it is back.
#[handler]
pub async fn readyz(core: Data<&Core>) -> Response {
    let found = health::readiness(&core).await;
    let ready = found.ready();
    let show = |ok: bool| if ok { "ok" } else { "unavailable" };
    // A keyring fault (a master-key version missing, or differing from the database's) stops
    // new work that needs that version; what is already readable stays readable.
    // An HSM or KMS that does not answer: the keys held keep working, a new key operation
    // (a rotation, a version another process added) waits until it answers.
    let keyring = !found.keyring_fault;
    let kms_down = found.kms == Some(false);
    let status = match (ready, found.scanner, keyring && !kms_down) {
        (false, _, _) => "unavailable",
        (true, Some(false), _) | (true, _, false) => "degraded",
        (true, _, true) => "ready",
    };
    let mut body = json!({
        "status": status,
        "database": show(found.database),
        "queue": show(found.queue),
        "storage": show(found.storage),
        "keyring": if keyring { "ok" } else { "fault" },
    });
    if let Some(scanner) = found.scanner {
        body["scanner"] = json!(show(scanner));
    }
    if let Some(kms) = found.kms {
        body["kms"] = json!(show(kms));
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
        .body(health::metrics(core).await)
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
