//! Master keys an HSM or KMS holds (`COFFER_KMS`): the database keeps every master and audit
//! key wrapped by it (`kms_wrapped_keys`); a process unwraps them at start-up, and again when
//! another process has added a version.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseConnection, EntityTrait as _,
    QueryFilter as _, QueryOrder as _,
};

use entity::{key_version, kms_wrapped_key};

use crate::audit::{Action, Event};
use crate::crypto::kms::{KeyKind, KeyName, Kms, KmsError, KmsSpec, Wrapped};
use crate::crypto::{KeyStore, Keyring, SecretKey};
use crate::principal::Operator;
use crate::{Core, ServiceError, ServiceResult};

/// Connects to the HSM or KMS and unwraps the keys the database holds; on a new database,
/// generates the first master and audit keys and stores them wrapped. Any failure is one line
/// naming the HSM or KMS: a process that cannot reach its keys does not start.
pub async fn open(
    db: &DatabaseConnection,
    spec: &KmsSpec,
    aws: &[(String, String)],
) -> anyhow::Result<KeyStore> {
    let kms = Arc::new(
        Kms::connect(spec, aws)
            .await
            .map_err(|e| anyhow::anyhow!("COFFER_KMS ({spec}): {e}"))?,
    );
    let mut rows = rows(db).await?;
    if !rows.iter().any(|r| r.kind == KeyKind::Master.as_str()) {
        if key_version::Entity::find().one(db).await?.is_some() {
            anyhow::bail!(
                "COFFER_KMS ({spec}): this database's master keys are in a keyring, not wrapped by the HSM or KMS: move them with `coffer keys migrate --to '<COFFER_KMS>'`, run with the keyring (README: Keys in an HSM or KMS)"
            );
        }
        store(db, &kms, KeyKind::Master, 1, &SecretKey::generate())
            .await
            .with_context(|| format!("COFFER_KMS ({spec}): wrapping the first master key"))?;
        rows = self::rows(db).await?;
    }
    if !rows.iter().any(|r| r.kind == KeyKind::Audit.as_str()) {
        store(db, &kms, KeyKind::Audit, 1, &SecretKey::generate())
            .await
            .with_context(|| format!("COFFER_KMS ({spec}): wrapping the first audit key"))?;
        rows = self::rows(db).await?;
    }
    let ring = unwrap_all(&kms, &rows)
        .await
        .map_err(|e| anyhow::anyhow!("COFFER_KMS ({spec}): {e}"))?;
    let current = kms.wrapping_key();
    let older = rows.iter().filter(|r| r.wrapped_by != current).count();
    if older > 0 {
        tracing::warn!(
            keys = older,
            configured = %current,
            "some keys are wrapped by another HSM or KMS key than the configured one: `coffer keys kms-rewrap` rewraps them"
        );
    }
    Ok(KeyStore::held_by(ring, kms))
}

/// Unwraps the keys again when another process has added a version this one lacks. A failure
/// is a key fault (503 and `/readyz`): the keys already held keep working.
pub(crate) async fn refresh(core: &Core, kms: &Kms) -> ServiceResult<()> {
    let rows = rows(&core.db).await?;
    let ring = unwrap_all(kms, &rows)
        .await
        .map_err(|e| core.kms_failure(kms, e))?;
    core.keys.replace(ring);
    Ok(())
}

/// A master-key version generated for a rotation, already wrapped by the HSM or KMS (before
/// the rotation's transaction, so that no write waits for it).
pub(crate) struct NewVersion {
    pub version: i32,
    pub key: SecretKey,
    wrapped: Wrapped,
}

pub(crate) async fn new_version(core: &Core, kms: &Kms) -> ServiceResult<NewVersion> {
    let stored = kms_wrapped_key::Entity::find()
        .filter(kms_wrapped_key::Column::Kind.eq(KeyKind::Master.as_str()))
        .order_by_desc(kms_wrapped_key::Column::Version)
        .one(&core.db)
        .await?
        .map_or(0, |r| r.version);
    let held = core.keys.ring().versions().next_back().unwrap_or(0);
    let version = stored.max(held) + 1;
    let key = SecretKey::generate();
    let name = KeyName {
        kind: KeyKind::Master,
        version,
    };
    let wrapped = kms
        .wrap(name, &key)
        .await
        .map_err(|e| core.kms_failure(kms, e))?;
    Ok(NewVersion {
        version,
        key,
        wrapped,
    })
}

