//! The keyring as a process holds it: reloaded from its file when another process added a
//! version, and (for the keyring Coffer generated in its data dir, or keys an HSM or KMS holds)
//! extended by rotation.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use super::kms::Kms;
use super::{CryptoError, Keyring, KeyringError, KeyringSource, SecretKey, WrappedKey};

#[derive(Debug)]
pub struct KeyStore {
    ring: RwLock<Arc<Keyring>>,
    pub source: KeyringSource,
    /// The keyring file Coffer generated and may add versions to (embedded default only).
    managed: Option<PathBuf>,
    /// The HSM or KMS that wraps the keys, which the database keeps wrapped (`COFFER_KMS`).
    kms: Option<Arc<Kms>>,
    /// Versions whose material matched the database's check value.
    verified: Mutex<BTreeSet<i32>>,
    /// The last key problem met (a missing version, a key that differs from the database's),
    /// until a key operation succeeds again: shown by `/readyz`.
    fault: Mutex<Option<String>>,
}

impl KeyStore {
    pub fn new(ring: Keyring, source: KeyringSource, managed: Option<PathBuf>) -> Self {
        Self {
            ring: RwLock::new(Arc::new(ring)),
            source,
            managed,
            kms: None,
            verified: Mutex::default(),
            fault: Mutex::default(),
        }
    }

    /// The keys `kms` holds wrapped, unwrapped into `ring`.
    pub fn held_by(ring: Keyring, kms: Arc<Kms>) -> Self {
        Self {
            source: KeyringSource::Kms(kms.to_string()),
            kms: Some(kms),
            ..Self::new(ring, KeyringSource::Environment, None)
        }
    }

    /// The HSM or KMS holding the keys, if they are not in a keyring file.
    pub fn kms(&self) -> Option<&Arc<Kms>> {
        self.kms.as_ref()
    }

    /// Replaces the keyring (with the versions an HSM or KMS holds, unwrapped again).
    pub fn replace(&self, ring: Keyring) {
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
    }

    pub fn is_verified(&self, version: i32) -> bool {
        lock(&self.verified).contains(&version)
    }

    pub fn mark_verified(&self, version: i32) {
        lock(&self.verified).insert(version);
    }

    /// Records an operator-side key problem (logged by the caller).
    pub fn report_fault(&self, what: String) {
        *lock(&self.fault) = Some(what);
    }

    pub fn clear_fault(&self) {
        let mut fault = lock(&self.fault);
        if fault.is_some() {
            *fault = None;
        }
    }

