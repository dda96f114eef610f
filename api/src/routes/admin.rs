//! Admin: master-key versions and rotation.

use chrono::{DateTime, Utc};
use coffer_core::services::keys::{self, RotationView, VersionInfo};
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use crate::auth::{AdminAuth, core, meta};
use crate::problem::ApiError;

pub struct AdminApi;

#[derive(Object)]
struct KeyVersion {
    version: i32,
    /// `active` (new wraps), `retiring` (still in use, being rotated away) or `retired`.
    state: String,
    created_at: DateTime<Utc>,
    /// Data keys and quarantine keys wrapped under this version.
    wrapped_keys: u64,
}

impl From<VersionInfo> for KeyVersion {
    fn from(v: VersionInfo) -> Self {
        Self {
            version: v.version,
            state: v.state,
            created_at: v.created_at,
            wrapped_keys: v.wrapped_keys,
        }
    }
}

#[derive(Object)]
struct KeyVersions {
    versions: Vec<KeyVersion>,
}

#[derive(Object)]
struct Rotation {
    id: uuid::Uuid,
    from: i32,
    to: i32,
    done: i64,
    total: i64,
    /// `running` or `finished`.
    state: String,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<RotationView> for Rotation {
    fn from(r: RotationView) -> Self {
        Self {
            id: r.id,
            from: r.from,
            to: r.to,
            done: r.done,
            total: r.total,
            state: r.state,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

#[derive(ApiResponse)]
enum RotateResponse {
    /// Started: a new version is active for new wraps, and jobs rewrap the existing keys.
    #[oai(status = 202)]
    Started(Json<Rotation>),
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "Tag::Admin")]
impl AdminApi {
    /// Master-key versions and how many keys each wraps
    #[oai(path = "/keys", method = "get")]
    async fn keys(&self, req: &Request, _admin: AdminAuth) -> Result<Json<KeyVersions>, ApiError> {
        let versions = keys::versions(core(req)?).await?;
        Ok(Json(KeyVersions {
            versions: versions.into_iter().map(KeyVersion::from).collect(),
        }))
    }

    /// Rotate to a new master-key version (rewraps keys; no file data is re-encrypted)
    #[oai(path = "/keys/rotate", method = "post")]
    async fn rotate(&self, req: &Request, admin: AdminAuth) -> Result<RotateResponse, ApiError> {
        let rotation = keys::rotate(core(req)?, admin.0.user.actor(), &meta(req)).await?;
        Ok(RotateResponse::Started(Json(rotation.into())))
    }

    /// Progress of the latest rotation
    #[oai(path = "/keys/rotation", method = "get")]
    async fn rotation(&self, req: &Request, _admin: AdminAuth) -> Result<Json<Rotation>, ApiError> {
        keys::progress(core(req)?)
            .await?
            .map(|r| Json(r.into()))
            .ok_or_else(|| ApiError::from(coffer_core::ServiceError::NotFound("rotation")))
    }
}