impl NewVersion {
    /// Records the wrapped key (in the rotation's transaction: a version number taken since
    /// fails it) and, once that commits, the caller [`NewVersion::hold`]s it.
    pub(crate) async fn record(&self, db: &impl ConnectionTrait) -> Result<(), ServiceError> {
        kms_wrapped_key::Entity::insert(row(KeyKind::Master, self.version, &self.wrapped))
            .exec(db)
            .await?;
        Ok(())
    }

    pub(crate) fn hold(self, keys: &KeyStore) {
        keys.replace(keys.ring().with_version(self.version, self.key));
    }
}

async fn rows(db: &impl ConnectionTrait) -> Result<Vec<kms_wrapped_key::Model>, sea_orm::DbErr> {
    kms_wrapped_key::Entity::find()
        .order_by_asc(kms_wrapped_key::Column::Kind)
        .order_by_asc(kms_wrapped_key::Column::Version)
        .all(db)
        .await
}

/// What a stored row holds, and its wrap; `None` for a kind this version does not know.
pub(crate) fn stored(row: &kms_wrapped_key::Model) -> Option<(KeyName, Wrapped)> {
    let name = KeyName {
        kind: KeyKind::parse(&row.kind)?,
        version: row.version,
    };
    let wrapped = Wrapped {
        by: row.wrapped_by.clone(),
        bytes: row.wrapped.clone(),
    };
    Some((name, wrapped))
}

pub(crate) fn row(kind: KeyKind, version: i32, wrapped: &Wrapped) -> kms_wrapped_key::ActiveModel {
    kms_wrapped_key::ActiveModel {
        kind: Set(kind.as_str().to_owned()),
        version: Set(version),
        wrapped_by: Set(wrapped.by.clone()),
        wrapped: Set(wrapped.bytes.clone()),
        wrapped_at: Set(Utc::now()),
    }
}

/// Wraps `key` and stores it, unless a process starting at the same moment stored its own
/// first: the first insert wins and everybody unwraps that one.
async fn store(
    db: &DatabaseConnection,
    kms: &Kms,
    kind: KeyKind,
    version: i32,
    key: &SecretKey,
) -> anyhow::Result<()> {
    let wrapped = kms.wrap(KeyName { kind, version }, key).await?;
    kms_wrapped_key::Entity::insert(row(kind, version, &wrapped))
        .on_conflict_do_nothing()
        .exec(db)
        .await?;
    Ok(())
}

/// Every stored key, unwrapped, as a keyring.
async fn unwrap_all(kms: &Kms, rows: &[kms_wrapped_key::Model]) -> Result<Keyring, KmsError> {
    let mut master = BTreeMap::new();
    let mut audit = Vec::new();
    for (name, wrapped) in rows.iter().filter_map(stored) {
        let key = kms.unwrap(name, &wrapped).await?;
        match name.kind {
            KeyKind::Master => {
                master.insert(name.version, key);
            }
            KeyKind::Audit => audit.push((name.version, key)),
        }
    }
    let mut ring = Keyring::from_keys(master);
    for (version, secret) in audit {
        ring = ring.with_audit_key(version, &secret);
    }
    Ok(ring)
}

/// Makes the next audit-key version and stores it wrapped by the HSM or KMS: what adding an
/// `audit:` line to a keyring is without one. Processes seal new events with it once
/// restarted; every older version stays, to verify the events it sealed. Audited as
/// `key.audit_key_added`.
pub async fn add_audit_key(core: &Core, by: Operator<'_>) -> anyhow::Result<i32> {
    by.require_admin().map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(kms) = core.keys.kms() else {
        anyhow::bail!(
            "the master keys are in a keyring, not wrapped by an HSM or KMS (COFFER_KMS is unset)"
        );
    };
    let version = kms_wrapped_key::Entity::find()
        .filter(kms_wrapped_key::Column::Kind.eq(KeyKind::Audit.as_str()))
        .order_by_desc(kms_wrapped_key::Column::Version)
        .one(&core.db)
        .await?
        .map_or(1, |r| r.version + 1);
    let name = KeyName {
        kind: KeyKind::Audit,
        version,
    };
    let wrapped = kms
        .wrap(name, &SecretKey::generate())
        .await
        .map_err(|e| anyhow::anyhow!("{kms}: {e}"))?;
    let txn = crate::db::begin_write(&core.db).await?;
    kms_wrapped_key::Entity::insert(row(KeyKind::Audit, version, &wrapped))
        .exec(&txn)
        .await
        .with_context(|| {
            format!("storing {name} (if another one was added at the same moment, run this again)")
        })?;
    Event::new(Action::KeyAuditKeyAdded, by.actor())
        .target("kms_wrapped_key", format!("audit:{version}"))
        .details(serde_json::json!({ "version": version, "wrapped_by": wrapped.by }))
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    Ok(version)
}

