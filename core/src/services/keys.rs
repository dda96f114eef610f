//! Master-key checks.

use std::collections::BTreeSet;

use entity::file;
use sea_orm::{DatabaseConnection, EntityTrait as _, QuerySelect as _};

use crate::crypto::Keyring;

/// Every KEK version some wrapped key still uses must be in the keyring: a missing one is a
/// start-up error, never a surprise at download time.
pub async fn check_keyring_covers_database(
    db: &DatabaseConnection,
    keyring: &Keyring,
) -> anyhow::Result<()> {
    let rows: Vec<(Option<i32>, Option<i32>)> = file::Entity::find()
        .select_only()
        .column(file::Column::DekKekVersion)
        .column(file::Column::QuarantineKekVersion)
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let needed: BTreeSet<i32> = rows
        .into_iter()
        .flat_map(|(a, b)| [a, b])
        .flatten()
        .collect();
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
