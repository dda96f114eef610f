//! The rewrap job of a master-key rotation: rewraps every file's keys (never its data), and
//! at the end the second factors' secrets, in batches, each committed on its own, so an interrupted rotation resumes where it stopped (a row
//! changed meanwhile is skipped and picked up again); then ends the rotation and retires the
//! versions nothing uses any more.

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ColumnTrait as _, Condition, ConnectionTrait, EntityTrait as _, PaginatorTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use entity::{file, key_rotation, key_version};

use crate::audit::{Action, Actor, Event};
use crate::crypto::{SecretKey, WrappedKey};
use crate::queue::payload;
use crate::services::keys::{usage, verified_key};
use crate::types::{KeyState, RotationState};
use crate::{Core, JobError};

payload! {
    /// Rewrap every data key for a master-key rotation.
    RewrapKeys(rotation_id) in "rewrap";
}

impl super::Job for RewrapKeys {
    async fn run(self, core: &Core, _attempt: usize) -> Result<(), JobError> {
        run(core, self.rotation_id).await
    }
}

/// Keys not yet wrapped under `version`.
pub(crate) fn not_under(version: i32) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(file::Column::DekKekVersion.is_not_null())
                .add(file::Column::DekKekVersion.ne(version)),
        )
        .add(
            Condition::all()
                .add(file::Column::QuarantineKekVersion.is_not_null())
                .add(file::Column::QuarantineKekVersion.ne(version)),
        )
}

async fn rewrapped(
    core: &Core,
    id: Uuid,
    to: &SecretKey,
    to_version: i32,
    bytes: &Option<Vec<u8>>,
    version: Option<i32>,
) -> Result<Option<WrappedKey>, JobError> {
    match (bytes, version) {
        (Some(bytes), Some(v)) if v != to_version => {
            let old = WrappedKey {
                kek_version: v,
                bytes: bytes.clone(),
            };
            let key = core.unwrap_key(id, &old).await.map_err(|e| {
                JobError::Transient(anyhow::anyhow!("unwrapping the key of file {id}: {e}"))
            })?;
            Ok(Some(crate::crypto::wrap_key(to, to_version, id, &key)))
        }
        _ => Ok(None),
    }
}

/// Rewraps one batch. Each batch commits on its own, so a rotation interrupted at any point
/// resumes where it stopped; a row changed meanwhile (deleted, newly encrypted) is skipped by
/// the conditional update and picked up by the next batch if it still needs rewrapping.
/// Files are visited in id order from `after` (a keyset cursor: each batch reads only rows it
/// has not passed, instead of skipping the done ones again).
pub async fn rewrap_batch(
    core: &Core,
    rotation_id: Uuid,
    after: Option<Uuid>,
) -> Result<Batch, JobError> {
    rewrap_batch_of(core, rotation_id, core.config.rewrap_batch, after).await
}

/// What is left after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Finished,
    /// Call again with this cursor (`None`: start over, keys were wrapped under an old
    /// version behind the cursor meanwhile).
    More(Option<Uuid>),
}

/// [`rewrap_batch`] with a chosen batch size (tests interrupt a rotation part-way with it).
pub async fn rewrap_batch_of(
    core: &Core,
    rotation_id: Uuid,
    batch: u64,
    after: Option<Uuid>,
) -> Result<Batch, JobError> {
    let Some(rotation) = running(core, rotation_id).await? else {
        return Ok(Batch::Finished);
    };
    let rows = read_batch(&core.db, rotation.to_version, after, batch).await?;
    apply_batch(core, &rotation, rows, batch).await
}

/// The rotation, unless it is gone or finished.
async fn running(core: &Core, rotation_id: Uuid) -> Result<Option<key_rotation::Model>, JobError> {
    Ok(key_rotation::Entity::find_by_id(rotation_id)
        .one(&core.db)
        .await?
        .filter(|r| r.state != RotationState::Finished))
}

/// The next `batch` files after `after` (in id order) with a key not yet under `to`.
async fn read_batch(
    db: &sea_orm::DatabaseConnection,
    to: i32,
    after: Option<Uuid>,
    batch: u64,
) -> Result<Vec<file::Model>, sea_orm::DbErr> {
    let mut query = file::Entity::find().filter(not_under(to));
    if let Some(after) = after {
        query = query.filter(file::Column::Id.gt(after));
    }
    query
        .order_by_asc(file::Column::Id)
        .limit(batch)
        .all(db)
        .await
}

