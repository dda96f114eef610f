//! Rotating to a new master-key version: starting one (one at a time) and following its
//! progress. The rewrapping itself, in resumable batches, and the retirement of versions nothing
//! uses any more are the rewrap job's (`crate::jobs::rewrap`).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _,
};
use uuid::Uuid;

use entity::{file, key_rotation, key_version};

use crate::audit::{Action, Event, RequestMeta};
use crate::crypto::SecretKey;
use crate::jobs::rewrap::{RewrapKeys, not_under};
use crate::principal::Operator;
use crate::services::keys::{active_version, matches_database, mismatch};
use crate::text::{Arg, t, t_with};
use crate::types::{KeyState, RotationState};
use crate::{Core, ServiceError, ServiceResult};

#[derive(Debug, Clone)]
pub struct RotationView {
    pub id: Uuid,
    pub from: i32,
    pub to: i32,
    pub done: i64,
    pub total: i64,
    pub state: RotationState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<key_rotation::Model> for RotationView {
    fn from(m: key_rotation::Model) -> Self {
        Self {
            id: m.id,
            from: m.from_version,
            to: m.to_version,
            done: m.done,
            total: m.total,
            state: m.state,
            started_at: m.started_at,
            finished_at: m.finished_at,
        }
    }
}

/// Starts a rotation to a new version: Coffer generates it for its own keyring file; an
/// operator-supplied keyring must already hold it (see `coffer keys generate`). One rotation
/// at a time, enforced by the database (a unique index on the running rotation) inside the
/// transaction that starts it; a generated key is written to the keyring only once that
/// transaction holds the claim.
pub async fn rotate(
    core: &Core,
    by: Operator<'_>,
    meta: &RequestMeta,
) -> ServiceResult<RotationView> {
    by.require_admin()?;
    let actor = by.actor();
    let from = active_version(&core.db).await?;
    // A version for an HSM or KMS is generated and wrapped before the transaction (no write
    // waits for the HSM or KMS); the transaction records it.
    let fresh = match core.keys.kms() {
        Some(kms) => Some(crate::services::keys::kms::new_version(core, kms).await?),
        None => None,
    };
    let txn = crate::db::begin_write(&core.db).await?;
    if let Some(running) = key_rotation::Entity::find()
        .filter(key_rotation::Column::State.eq(RotationState::Running))
        .one(&txn)
        .await?
    {
        return Err(running_conflict(&running));
    }
    let (to, generated) = if let Some(fresh) = &fresh {
        (fresh.version, None)
    } else if core.keys.is_managed() {
        (core.keys.next_version(), Some(SecretKey::generate()))
    } else {
        // The operator may have added the version to the keyring file since start-up.
        core.keys.reload();
        let newest = core.keys.ring().versions().max().unwrap_or(from);
        if newest <= from {
            return Err(ServiceError::Conflict(t_with(
                "rotation-error-no-newer-version",
                [("from", Arg::from(from))],
            )));
        }
        (newest, None)
    };
    let now = Utc::now();
    let total = file::Entity::find()
        .filter(not_under(to))
        .count(&txn)
        .await?;
    let rotation = key_rotation::Model {
        id: Uuid::now_v7(),
        from_version: from,
        to_version: to,
        total: i64::try_from(total).unwrap_or(i64::MAX),
        done: 0,
        state: RotationState::Running,
        started_at: now,
        updated_at: now,
        finished_at: None,
    };
    let claimed = key_rotation::Entity::insert(key_rotation::ActiveModel::from(rotation.clone()))
        .exec(&txn)
        .await;
    if let Err(err) = claimed {
        return Err(match err.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                ServiceError::Conflict(t("rotation-error-just-started"))
            }
            _ => err.into(),
        });
    }
    if let Some(key) = generated {
        core.keys.add_version(to, key).map_err(|e| {
            ServiceError::Internal(anyhow::anyhow!("adding a master key version: {e}"))
        })?;
    }
    let key = match &fresh {
        Some(fresh) => {
            fresh.record(&txn).await?;
            fresh.key.clone()
        }
        None => core
            .keys
            .get(to)
            .map_err(|e| core.key_fault(e.to_string()))?,
    };
    if !matches_database(&txn, to, &key).await? {
        return Err(core.key_fault(mismatch(&core.keys, to)));
    }
    core.keys.mark_verified(to);
    key_version::Entity::update_many()
        .col_expr(key_version::Column::State, Expr::value(KeyState::Retiring))
        .filter(key_version::Column::State.eq(KeyState::Active))
        .exec(&txn)
        .await?;
    key_version::Entity::delete_by_id(to).exec(&txn).await?;
    key_version::Entity::insert(key_version::ActiveModel {
        version: Set(to),
        state: Set(KeyState::Active),
        created_at: Set(now),
        retired_at: Set(None),
    })
    .exec(&txn)
    .await?;
    Event::new(Action::KeyRotationStarted, actor)
        .target("key_rotation", rotation.id)
        .details(serde_json::json!({ "from": from, "to": to, "total": total }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    if let Some(fresh) = fresh {
        fresh.hold(&core.keys);
    }
    if let Err(err) = core.queue.enqueue(RewrapKeys::new(rotation.id)).await {
        tracing::warn!(error = %format!("{err:#}"), "could not enqueue the rewrap; the sweep will retry");
    }
    Ok(rotation.into())
}

fn running_conflict(running: &key_rotation::Model) -> ServiceError {
    ServiceError::Conflict(t_with(
        "rotation-error-running",
        [
            ("to", Arg::from(running.to_version)),
            ("done", Arg::from(running.done)),
            ("total", Arg::from(running.total)),
        ],
    ))
}

/// The latest rotation, if there was one.
pub async fn progress(core: &Core, by: Operator<'_>) -> ServiceResult<Option<RotationView>> {
    by.require_admin()?;
    Ok(key_rotation::Entity::find()
        .order_by_desc(key_rotation::Column::StartedAt)
        .one(&core.db)
        .await?
        .map(RotationView::from))
}
