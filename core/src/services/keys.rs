//! Master keys: which version is active, rotation by rewrapping every file's key (never its
//! data), and retirement of versions nothing uses any more.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, Condition, ConnectionTrait, DatabaseConnection,
    EntityTrait as _, PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use uuid::Uuid;

use entity::{file, key_check, key_rotation, key_version};

use crate::audit::{Actor, Event, RequestMeta};
use crate::crypto::{KeyStore, Keyring, SecretKey, WrappedKey};
use crate::queue::RewrapKeys;
use crate::types::{KeyState, RotationState};
use crate::{Core, JobError, KeyFailure, ServiceError, ServiceResult, crypto};

/// The master keys at work: every file key is wrapped and opened here, under a version this
/// process has checked against the database.
impl Core {
    /// Wraps a file's key under the active master-key version.
    pub async fn wrap_key(&self, file_id: Uuid, key: &SecretKey) -> ServiceResult<WrappedKey> {
        let version = active_version(&self.db).await?;
        let kek = verified_key(self, version).await?;
        self.keys.clear_fault();
        Ok(crypto::wrap_key(&kek, version, file_id, key))
    }

    /// Opens a wrapped key. A key that does not open under a version this process has checked
    /// against the database was altered ([`KeyFailure::Altered`]); a version missing from the
    /// keyring, or one whose material differs from the database's, is the operator's problem
    /// ([`KeyFailure::Fault`]: logged, counted, shown by `/readyz`), never the file's.
    pub async fn unwrap_key(
        &self,
        file_id: Uuid,
        wrapped: &WrappedKey,
    ) -> Result<SecretKey, KeyFailure> {
        let kek = verified_key(self, wrapped.kek_version)
            .await
            .map_err(KeyFailure::Fault)?;
        let key = crypto::unwrap_key(&kek, file_id, wrapped).map_err(KeyFailure::Altered)?;
        self.keys.clear_fault();
        Ok(key)
    }

    /// Records a keyring problem and turns it into the 503 the caller returns.
    pub fn key_fault(&self, what: String) -> ServiceError {
        tracing::error!(problem = %what, "master key fault: fix the keyring of this process (work waits and is retried)");
        self.metrics.key_fault();
        self.keys.report_fault(what.clone());
        ServiceError::Unavailable(anyhow::anyhow!("master key fault: {what}"))
    }
}

/// Every KEK version some wrapped key still uses must be in the keyring: a missing one is a
/// start-up error, never a surprise at download time.
pub async fn check_keyring_covers_database(
    db: &DatabaseConnection,
    keyring: &Keyring,
) -> anyhow::Result<()> {
    let needed: BTreeSet<i32> = usage(db).await?.into_keys().collect();
    let missing: Vec<String> = needed
        .iter()
        .filter(|v| keyring.get(**v).is_err())
        .map(i32::to_string)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "master key version(s) {} are needed by stored files but missing from the keyring; restore them to COFFER_MASTER_KEYS / COFFER_MASTER_KEYS_FILE",
            missing.join(", ")
        );
    }
    Ok(())
}

fn mismatch(version: i32) -> String {
    format!(
        "master key version {version} in this process's keyring is not the key this database was set up with (its check value differs): give every process the same keyring, copied from COFFER_MASTER_KEYS / COFFER_MASTER_KEYS_FILE of a process that works, never newly generated keys"
    )
}

/// Whether `key` is the database's version `version`: the recorded check value decides; for a
/// version the database has no check value of yet (its first use, or a database from before
/// check values) a key wrapped under it must open, and then its check value is recorded. Two
/// processes recording at once: the first insert wins, the other compares against it.
async fn matches_database(
    db: &impl ConnectionTrait,
    version: i32,
    key: &SecretKey,
) -> Result<bool, sea_orm::DbErr> {
    let value = key.check_value();
    let recorded = key_check::Entity::find_by_id(version).one(db).await?;
    if recorded.is_none() {
        if let Some((id, wrapped)) = witness(db, version).await?
            && crate::crypto::unwrap_key(key, id, &wrapped).is_err()
        {
            return Ok(false);
        }
        key_check::Entity::insert(key_check::ActiveModel {
            version: Set(version),
            check_value: Set(value.clone()),
            recorded_at: Set(Utc::now()),
        })
        .on_conflict_do_nothing()
        .exec(db)
        .await?;
    }
    let recorded = key_check::Entity::find_by_id(version).one(db).await?;
    Ok(recorded.is_some_and(|r| {
        subtle::ConstantTimeEq::ct_eq(r.check_value.as_bytes(), value.as_bytes()).into()
    }))
}

