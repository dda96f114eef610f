//! The audit log: admins query, export and verify it; anyone may read the public keys its
//! checkpoints are signed with.

use chrono::{DateTime, Utc};
use coffer_core::principal::Operator;
use coffer_core::services::audit;
use poem::{Body, Request};
use poem_openapi::param::Query;
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi, ResponseContent};

use super::Tag;
use crate::auth::{AdminAuth, core, meta};
use crate::problem::ApiError;

/// How the audit export is written: JSON lines or CSV.
#[derive(poem_openapi::Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
enum ExportFormatName {
    Jsonl,
    Csv,
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
    /// Sealed events, oldest first: in chain order, or in time order (ties in chain order) when
    /// `since` or `until` is given.
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

/// The audit log, for admins.
pub struct AuditApi;

#[OpenApi(prefix_path = "/api/v1/admin", tag = "Tag::Admin")]
impl AuditApi {
    /// Query the audit log
    #[oai(path = "/audit", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        req: &Request,
        admin: AdminAuth,
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
        let page = audit::query(core(req)?, Operator::Admin(&admin.0.user), &query).await?;
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
            Operator::Admin(&admin.0.user),
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
        admin: AdminAuth,
    ) -> Result<Json<Verification>, ApiError> {
        let v = audit::verify(core(req)?, Operator::Admin(&admin.0.user)).await?;
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
