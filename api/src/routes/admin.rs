//! Admin: accounts, master-key versions and rotation. The audit log is `super::audit`.

use chrono::{DateTime, Utc};
use coffer_core::principal::Operator;
use coffer_core::services::accounts::{self, Account};
use coffer_core::services::keys::{self, VersionInfo};
use coffer_core::services::password_reset;
use coffer_core::services::rotation::{self, RotationView};
use coffer_core::types::Role;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;
use crate::auth::{AdminAuth, core, meta};
use crate::problem::ApiError;

pub struct AdminApi;

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct KeyVersion {
    version: i32,
    state: super::KeyStateName,
    created_at: DateTime<Utc>,
    /// Data keys and quarantine keys wrapped under this version.
    wrapped_keys: u64,
}

impl From<VersionInfo> for KeyVersion {
    fn from(v: VersionInfo) -> Self {
        Self {
            version: v.version,
            state: v.state.into(),
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
#[oai(skip_serializing_if_is_none)]
struct Rotation {
    id: uuid::Uuid,
    from: i32,
    to: i32,
    /// Keys this rotation has rewrapped.
    done: i64,
    /// Keys under older versions when it started. Files encrypted meanwhile get their new
    /// key under the new version directly, so `done` may end below `total`.
    total: i64,
    state: super::RotationStateName,
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
            state: r.state.into(),
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct UserAccount {
    id: uuid::Uuid,
    email: String,
    role: super::RoleName,
    /// A disabled account cannot sign in, and its sessions end.
    disabled: bool,
    created_at: DateTime<Utc>,
}

impl From<Account> for UserAccount {
    fn from(a: Account) -> Self {
        Self {
            id: a.id,
            email: a.email,
            role: a.role.into(),
            disabled: a.disabled,
            created_at: a.created_at,
        }
    }
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct UserPage {
    /// Accounts in email order.
    users: Vec<UserAccount>,
    /// Pass as `cursor` for the next page; absent on the last one.
    next_cursor: Option<String>,
}

/// Give one field or both (not `null`).
#[derive(Object)]
#[oai(deny_unknown_fields)]
struct UserChange {
    /// `user` or `admin`.
    role: MaybeUndefined<String>,
    disabled: MaybeUndefined<bool>,
}

/// A field left out is no change (or its default); `null` is refused rather than guessed at.
pub(super) fn given<T>(field: MaybeUndefined<T>, name: &str) -> Result<Option<T>, ApiError> {
    match field {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(ApiError::unprocessable(format!(
            "`{name}` cannot be null: leave it out to keep it as it is"
        ))),
        MaybeUndefined::Value(value) => Ok(Some(value)),
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
    async fn keys(&self, req: &Request, admin: AdminAuth) -> Result<Json<KeyVersions>, ApiError> {
        let versions = keys::versions(core(req)?, Operator::Admin(&admin.0.user)).await?;
        Ok(Json(KeyVersions {
            versions: versions.into_iter().map(KeyVersion::from).collect(),
        }))
    }

    /// Rotate to a new master-key version (rewraps keys; no file data is re-encrypted)
    #[oai(path = "/keys/rotate", method = "post")]
    async fn rotate(&self, req: &Request, admin: AdminAuth) -> Result<RotateResponse, ApiError> {
        let rotation =
            rotation::rotate(core(req)?, Operator::Admin(&admin.0.user), &meta(req)).await?;
        Ok(RotateResponse::Started(Json(rotation.into())))
    }

    /// Progress of the latest rotation
    #[oai(path = "/keys/rotation", method = "get")]
    async fn rotation(&self, req: &Request, admin: AdminAuth) -> Result<Json<Rotation>, ApiError> {
        rotation::progress(core(req)?, Operator::Admin(&admin.0.user))
            .await?
            .map(|r| Json(r.into()))
            .ok_or_else(|| ApiError::from(coffer_core::ServiceError::NotFound("rotation")))
    }

    /// List accounts
    #[oai(path = "/users", method = "get")]
    async fn users(
        &self,
        req: &Request,
        admin: AdminAuth,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// 1 to 500; 100 by default.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u64>>,
    ) -> Result<Json<UserPage>, ApiError> {
        let limit = limit.0.unwrap_or(100);
        let (users, next) = accounts::list(
            core(req)?,
            Operator::Admin(&admin.0.user),
            cursor.0.as_deref(),
            limit,
        )
        .await?;
        Ok(Json(UserPage {
            users: users.into_iter().map(UserAccount::from).collect(),
            next_cursor: next,
        }))
    }

    /// Change an account's role, or disable or re-enable it (disabling signs it out everywhere)
    #[oai(path = "/users/:id", method = "patch")]
    async fn change_user(
        &self,
        req: &Request,
        admin: AdminAuth,
        id: Path<String>,
        change: Json<UserChange>,
    ) -> Result<Json<UserAccount>, ApiError> {
        let id = super::files::parse_id(&id.0)?;
        let role = match given(change.0.role, "role")? {
            None => None,
            Some(raw) => Some(
                Role::parse(&raw)
                    .ok_or_else(|| ApiError::unprocessable("`role` must be `user` or `admin`"))?,
            ),
        };
        let change = accounts::Change {
            role,
            disabled: given(change.0.disabled, "disabled")?,
        };
        let account = accounts::change(core(req)?, &admin.0.user, id, change, &meta(req)).await?;
        Ok(Json(account.into()))
    }

    /// Force a password reset: the password stops working, every session ends, and a link to
    /// set a new one (24 hours) is emailed to the account's address
    #[oai(path = "/users/:id/password-reset", method = "post")]
    async fn reset_password(
        &self,
        req: &Request,
        admin: AdminAuth,
        id: Path<String>,
    ) -> Result<ResetResponse, ApiError> {
        let id = super::files::parse_id(&id.0)?;
        password_reset::force(core(req)?, &admin.0.user, id, &meta(req)).await?;
        Ok(ResetResponse::Reset)
    }
}

#[derive(ApiResponse)]
enum ResetResponse {
    /// Reset: the link is on its way to the account's address.
    #[oai(status = 202)]
    Reset,
}