/// One key wrapped under `version`, if any.
async fn witness(
    db: &impl ConnectionTrait,
    version: i32,
) -> Result<Option<(Uuid, WrappedKey)>, sea_orm::DbErr> {
    for (key, column) in [
        (file::Column::Dek, file::Column::DekKekVersion),
        (
            file::Column::QuarantineKey,
            file::Column::QuarantineKekVersion,
        ),
    ] {
        let found: Option<(Uuid, Option<Vec<u8>>)> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .column(key)
            .filter(column.eq(version))
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        if let Some((id, Some(bytes))) = found {
            return Ok(Some((
                id,
                WrappedKey {
                    kek_version: version,
                    bytes,
                },
            )));
        }
    }
    Ok(None)
}

/// At start-up: every version of this process's keyring must be the database's (see
/// [`matches_database`]); a process given other keys refuses to start instead of wrapping
/// keys nobody else can open.
pub async fn check_keyring_matches_database(
    db: &DatabaseConnection,
    keys: &KeyStore,
) -> anyhow::Result<()> {
    let ring = keys.ring();
    for version in ring.versions() {
        let key = ring.get(version)?;
        if !matches_database(db, version, key).await? {
            anyhow::bail!(mismatch(version));
        }
        keys.mark_verified(version);
    }
    Ok(())
}

/// Makes sure `version` is usable and the database's before a key is wrapped or trusted under
/// it: a version this process has not checked yet (added to its keyring file since it
/// started) is checked now. A failure is a key fault: the operator's to fix, never the file's.
pub async fn verified_key(core: &Core, version: i32) -> ServiceResult<SecretKey> {
    let key = core
        .keys
        .get(version)
        .map_err(|e| core.key_fault(e.to_string()))?;
    if !core.keys.is_verified(version) {
        if !matches_database(&core.db, version, &key).await? {
            return Err(core.key_fault(mismatch(version)));
        }
        core.keys.mark_verified(version);
    }
    Ok(key)
}

/// How many wrapped keys (data keys and quarantine keys) each version holds.
async fn usage(db: &impl ConnectionTrait) -> Result<BTreeMap<i32, u64>, sea_orm::DbErr> {
    let mut counts = BTreeMap::new();
    for column in [
        file::Column::DekKekVersion,
        file::Column::QuarantineKekVersion,
    ] {
        let rows: Vec<(Option<i32>, i64)> = file::Entity::find()
            .select_only()
            .column(column)
            .column_as(file::Column::Id.count(), "n")
            .filter(column.is_not_null())
            .group_by(column)
            .into_tuple()
            .all(db)
            .await?;
        for (version, n) in rows {
            if let Some(version) = version {
                *counts.entry(version).or_insert(0) += u64::try_from(n).unwrap_or(0);
            }
        }
    }
    Ok(counts)
}

/// Records the keyring's newest version as active on a fresh database, and checks that the
/// active version's material is present.
pub async fn sync_versions(db: &DatabaseConnection, keyring: &Keyring) -> anyhow::Result<()> {
    let rows = key_version::Entity::find().all(db).await?;
    match rows.iter().find(|r| r.state == KeyState::Active) {
        Some(active) => {
            if keyring.get(active.version).is_err() {
                anyhow::bail!(
                    "the active master key version {} is missing from the keyring (COFFER_MASTER_KEYS / COFFER_MASTER_KEYS_FILE)",
                    active.version
                );
            }
        }
        None => {
            // Processes started together on a fresh database (an API and a worker) all get
            // here; the first insert wins and the others change nothing.
            let version = keyring.newest_version();
            key_version::Entity::insert(key_version::ActiveModel {
                version: Set(version),
                state: Set(KeyState::Active),
                created_at: Set(Utc::now()),
                retired_at: Set(None),
            })
            .on_conflict_do_nothing()
            .exec(db)
            .await?;
        }
    }
    Ok(())
}

/// The version new wraps use.
pub async fn active_version(db: &impl ConnectionTrait) -> Result<i32, ServiceError> {
    key_version::Entity::find()
        .filter(key_version::Column::State.eq(KeyState::Active))
        .one(db)
        .await?
        .map(|r| r.version)
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("no active master key version")))
}

#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub version: i32,
    pub state: KeyState,
    pub created_at: DateTime<Utc>,
    pub wrapped_keys: u64,
}

pub async fn versions(core: &Core) -> ServiceResult<Vec<VersionInfo>> {
    let counts = usage(&core.db).await?;
    Ok(key_version::Entity::find()
        .order_by_asc(key_version::Column::Version)
        .all(&core.db)
        .await?
        .into_iter()
        .map(|r| VersionInfo {
            wrapped_keys: counts.get(&r.version).copied().unwrap_or(0),
            version: r.version,
            state: r.state,
            created_at: r.created_at,
        })
        .collect())
}

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

