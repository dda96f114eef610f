//! Master keys: which version is active, wrapping and opening file keys under a version this
//! process has checked against the database, and the keyring checks at start-up. Rotation is
//! `services::rotation` and the rewrap job `crate::jobs::rewrap`.

pub mod kms;
pub mod migrate;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseConnection, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use uuid::Uuid;

use entity::{file, key_check, key_version};

use crate::crypto::{KeyStore, Keyring, SecretKey, WrappedKey};
use crate::principal::Operator;
use crate::types::KeyState;
use crate::{Core, KeyFailure, ServiceError, ServiceResult, crypto};

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

    /// An HSM or KMS call that failed, as the 503 the caller returns: one that went unanswered
    /// is an outage (`/readyz` shows `kms` unavailable until it answers again); one it refused
    /// is the operator's to fix, a key fault.
    pub fn kms_failure(
        &self,
        kms: &crypto::kms::Kms,
        error: crypto::kms::KmsError,
    ) -> ServiceError {
        if error.is_unreachable() {
            tracing::warn!(kms = %kms, error = %error, "the HSM or KMS did not answer: new key operations wait until it does; the keys held keep working");
            ServiceError::Unavailable(anyhow::anyhow!("{kms}: {error}"))
        } else {
            self.key_fault(format!("{kms}: {error}"))
        }
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
    keys: &KeyStore,
) -> anyhow::Result<()> {
    let needed: BTreeSet<i32> = usage(db).await?.into_keys().collect();
    let keyring = keys.ring();
    let missing: Vec<String> = needed
        .iter()
        .filter(|v| keyring.get(**v).is_err())
        .map(i32::to_string)
        .collect();
    if !missing.is_empty() {
        let remedy = if keys.kms().is_some() {
            "the HSM or KMS wraps none of them: run `coffer keys migrate --to '<COFFER_KMS>'` again with the keyring that holds them"
        } else {
            "restore them to COFFER_MASTER_KEYS / COFFER_MASTER_KEYS_FILE"
        };
        anyhow::bail!(
            "master key version(s) {} are needed by stored files but missing from the keyring; {remedy}",
            missing.join(", ")
        );
    }
    Ok(())
}

pub(crate) fn mismatch(keys: &KeyStore, version: i32) -> String {
    let remedy = if keys.kms().is_some() {
        "the HSM or KMS unwrapped another key under that version than the one recorded: the database's wrapped keys (kms_wrapped_keys) are not this database's own — restore them from this installation's backup"
    } else {
        "give every process the same keyring, copied from COFFER_MASTER_KEYS / COFFER_MASTER_KEYS_FILE of a process that works, never newly generated keys"
    };
    format!(
        "master key version {version} in this process's keyring is not the key this database was set up with (its check value differs): {remedy}"
    )
}

/// Whether `key` is the database's version `version`: the recorded check value decides; for a
/// version the database has no check value of yet (its first use, or a database from before
/// check values) a key wrapped under it must open, and then its check value is recorded. Two
/// processes recording at once: the first insert wins, the other compares against it.
pub(crate) async fn matches_database(
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
            anyhow::bail!(mismatch(keys, version));
        }
        keys.mark_verified(version);
    }
    Ok(())
}

/// Makes sure `version` is usable and the database's before a key is wrapped or trusted under
/// it: a version this process has not checked yet (added to its keyring file since it
/// started) is checked now. A failure is a key fault: the operator's to fix, never the file's.
pub async fn verified_key(core: &Core, version: i32) -> ServiceResult<SecretKey> {
    let key = match (core.keys.get(version), core.keys.kms()) {
        // Another process added it: the HSM or KMS unwraps it for this one too.
        (Err(crypto::CryptoError::MissingVersion(_)), Some(hsm)) => {
            kms::refresh(core, hsm).await?;
            core.keys.get(version)
        }
        (found, _) => found,
    }
    .map_err(|e| core.key_fault(e.to_string()))?;
    if !core.keys.is_verified(version) {
        if !matches_database(&core.db, version, &key).await? {
            return Err(core.key_fault(mismatch(&core.keys, version)));
        }
        core.keys.mark_verified(version);
    }
    Ok(key)
}

/// How many wrapped keys (data keys and quarantine keys) each version holds.
pub(crate) async fn usage(db: &impl ConnectionTrait) -> Result<BTreeMap<i32, u64>, sea_orm::DbErr> {
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
    // Second factors' secrets are wrapped the same way.
    let rows: Vec<(i32, i64)> = entity::mfa_totp::Entity::find()
        .select_only()
        .column(entity::mfa_totp::Column::KekVersion)
        .column_as(entity::mfa_totp::Column::UserId.count(), "n")
        .group_by(entity::mfa_totp::Column::KekVersion)
        .into_tuple()
        .all(db)
        .await?;
    for (version, n) in rows {
        *counts.entry(version).or_insert(0) += u64::try_from(n).unwrap_or(0);
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

pub async fn versions(core: &Core, by: Operator<'_>) -> ServiceResult<Vec<VersionInfo>> {
    by.require_admin()?;
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
