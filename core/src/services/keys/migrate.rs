//! Moving an installation's master and audit keys between a keyring and an HSM or KMS
//! (`coffer keys migrate --to …`). The keys themselves do not change — only where they are kept
//! — so every file stays downloadable throughout, by processes given either setting.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sea_orm::EntityTrait as _;

use entity::kms_wrapped_key;

use crate::Core;
use crate::audit::{Action, Event};
use crate::crypto::kms::{KeyKind, KeyName, Kms, KmsSpec};
use crate::crypto::{Keyring, SecretKey};
use crate::principal::Operator;

/// Where `coffer keys migrate` moves the keys.
#[derive(Debug, Clone)]
pub enum Destination {
    Kms(KmsSpec),
    /// A new keyring file (never over an existing one).
    File(PathBuf),
}

impl Destination {
    /// `pkcs11:…`, `aws-kms:…` or `file:/path`; `pin` is `COFFER_KMS_PIN(_FILE)`.
    pub fn parse(text: &str, pin: Option<secrecy::SecretString>) -> Result<Self, String> {
        match text.strip_prefix("file:") {
            Some(path) if !path.trim().is_empty() => Ok(Self::File(PathBuf::from(path.trim()))),
            Some(_) => Err("file: without a path".into()),
            None => KmsSpec::parse(text, pin).map(Self::Kms),
        }
    }
}

/// What a migration did: keys stored now, and keys found there already (a resumed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Migrated {
    pub stored: usize,
    pub already: usize,
}

/// Every key this process holds, master keys first.
fn keys(ring: &Keyring) -> Vec<(KeyName, SecretKey)> {
    let master = ring.versions().filter_map(|version| {
        let key = ring.get(version).ok()?.clone();
        Some((
            KeyName {
                kind: KeyKind::Master,
                version,
            },
            key,
        ))
    });
    let audit = ring.audit_keys().map(|key| {
        (
            KeyName {
                kind: KeyKind::Audit,
                version: key.version(),
            },
            key.secret().clone(),
        )
    });
    master.chain(audit).collect()
}

/// Wraps every master and audit key of this process's keyring by the HSM or KMS of `spec` and
/// stores them, where processes given `COFFER_KMS` find them. Resumable: a key stored already
/// must unwrap to the same key and is left as it is (another key under its version stops the
/// migration, naming it). Audited as `key.migrated`.
pub async fn to_kms(
    core: &Core,
    by: Operator<'_>,
    spec: &KmsSpec,
    mut progress: impl FnMut(&KeyName, bool),
) -> anyhow::Result<Migrated> {
    by.require_admin().map_err(|e| anyhow::anyhow!("{e}"))?;
    if core.keys.kms().is_some() {
        anyhow::bail!(
            "the keys are wrapped by an HSM or KMS already (COFFER_KMS): to move them to another HSM or KMS key, point COFFER_KMS at it and run `coffer keys kms-rewrap`; to a keyring, `--to file:/path`"
        );
    }
    let kms = Kms::connect(spec, &core.config.aws)
        .await
        .map_err(|e| anyhow::anyhow!("{spec}: {e}"))?;
    let mut done = Migrated::default();
    let mut moved = Vec::new();
    for (name, key) in keys(&core.keys.ring()) {
        let stored =
            kms_wrapped_key::Entity::find_by_id((name.kind.as_str().to_owned(), name.version))
                .one(&core.db)
                .await?;
        if let Some((_, wrapped)) = stored.as_ref().and_then(super::kms::stored) {
            let there = kms
                .unwrap(name, &wrapped)
                .await
                .map_err(|e| anyhow::anyhow!("{spec}: {e}"))?;
            if !there.same_as(&key) {
                anyhow::bail!(
                    "the database holds another {name} wrapped by the HSM or KMS than this keyring's: it belongs to another installation, or the keyring is not this database's"
                );
            }
            done.already += 1;
            progress(&name, false);
            continue;
        }
        let wrapped = kms
            .wrap(name, &key)
            .await
            .map_err(|e| anyhow::anyhow!("{spec}: {e}"))?;
        kms_wrapped_key::Entity::insert(super::kms::row(name.kind, name.version, &wrapped))
            .exec(&core.db)
            .await?;
        moved.push(name.to_string());
        done.stored += 1;
        progress(&name, true);
    }
    if !moved.is_empty() {
        let txn = crate::db::begin_write(&core.db).await?;
        Event::new(Action::KeyMigrated, by.actor())
            .details(serde_json::json!({
                "to": kms.wrapping_key(),
                "keys": moved,
            }))
            .record(&txn, &core.audit)
            .await?;
        txn.commit().await?;
    }
    Ok(done)
}

/// Writes every master and audit key this process holds (unwrapped by its HSM or KMS) to a new
/// keyring file, readable by its owner only, for processes given `COFFER_MASTER_KEYS_FILE`.
/// Never over an existing file. Audited as `key.migrated`.
pub async fn to_file(core: &Core, by: Operator<'_>, path: &Path) -> anyhow::Result<Migrated> {
    by.require_admin().map_err(|e| anyhow::anyhow!("{e}"))?;
    if core.keys.kms().is_none() {
        anyhow::bail!("the keys are in a keyring already (COFFER_KMS is unset)");
    }
    let keys = keys(&core.keys.ring());
    let mut text = String::from(
        "# Coffer master keys (version:base64) and audit keys (audit:version:base64), moved out of an HSM or KMS. Losing this file makes every stored file unreadable.\n",
    );
    for (name, key) in &keys {
        match name.kind {
            KeyKind::Master => text.push_str(&format!("{}:{}\n", name.version, key.to_base64())),
            KeyKind::Audit => {
                text.push_str(&format!("audit:{}:{}\n", name.version, key.to_base64()));
            }
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(path)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .map_err(|e| anyhow::anyhow!("writing the keyring {}: {e}", path.display()));
    zeroize::Zeroize::zeroize(&mut text);
    written?;
    let txn = crate::db::begin_write(&core.db).await?;
    Event::new(Action::KeyMigrated, by.actor())
        .details(serde_json::json!({
            "to": "file",
            "keys": keys.iter().map(|(name, _)| name.to_string()).collect::<Vec<_>>(),
        }))
        .record(&txn, &core.audit)
        .await?;
    txn.commit().await?;
    Ok(Migrated {
        stored: keys.len(),
        already: 0,
    })
}