    pub fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }

    pub fn ring(&self) -> Arc<Keyring> {
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether Coffer generates new versions itself (else the operator supplies them).
    pub fn is_managed(&self) -> bool {
        self.managed.is_some()
    }

    /// Re-reads a file-based keyring (another process, or the operator, may have added a
    /// version).
    pub fn reload(&self) -> bool {
        let path = match &self.source {
            KeyringSource::File(path) | KeyringSource::Generated(path) => path,
            KeyringSource::Environment | KeyringSource::Kms(_) => return false,
        };
        match Keyring::read_file(path, "keyring file") {
            Ok(ring) => {
                *self
                    .ring
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "reloading the keyring failed");
                false
            }
        }
    }

    /// The material of `version`, reloading the file once if it is not known yet.
    pub fn get(&self, version: i32) -> Result<SecretKey, CryptoError> {
        match self.ring().get(version) {
            Ok(key) => Ok(key.clone()),
            Err(CryptoError::MissingVersion(_)) if self.reload() => {
                self.ring().get(version).cloned()
            }
            Err(err) => Err(err),
        }
    }

    pub fn wrap(
        &self,
        version: i32,
        file_id: Uuid,
        key: &SecretKey,
    ) -> Result<WrappedKey, CryptoError> {
        let kek = self.get(version)?;
        Ok(super::wrap_key(&kek, version, file_id, key))
    }

    pub fn unwrap(&self, file_id: Uuid, wrapped: &WrappedKey) -> Result<SecretKey, CryptoError> {
        let kek = self.get(wrapped.kek_version)?;
        super::unwrap_key(&kek, file_id, wrapped)
    }

    /// The version a new generated key would get: one past the newest in the managed file.
    pub fn next_version(&self) -> i32 {
        self.reload();
        self.ring().versions().max().unwrap_or(0) + 1
    }

    /// Adds `key` as `version` to the managed keyring file. The file is edited under an
    /// exclusive lock (`keyring.lock` beside it), re-read first, and replaced atomically (written
    /// aside, then renamed over the old one): two rotations can never write two keys under one
    /// version number.
    pub fn add_version(&self, version: i32, key: SecretKey) -> Result<(), KeyringError> {
        let added = self.append(|current| {
            if current.get(version).is_ok() {
                return Err(KeyringError::Malformed {
                    var: "keyring file",
                    detail: format!("version {version} is there already"),
                });
            }
            Ok(Some(format!("{version}:{}", key.to_base64())))
        })?;
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(added);
        Ok(())
    }

    /// Gives a managed keyring file made before audit keys existed its first audit key (under
    /// the same lock as [`KeyStore::add_version`], so processes starting together agree on
    /// one). Returns whether one was added.
    pub fn ensure_audit_key(&self) -> Result<bool, KeyringError> {
        if self.managed.is_none() || self.ring().newest_audit_key().is_some() {
            return Ok(false);
        }
        let mut added = false;
        let ring = self.append(|current| {
            if current.newest_audit_key().is_some() {
                return Ok(None);
            }
            added = true;
            Ok(Some(format!(
                "audit:1:{}",
                SecretKey::generate().to_base64()
            )))
        })?;
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
        Ok(added)
    }

    /// Appends the line `entry` decides on, given the file as it is now, to the managed keyring
    /// file under its lock; returns the keyring the file then holds.
    fn append(
        &self,
        entry: impl FnOnce(&Keyring) -> Result<Option<String>, KeyringError>,
    ) -> Result<Keyring, KeyringError> {
        let Some(path) = &self.managed else {
            return Err(KeyringError::Malformed {
                var: "COFFER_MASTER_KEYS",
                detail: "keys supplied by the operator are not generated by Coffer".into(),
            });
        };
        let io = |source| KeyringError::Io {
            path: path.clone(),
            source,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("lock"))
            .map_err(io)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(e.into()))?;
        let mut text = std::fs::read_to_string(path).map_err(io)?;
        let result = Keyring::parse(&text, "keyring file").and_then(|current| {
            let Some(mut line) = entry(&current)? else {
                return Ok(current);
            };
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&line);
            text.push('\n');
            zeroize::Zeroize::zeroize(&mut line);
            crate::private_file::replace(path, text.as_bytes()).map_err(io)?;
            Keyring::parse(&text, "keyring file")
        });
        zeroize::Zeroize::zeroize(&mut text);
        drop(lock);
        result
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_managed_keyring_grows_and_still_opens_old_wraps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let (ring, _) = Keyring::load_or_generate(&path).expect("generate");
        let store = KeyStore::new(
            ring,
            KeyringSource::Generated(path.clone()),
            Some(path.clone()),
        );
        let file = Uuid::new_v4();
        let dek = SecretKey::generate();
        let old = store.wrap(1, file, &dek).expect("wrap v1");
        assert_eq!(store.next_version(), 2);
        store.add_version(2, SecretKey::generate()).expect("add");
        assert!(
            store.add_version(2, SecretKey::generate()).is_err(),
            "a version is written once"
        );
        let new = store.wrap(2, file, &dek).expect("wrap v2");
        assert_eq!(store.unwrap(file, &old).expect("v1").expose(), dek.expose());
        assert_eq!(store.unwrap(file, &new).expect("v2").expose(), dek.expose());
        // Another process reading the file sees both versions.
        let reread = Keyring::read_file(&path, "keyring").expect("read");
        assert_eq!(reread.versions().collect::<Vec<_>>(), vec![1, 2]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn an_old_managed_keyring_gets_one_audit_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let master = SecretKey::generate();
        std::fs::write(&path, format!("1:{}\n", master.to_base64())).expect("write");
        let ring = Keyring::read_file(&path, "keyring").expect("read");
        let store = KeyStore::new(ring, KeyringSource::File(path.clone()), Some(path.clone()));
        assert!(store.ring().newest_audit_key().is_none());
        assert!(store.ensure_audit_key().expect("added"));
        let public = store
            .ring()
            .newest_audit_key()
            .map(super::super::AuditKey::public_key);
        assert!(public.is_some());
        // A second process finds it there and keeps it.
        let other = KeyStore::new(
            Keyring::from_keys([(1, master)]),
            KeyringSource::File(path.clone()),
            Some(path.clone()),
        );
        assert!(!other.ensure_audit_key().expect("none added"));
        assert_eq!(
            other
                .ring()
                .newest_audit_key()
                .map(super::super::AuditKey::public_key),
            public
        );
        assert_eq!(other.ring().get(1).map(|_| ()), Ok(()));
    }

    #[test]
    fn operator_supplied_keyrings_are_not_extended() {
        let store = KeyStore::new(
            Keyring::from_keys([(1, SecretKey::generate())]),
            KeyringSource::Environment,
            None,
        );
        assert!(store.add_version(2, SecretKey::generate()).is_err());
        assert!(matches!(store.get(7), Err(CryptoError::MissingVersion(7))));
    }
}