/// What [`rewrap`] did: keys rewrapped of those it looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    pub rewrapped: usize,
    pub total: usize,
}

/// Rewraps the master and audit keys under the key `COFFER_KMS` names now: those another HSM
/// or KMS key wrapped (the one the installation used before), or with `all` every one (after
/// the KMS rotated the material behind the same key). Live: each key is unwrapped under the
/// key its row names, compared with the key this process holds, wrapped again, and its row
/// replaced only if it is still as read (two processes at once rewrap each key once). No data
/// key and no file is touched. Each key rewrapped is audited as `key.kms_rewrapped`.
pub async fn rewrap(
    core: &Core,
    by: Operator<'_>,
    all: bool,
    mut progress: impl FnMut(Rewrapped),
) -> anyhow::Result<Rewrapped> {
    by.require_admin().map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(kms) = core.keys.kms() else {
        anyhow::bail!(
            "the master keys are in a keyring, not wrapped by an HSM or KMS (COFFER_KMS is unset)"
        );
    };
    let current = kms.wrapping_key();
    let todo: Vec<kms_wrapped_key::Model> = rows(&core.db)
        .await?
        .into_iter()
        .filter(|r| all || r.wrapped_by != current)
        .collect();
    let mut done = Rewrapped {
        rewrapped: 0,
        total: todo.len(),
    };
    progress(done);
    for row in todo {
        let (name, wrapped) = stored(&row)
            .ok_or_else(|| anyhow::anyhow!("a wrapped key of unknown kind `{}`", row.kind))?;
        let key = kms
            .unwrap(name, &wrapped)
            .await
            .map_err(|e| anyhow::anyhow!("{kms}: {e}"))?;
        if !holds(&core.keys.ring(), name, &key) {
            anyhow::bail!(
                "{name} unwraps to another key than the one this process holds: restart it and try again"
            );
        }
        let wrapped = kms
            .wrap(name, &key)
            .await
            .map_err(|e| anyhow::anyhow!("{kms}: {e}"))?;
        let txn = crate::db::begin_write(&core.db).await?;
        let replaced = kms_wrapped_key::Entity::update_many()
            .col_expr(
                kms_wrapped_key::Column::WrappedBy,
                Expr::value(wrapped.by.clone()),
            )
            .col_expr(
                kms_wrapped_key::Column::Wrapped,
                Expr::value(wrapped.bytes.clone()),
            )
            .col_expr(kms_wrapped_key::Column::WrappedAt, Expr::value(Utc::now()))
            .filter(kms_wrapped_key::Column::Kind.eq(row.kind.clone()))
            .filter(kms_wrapped_key::Column::Version.eq(row.version))
            .filter(kms_wrapped_key::Column::Wrapped.eq(row.wrapped.clone()))
            .exec(&txn)
            .await?
            .rows_affected;
        if replaced == 1 {
            Event::new(Action::KeyKmsRewrapped, by.actor())
                .target("kms_wrapped_key", format!("{}:{}", row.kind, row.version))
                .details(serde_json::json!({
                    "kind": row.kind,
                    "version": row.version,
                    "from": row.wrapped_by,
                    "to": wrapped.by,
                }))
                .record(&txn, &core.audit)
                .await?;
            done.rewrapped += 1;
        }
        txn.commit().await?;
        progress(done);
    }
    Ok(done)
}

/// Whether `key` is the one `ring` holds under `name`.
fn holds(ring: &Keyring, name: KeyName, key: &SecretKey) -> bool {
    match name.kind {
        KeyKind::Master => ring.get(name.version).is_ok_and(|held| held.same_as(key)),
        KeyKind::Audit => ring.audit_key(name.version).is_some_and(|held| {
            held.public_key() == crate::crypto::AuditKey::derive(name.version, key).public_key()
        }),
    }
}