/// Rewraps the keys of `rows` (read by [`read_batch`]) in one transaction.
async fn apply_batch(
    core: &Core,
    rotation: &key_rotation::Model,
    rows: Vec<file::Model>,
    batch: u64,
) -> Result<Batch, JobError> {
    let (rotation_id, to) = (rotation.id, rotation.to_version);
    let to_key = verified_key(core, to)
        .await
        .map_err(|e| JobError::Transient(anyhow::Error::new(e).context("rewrapping")))?;
    let txn = crate::db::begin_write(&core.db).await?;
    let mut updated = 0u64;
    // Data keys of ready files, the bulk of any rotation, go in one statement per batch.
    let mut bulk = Vec::new();
    for row in &rows {
        let dek = rewrapped(core, row.id, &to_key, to, &row.dek, row.dek_kek_version).await?;
        let quarantine = rewrapped(
            core,
            row.id,
            &to_key,
            to,
            &row.quarantine_key,
            row.quarantine_kek_version,
        )
        .await?;
        match (dek, quarantine, row.dek_kek_version) {
            (Some(dek), None, Some(old)) if row.quarantine_kek_version.is_none() => {
                bulk.push((row.id, dek, old))
            }
            (dek, quarantine, _) => updated += rewrap_row(&txn, row, dek, quarantine).await?,
        }
    }
    updated += rewrap_deks(&txn, &bulk).await?;
    let now = Utc::now();
    key_rotation::Entity::update_many()
        .col_expr(
            key_rotation::Column::Done,
            Expr::col(key_rotation::Column::Done).add(i64::try_from(updated).unwrap_or(0)),
        )
        .col_expr(key_rotation::Column::UpdatedAt, Expr::value(now))
        .filter(key_rotation::Column::Id.eq(rotation_id))
        .exec(&txn)
        .await?;
    if updated > 0 {
        Event::new(Action::KeyRewrapped, Actor::System)
            .target("key_rotation", rotation_id)
            .details(serde_json::json!({ "to": to, "count": updated }))
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    if (rows.len() as u64) == batch {
        return Ok(Batch::More(rows.last().map(|r| r.id)));
    }
    if finish_if_done(core, rotation).await? {
        Ok(Batch::Finished)
    } else {
        Ok(Batch::More(None))
    }
}

/// Rewraps one row's keys, only if nobody changed them since they were read.
async fn rewrap_row(
    txn: &impl ConnectionTrait,
    row: &file::Model,
    dek: Option<WrappedKey>,
    quarantine: Option<WrappedKey>,
) -> Result<u64, sea_orm::DbErr> {
    if dek.is_none() && quarantine.is_none() {
        return Ok(0);
    }
    let mut update = file::Entity::update_many().filter(file::Column::Id.eq(row.id));
    update = match row.dek_kek_version {
        Some(v) => update.filter(file::Column::DekKekVersion.eq(v)),
        None => update.filter(file::Column::DekKekVersion.is_null()),
    };
    update = match row.quarantine_kek_version {
        Some(v) => update.filter(file::Column::QuarantineKekVersion.eq(v)),
        None => update.filter(file::Column::QuarantineKekVersion.is_null()),
    };
    if let Some(w) = dek {
        update = update
            .col_expr(file::Column::Dek, Expr::value(w.bytes))
            .col_expr(file::Column::DekKekVersion, Expr::value(w.kek_version));
    }
    if let Some(w) = quarantine {
        update = update
            .col_expr(file::Column::QuarantineKey, Expr::value(w.bytes))
            .col_expr(
                file::Column::QuarantineKekVersion,
                Expr::value(w.kek_version),
            );
    }
    Ok(update.exec(txn).await?.rows_affected)
}

/// Rewraps many data keys in one `UPDATE … FROM (VALUES …)`, each only if still under the
/// version it was read with.
async fn rewrap_deks(
    txn: &impl ConnectionTrait,
    keys: &[(Uuid, WrappedKey, i32)],
) -> Result<u64, sea_orm::DbErr> {
    if keys.is_empty() {
        return Ok(0);
    }
    let backend = txn.get_database_backend();
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(keys.len() * 4);
    for (id, wrapped, old) in keys {
        values.push((*id).into());
        values.push(wrapped.bytes.clone().into());
        values.push(wrapped.kek_version.into());
        values.push((*old).into());
    }
    let rows = crate::db::values_rows(backend, keys.len(), &["uuid", "bytea", "int", "int"]);
    let sql = match backend {
        sea_orm::DbBackend::Postgres => format!(
            "UPDATE files AS f SET dek = v.dek, dek_kek_version = v.ver \
             FROM (VALUES {rows}) AS v(id, dek, ver, old) \
             WHERE f.id = v.id AND f.dek_kek_version = v.old"
        ),
        _ => format!(
            "WITH v(id, dek, ver, old) AS (VALUES {rows}) \
             UPDATE files SET dek = v.dek, dek_kek_version = v.ver \
             FROM v WHERE files.id = v.id AND files.dek_kek_version = v.old"
        ),
    };
    let result = txn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Ends the rotation once no key needs rewrapping, and retires every version nothing uses.
async fn finish_if_done(core: &Core, rotation: &key_rotation::Model) -> Result<bool, JobError> {
    crate::services::mfa::rewrap_secrets(core, rotation.to_version).await?;
    let txn = crate::db::begin_write(&core.db).await?;
    if file::Entity::find()
        .filter(not_under(rotation.to_version))
        .count(&txn)
        .await?
        > 0
        || crate::services::mfa::secrets_not_under(&txn, rotation.to_version).await? > 0
    {
        return Ok(false); // new wraps under an old version raced in: another pass
    }
    let now = Utc::now();
    key_rotation::Entity::update_many()
        .col_expr(
            key_rotation::Column::State,
            Expr::value(RotationState::Finished),
        )
        .col_expr(key_rotation::Column::FinishedAt, Expr::value(now))
        .col_expr(key_rotation::Column::UpdatedAt, Expr::value(now))
        .filter(key_rotation::Column::Id.eq(rotation.id))
        .filter(key_rotation::Column::State.eq(RotationState::Running))
        .exec(&txn)
        .await?;
    let in_use = usage(&txn).await?;
    let retiring = key_version::Entity::find()
        .filter(key_version::Column::State.eq(KeyState::Retiring))
        .all(&txn)
        .await?;
    for version in retiring
        .into_iter()
        .filter(|v| !in_use.contains_key(&v.version))
    {
        key_version::Entity::update_many()
            .col_expr(key_version::Column::State, Expr::value(KeyState::Retired))
            .col_expr(key_version::Column::RetiredAt, Expr::value(now))
            .filter(key_version::Column::Version.eq(version.version))
            .exec(&txn)
            .await?;
        Event::new(Action::KeyRetired, Actor::System)
            .target("key_version", version.version)
            .details(serde_json::json!({ "rotation": rotation.id }))
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Runs a rotation's batches until it is finished. Each batch's successor is read while the
/// batch is rewrapped and written, so that the database's work and Coffer's overlap on two
/// cores (a row changed in between is skipped by the conditional update, as ever).
pub async fn run(core: &Core, rotation_id: Uuid) -> Result<(), JobError> {
    let batch = core.config.rewrap_batch;
    let Some(first) = running(core, rotation_id).await? else {
        return Ok(());
    };
    let to = first.to_version;
    let read = |after: Option<Uuid>| {
        let db = core.db.clone();
        AbortOnDropHandle::new(tokio::spawn(async move {
            read_batch(&db, to, after, batch).await
        }))
    };
    let mut ahead = read(None);
    loop {
        let rows = (&mut ahead)
            .await
            .map_err(|e| JobError::Transient(anyhow::anyhow!("reading a batch: {e}")))??;
        if rows.len() as u64 == batch {
            ahead = read(rows.last().map(|r| r.id));
        }
        let Some(rotation) = running(core, rotation_id).await? else {
            return Ok(());
        };
        match apply_batch(core, &rotation, rows, batch).await? {
            Batch::Finished => return Ok(()),
            Batch::More(Some(_)) => {} // already being read
            Batch::More(None) => ahead = read(None),
        }
    }
}

/// Re-enqueues a rotation that has made no progress for a while (a killed worker).
pub async fn sweep(core: &Core) -> Result<(), JobError> {
    let cutoff = core.config.stuck_before(Utc::now());
    let stalled = key_rotation::Entity::find()
        .filter(key_rotation::Column::State.eq(RotationState::Running))
        .filter(key_rotation::Column::UpdatedAt.lt(cutoff))
        .all(&core.db)
        .await?;
    for rotation in stalled {
        key_rotation::Entity::update_many()
            .col_expr(key_rotation::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(key_rotation::Column::Id.eq(rotation.id))
            .exec(&core.db)
            .await?;
        core.queue.enqueue(RewrapKeys::new(rotation.id)).await?;
    }
    Ok(())
}