/// Keys not yet wrapped under `version`.
fn not_under(version: i32) -> Condition {
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

/// Starts a rotation to a new version: Coffer generates it for its own keyring file; an
/// operator-supplied keyring must already hold it (see `coffer keys generate`). One rotation
/// at a time, enforced by the database (a unique index on the running rotation) inside the
/// transaction that starts it; a generated key is written to the keyring only once that
/// transaction holds the claim.
pub async fn rotate(core: &Core, actor: Actor, meta: &RequestMeta) -> ServiceResult<RotationView> {
    let from = active_version(&core.db).await?;
    let txn = crate::db::begin_write(&core.db).await?;
    if let Some(running) = key_rotation::Entity::find()
        .filter(key_rotation::Column::State.eq(RotationState::Running))
        .one(&txn)
        .await?
    {
        return Err(running_conflict(&running));
    }
    let (to, generated) = if core.keys.is_managed() {
        (core.keys.next_version(), Some(SecretKey::generate()))
    } else {
        // The operator may have added the version to the keyring file since start-up.
        core.keys.reload();
        let newest = core.keys.ring().versions().max().unwrap_or(from);
        if newest <= from {
            return Err(ServiceError::Conflict(format!(
                "the keyring has no version newer than {from}: add one to COFFER_MASTER_KEYS or COFFER_MASTER_KEYS_FILE on every process (`coffer keys generate` prints one), restart, then rotate"
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
                ServiceError::Conflict("another rotation has just started".into())
            }
            _ => err.into(),
        });
    }
    if let Some(key) = generated {
        core.keys.add_version(to, key).map_err(|e| {
            ServiceError::Internal(anyhow::anyhow!("adding a master key version: {e}"))
        })?;
    }
    let key = core
        .keys
        .get(to)
        .map_err(|e| core.key_fault(e.to_string()))?;
    if !matches_database(&txn, to, &key).await? {
        return Err(core.key_fault(mismatch(to)));
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
    Event::new("key.rotation_started", actor)
        .target("key_rotation", rotation.id)
        .details(serde_json::json!({ "from": from, "to": to, "total": total }))
        .from(meta)
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    if let Err(err) = core.queue.enqueue(RewrapKeys::new(rotation.id)).await {
        tracing::warn!(error = %format!("{err:#}"), "could not enqueue the rewrap; the sweep will retry");
    }
    Ok(rotation.into())
}

fn running_conflict(running: &key_rotation::Model) -> ServiceError {
    ServiceError::Conflict(format!(
        "a rotation to version {} is running ({} of {} keys done)",
        running.to_version, running.done, running.total
    ))
}

/// The latest rotation, if there was one.
pub async fn progress(core: &Core) -> ServiceResult<Option<RotationView>> {
    Ok(key_rotation::Entity::find()
        .order_by_desc(key_rotation::Column::StartedAt)
        .one(&core.db)
        .await?
        .map(RotationView::from))
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
    let Some(rotation) = key_rotation::Entity::find_by_id(rotation_id)
        .one(&core.db)
        .await?
    else {
        return Ok(Batch::Finished);
    };
    if rotation.state == RotationState::Finished {
        return Ok(Batch::Finished);
    }
    let to = rotation.to_version;
    let mut query = file::Entity::find().filter(not_under(to));
    if let Some(after) = after {
        query = query.filter(file::Column::Id.gt(after));
    }
    let rows = query
        .order_by_asc(file::Column::Id)
        .limit(batch)
        .all(&core.db)
        .await?;
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
        Event::new("key.rewrapped", Actor::System)
            .target("key_rotation", rotation_id)
            .details(serde_json::json!({ "to": to, "count": updated }))
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    if (rows.len() as u64) == batch {
        return Ok(Batch::More(rows.last().map(|r| r.id)));
    }
    if finish_if_done(core, &rotation).await? {
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
    let txn = crate::db::begin_write(&core.db).await?;
    if file::Entity::find()
        .filter(not_under(rotation.to_version))
        .count(&txn)
        .await?
        > 0
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
        Event::new("key.retired", Actor::System)
            .target("key_version", version.version)
            .details(serde_json::json!({ "rotation": rotation.id }))
            .record(&txn, &core.audit)
            .await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Runs a rotation's batches until it is finished.
pub async fn run_rotation(core: &Core, rotation_id: Uuid) -> Result<(), JobError> {
    let mut after = None;
    while let Batch::More(next) = rewrap_batch(core, rotation_id, after).await? {
        after = next;
    }
    Ok(())
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
