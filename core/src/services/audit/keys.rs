//! The audit keys a process holds must be the database's: checked at start-up, like the
//! master keys, by a check value recorded per version (here the Ed25519 public key).

use chrono::Utc;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait as _};

use entity::audit_key;

use crate::crypto::KeyStore;

/// At start-up: the keyring must hold an audit key; each of its audit-key versions must have
/// the public key the database recorded for that version (recorded now if it is new); and
/// every version the database has recorded must be in the keyring, since audit keys are never
/// retired while events they cover exist.
pub async fn check_audit_keys(db: &DatabaseConnection, keys: &KeyStore) -> anyhow::Result<()> {
    let ring = keys.ring();
    if ring.newest_audit_key().is_none() {
        anyhow::bail!(
            "the keyring has no audit key: add a line `audit:1:<32 random bytes, base64>` to COFFER_MASTER_KEYS / COFFER_MASTER_KEYS_FILE on every process (`coffer keys generate --audit` prints one)"
        );
    }
    for key in ring.audit_keys() {
        let public_key = key.public_key_hex();
        audit_key::Entity::insert(audit_key::ActiveModel {
            version: Set(key.version()),
            public_key: Set(public_key.clone()),
            recorded_at: Set(Utc::now()),
        })
        .on_conflict_do_nothing()
        .exec(db)
        .await?;
    }
    let recorded = audit_key::Entity::find().all(db).await?;
    for row in &recorded {
        match ring.audit_key(row.version) {
            None => anyhow::bail!(
                "audit key version {} is needed to verify stored audit events but missing from the keyring; restore its `audit:{}:…` line to COFFER_MASTER_KEYS / COFFER_MASTER_KEYS_FILE",
                row.version,
                row.version
            ),
            Some(key) if key.public_key_hex() != row.public_key => anyhow::bail!(
                "audit key version {} in this process's keyring is not the one this database was set up with (its public key differs): give every process the same keyring, never newly generated keys",
                row.version
            ),
            Some(_) => {}
        }
    }
    Ok(())
}
