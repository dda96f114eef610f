//! Liveness and readiness.

use coffer_core::Core;
use poem::web::Data;
use poem::{IntoResponse, Response, handler, http::StatusCode};
use serde_json::json;

#[handler]
pub fn healthz() -> Response {
    poem::web::Json(json!({ "status": "ok" })).into_response()
}

/// Checks the database, the queue and the storage; 503 if any is down.
#[handler]
pub async fn readyz(core: Data<&Core>) -> Response {
    let database = core.db.ping().await.map_err(|e| e.to_string());
    let queue = core.queue.check().await.map_err(|e| format!("{e:#}"));
    let storage = core.storage.check().await.map_err(|e| e.to_string());
    let ready = database.is_ok() && queue.is_ok() && storage.is_ok();
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok",
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            "unavailable"
        }
    };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": show(&database),
        "queue": show(&queue),
        "storage": show(&storage),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, poem::web::Json(body)).into_response()
}
