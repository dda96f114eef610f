//! Admin: accounts, master-key versions and rotation, the audit log.

use chrono::{DateTime, Utc};
use coffer_core::services::accounts::{self, Account};
use coffer_core::services::keys::{self, RotationView, VersionInfo};
use coffer_core::services::{audit, password_reset};
use coffer_core::types::Role;
use poem::{Body, Request};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi, ResponseContent};

use super::Tag;
use crate::auth::{AdminAuth, core, meta};
use crate::problem::ApiError;

pub struct AdminApi;

/// How the audit export is written: JSON lines or CSV.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
enum ExportFormatName {
    Jsonl,
    Csv,
}

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
struct AuditEvent {
    seq: i64,
    id: uuid::Uuid,
    occurred_at: DateTime<Utc>,
    /// `user`, `admin`, `recipient` (by share id), `system` or `anonymous`.
    actor_kind: String,
    actor_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    /// `success`, `failure` or `denied`.
    outcome: String,
    details: serde_json::Value,
    /// SHA-256 chain hash, hex.
    hash: String,
}

impl From<audit::EventView> for AuditEvent {
    fn from(v: audit::EventView) -> Self {
        Self {
            seq: v.seq,
            id: v.id,
            occurred_at: v.occurred_at,
            actor_kind: v.actor_kind,
            actor_id: v.actor_id,
            ip: v.ip,
            user_agent: v.user_agent,
            action: v.action,
            target_kind: v.target_kind,
            target_id: v.target_id,
            outcome: v.outcome,
            details: v.details,
            hash: v.hash,
        }
    }
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct AuditPage {
    /// Sealed events, oldest first.
    events: Vec<AuditEvent>,
    /// Pass as `after_seq` for the next page; absent on the last one.
    next_cursor: Option<i64>,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct Verification {
    ok: bool,
    checked: u64,
    head_seq: Option<i64>,
    head_hash: Option<String>,
    /// The first sequence number whose event is missing, altered or out of place.
    first_bad_seq: Option<i64>,
    /// The newest genuine signed checkpoint the chain was compared with.
    checkpoint: Option<AuditCheckpoint>,
    /// Everything that is not as it should be; empty when `ok`.
    findings: Vec<AuditFinding>,
}

/// A signed checkpoint of the chain, as kept in the blob store.
#[derive(Object)]
struct AuditCheckpoint {
    seq: i64,
    hash: String,
    at: DateTime<Utc>,
    key_version: i32,
    /// Ed25519 over `coffer audit checkpoint v1\n{seq}\n{hash}\n{at}\n{key_version}\n`, hex.
    signature: String,
}

/// What verification found wrong.
#[derive(poem_openapi::Enum, Clone, Copy)]
#[oai(rename_all = "snake_case")]
enum FindingKind {
    ChainBroken,
    Altered,
    Unauthenticated,
    Truncated,
    Rewritten,
    RestoredFromBackup,
    CheckpointMissing,
    CheckpointForged,
    PendingForged,
}

#[derive(Object)]
#[oai(skip_serializing_if_is_none)]
struct AuditFinding {
    kind: FindingKind,
    /// The event it is about, by sequence number.
    seq: Option<i64>,
    /// The checkpoint it is about, by the sequence number it signed.
    checkpoint_seq: Option<i64>,
    /// The unsealed event it is about.
    event_id: Option<uuid::Uuid>,
    detail: String,
}

impl From<&audit::Finding> for AuditFinding {
    fn from(finding: &audit::Finding) -> Self {
        use audit::Finding as F;
        let kind = match finding {
            F::ChainBroken { .. } => FindingKind::ChainBroken,
            F::Altered { .. } => FindingKind::Altered,
            F::Unauthenticated { .. } => FindingKind::Unauthenticated,
            F::Truncated { .. } => FindingKind::Truncated,
            F::Rewritten { .. } => FindingKind::Rewritten,
            F::RestoredFromBackup { .. } => FindingKind::RestoredFromBackup,
            F::CheckpointMissing { .. } => FindingKind::CheckpointMissing,
            F::CheckpointForged { .. } => FindingKind::CheckpointForged,
            F::PendingForged { .. } => FindingKind::PendingForged,
        };
        let seq = match finding {
            F::Truncated { head_seq, .. } | F::RestoredFromBackup { head_seq, .. } => *head_seq,
            other => other.seq(),
        };
        Self {
            kind,
            seq,
            checkpoint_seq: finding.checkpoint_seq(),
            event_id: match finding {
                F::PendingForged { event_id } => Some(*event_id),
                _ => None,
            },
            detail: finding.describe(),
        }
    }
}

#[derive(ResponseContent)]
enum ExportContent {
    #[oai(content_type = "application/x-ndjson")]
    JsonLines(Binary<Body>),
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(Binary<Body>),
}

#[derive(ApiResponse)]
enum ExportResponse {
    /// The events, streamed: JSON lines or CSV.
    #[oai(status = 200)]
    Export(ExportContent, #[oai(header = "Content-Disposition")] String),
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

    /// Query the audit log
    #[oai(path = "/audit", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        req: &Request,
        _admin: AdminAuth,
        action: Query<Option<String>>,
        actor_id: Query<Option<String>>,
        target_id: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        after_seq: Query<Option<i64>>,
        /// 1 to 1000; 100 by default.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        // The range is declared (and checked) on the parameter.
        let limit = limit.0.unwrap_or(100);
        let query = audit::Query {
            action: action.0,
            actor_id: actor_id.0,
            target_id: target_id.0,
            since: since.0,
            until: until.0,
            after_seq: after_seq.0,
            limit,
        };
        let page = audit::query(core(req)?, &query).await?;
        Ok(Json(AuditPage {
            events: page.events.into_iter().map(AuditEvent::from).collect(),
            next_cursor: page.next,
        }))
    }

    /// Export the audit log (streamed; the export is itself audited)
    #[oai(path = "/audit/export", method = "get")]
    async fn export(
        &self,
        req: &Request,
        admin: AdminAuth,
        /// Default: `jsonl`.
        format: Query<Option<ExportFormatName>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
    ) -> Result<ExportResponse, ApiError> {
        let core = core(req)?;
        let format = match format.0 {
            None | Some(ExportFormatName::Jsonl) => audit::ExportFormat::JsonLines,
            Some(ExportFormatName::Csv) => audit::ExportFormat::Csv,
        };
        let body = audit::export_for(
            core,
            admin.0.user.actor(),
            format,
            since.0,
            until.0,
            &meta(req),
        )
        .await?;
        let ext = format.extension();
        let name = format!("coffer-audit-{}.{ext}", Utc::now().format("%Y%m%dT%H%M%SZ"));
        let body = Binary(Body::from_bytes_stream(body));
        let content = match format {
            audit::ExportFormat::JsonLines => ExportContent::JsonLines(body),
            audit::ExportFormat::Csv => ExportContent::Csv(body),
        };
        Ok(ExportResponse::Export(
            content,
            format!("attachment; filename=\"{name}\""),
        ))
    }

    /// Verify the audit log: every link and MAC of the chain, the newest signed checkpoints,
    /// and the events waiting to be sealed
    #[oai(path = "/audit/verify", method = "get")]
    async fn verify(
        &self,
        req: &Request,
        _admin: AdminAuth,
    ) -> Result<Json<Verification>, ApiError> {
        let v = audit::verify(core(req)?).await?;
        Ok(Json(Verification {
            ok: v.ok,
            checked: v.checked,
            head_seq: v.head_seq,
            head_hash: v.head_hash,
            first_bad_seq: v.first_bad_seq,
            findings: v.findings.iter().map(AuditFinding::from).collect(),
            checkpoint: v.checkpoint.map(|c| AuditCheckpoint {
                seq: c.seq,
                hash: c.hash,
                at: c.at,
                key_version: c.key_version,
                signature: c.signature,
            }),
        }))
    }

    /// Progress of the latest rotation
    #[oai(path = "/keys/rotation", method = "get")]
    async fn rotation(&self, req: &Request, _admin: AdminAuth) -> Result<Json<Rotation>, ApiError> {
        keys::progress(core(req)?)
            .await?
            .map(|r| Json(r.into()))
            .ok_or_else(|| ApiError::from(coffer_core::ServiceError::NotFound("rotation")))
    }

    /// List accounts
    #[oai(path = "/users", method = "get")]
    async fn users(
        &self,
        req: &Request,
        _admin: AdminAuth,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// 1 to 500; 100 by default.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u64>>,
    ) -> Result<Json<UserPage>, ApiError> {
        let limit = limit.0.unwrap_or(100);
        let (users, next) = accounts::list(core(req)?, cursor.0.as_deref(), limit).await?;
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

/// One version of the audit key's public half.
#[derive(Object)]
struct AuditPublicKey {
    version: i32,
    /// Ed25519 public key, hex (32 bytes).
    public_key: String,
}

#[derive(Object)]
struct AuditPublicKeys {
    /// Every audit-key version, oldest first; a checkpoint names the version that signed it.
    keys: Vec<AuditPublicKey>,
}

/// What anyone may read of the audit log: the keys its checkpoints are signed with.
pub struct AuditPublicApi;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Admin")]
impl AuditPublicApi {
    /// The public keys that check the audit log's signed checkpoints
    #[oai(path = "/audit/public-key", method = "get")]
    async fn public_key(&self, req: &Request) -> Result<Json<AuditPublicKeys>, ApiError> {
        let keys = audit::public_keys(core(req)?)
            .into_iter()
            .map(|(version, public_key)| AuditPublicKey {
                version,
                public_key,
            })
            .collect();
        Ok(Json(AuditPublicKeys { keys }))
    }
}
