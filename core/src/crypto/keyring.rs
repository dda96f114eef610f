//! Versioned master keys (KEKs). New wraps use the newest version; older versions stay to
//! unwrap until rotation has moved every key off them.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::vault::Vault;
use super::{AuditKey, CryptoError, SecretKey};
use uuid::Uuid;

/// The master keys by version, and the audit keys by version (`audit:N:base64` entries).
#[derive(Clone)]
pub struct Keyring {
    keys: Vault,
    audit: BTreeMap<i32, AuditKey>,
}

/// Where the keyring came from, for the start-up banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringSource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
    /// Wrapped by an HSM or KMS (described), kept wrapped in the database.
    Kms(String),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "{var}: expected comma- or newline-separated `version:base64key` (master keys) and `audit:version:base64key` (audit keys) entries with 32-byte keys and positive versions ({detail})"
    )]
    Malformed { var: &'static str, detail: String },
    #[error("{var}: no keys given")]
    Empty { var: &'static str },
    #[error("reading keyring file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Keyring {
    pub fn from_keys(keys: impl IntoIterator<Item = (i32, SecretKey)>) -> Self {
        Self {
            keys: Vault::new(keys.into_iter().collect()),
            audit: BTreeMap::new(),
        }
    }

    /// This keyring with master key `version` added (or replaced).
    pub fn with_version(&self, version: i32, key: SecretKey) -> Self {
        let mut keys: BTreeMap<i32, SecretKey> = self
            .keys
            .versions()
            .filter_map(|v| Some((v, self.keys.get(v)?.clone())))
            .collect();
        keys.insert(version, key);
        Self {
            keys: Vault::new(keys),
            audit: self.audit.clone(),
        }
    }

    /// This keyring with the audit key `version` derived from `secret`.
    pub fn with_audit_key(mut self, version: i32, secret: &SecretKey) -> Self {
        self.audit
            .insert(version, AuditKey::derive(version, secret));
        self
    }

    /// Parses `1:base64,2:base64,audit:1:base64` (commas or newlines; blank lines and `#`
    /// comments ignored).
    pub fn parse(text: &str, var: &'static str) -> Result<Self, KeyringError> {
        let mut keys = BTreeMap::new();
        let mut audit = BTreeMap::new();
        // Comment lines go first: a comment may hold commas.
        for entry in text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let malformed = |detail: &str| KeyringError::Malformed {
                var,
                detail: detail.to_owned(),
            };
            let (version, key) = entry
                .split_once(':')
                .ok_or_else(|| malformed("an entry has no `:`"))?;
            let (is_audit, version, key) = match version.trim() {
                "audit" => {
                    let (version, key) = key
                        .split_once(':')
                        .ok_or_else(|| malformed("an audit entry has no version"))?;
                    (true, version, key)
                }
                _ => (false, version, key),
            };
            let version: i32 = version
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| malformed("a version is not a positive integer"))?;
            let kind = if is_audit { "audit key" } else { "key" };
            let key = SecretKey::from_base64(key).ok_or_else(|| {
                malformed(&format!(
                    "the {kind} of version {version} is not 32 bytes of base64"
                ))
            })?;
            let twice = if is_audit {
                audit
                    .insert(version, AuditKey::derive(version, &key))
                    .is_some()
            } else {
                keys.insert(version, key).is_some()
            };
            if twice {
                return Err(malformed(&format!(
                    "{kind} version {version} appears twice"
                )));
            }
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty { var });
        }
        Ok(Self {
            keys: Vault::new(keys),
            audit,
        })
    }

    pub fn read_file(path: &Path, var: &'static str) -> Result<Self, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, var)
    }

    /// Loads `path`, or creates it (mode 0600) holding a fresh version 1. Creation is atomic
    /// (written aside, then linked into place), so processes starting together agree on one key.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), KeyringError> {
        if path.exists() {
            return Ok((Self::read_file(path, "keyring file")?, false));
        }
        let io = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        let key = SecretKey::generate();
        let audit_key = SecretKey::generate();
        let staging = path.with_extension(format!("new-{}", Uuid::new_v4().simple()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&staging).and_then(|mut file| {
            writeln!(
                file,
                "# Coffer master keys (version:base64) and audit keys (audit:version:base64). Losing this file makes every stored file unreadable.\n1:{}\naudit:1:{}",
                key.to_base64(),
                audit_key.to_base64()
            )?;
            file.sync_all()
        });
        let linked = written.and_then(|()| std::fs::hard_link(&staging, path));
        let _ = std::fs::remove_file(&staging);
        match linked {
            Ok(()) => Ok((
                Self::from_keys([(1, key)]).with_audit_key(1, &audit_key),
                true,
            )),
            // Another process created it first: use theirs.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::read_file(path, "keyring file")?, false))
            }
            Err(err) => Err(io(err)),
        }
    }

    #[allow(clippy::expect_used, reason = "parsing refuses an empty keyring")]
    pub fn newest_version(&self) -> i32 {
        self.keys
            .versions()
            .next_back()
            .expect("a keyring is never empty")
    }

    pub fn versions(&self) -> impl DoubleEndedIterator<Item = i32> + '_ {
        self.keys.versions()
    }

    pub fn get(&self, version: i32) -> Result<&SecretKey, CryptoError> {
        self.keys
            .get(version)
            .ok_or(CryptoError::MissingVersion(version))
    }

    /// Whether the master keys' memory is locked (never swapped out).
    pub fn is_locked(&self) -> bool {
        self.keys.is_locked()
    }

    /// The audit key new events are MACed and checkpoints signed with: the newest version.
    pub fn newest_audit_key(&self) -> Option<&AuditKey> {
        self.audit.values().next_back()
    }

    pub fn audit_key(&self, version: i32) -> Option<&AuditKey> {
        self.audit.get(&version)
    }

    pub fn audit_keys(&self) -> impl Iterator<Item = &AuditKey> + '_ {
        self.audit.values()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.versions()).finish()?;
        f.debug_list().entries(self.audit.values()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_and_knows_the_newest() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let text = format!("1:{}, 2:{}\n", a.to_base64(), b.to_base64());
        let ring = Keyring::parse(&text, "COFFER_MASTER_KEYS").expect("parses");
        assert_eq!(ring.newest_version(), 2);
        assert_eq!(ring.get(1).expect("v1").expose(), a.expose());
        assert_eq!(ring.get(2).expect("v2").expose(), b.expose());
        assert_eq!(ring.get(3).map(|_| ()), Err(CryptoError::MissingVersion(3)));
    }

    #[test]
    fn audit_keys_are_entries_of_their_own() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let text = format!(
            "1:{}\naudit:1:{}\naudit:2:{}",
            a.to_base64(),
            b.to_base64(),
            a.to_base64()
        );
        let ring = Keyring::parse(&text, "COFFER_MASTER_KEYS").expect("parses");
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1]);
        assert_eq!(ring.newest_audit_key().map(AuditKey::version), Some(2));
        assert_eq!(
            ring.audit_key(1).map(AuditKey::public_key),
            Some(AuditKey::derive(1, &b).public_key())
        );
        let twice = format!(
            "1:{}\naudit:1:{}\naudit:1:{}",
            a.to_base64(),
            b.to_base64(),
            b.to_base64()
        );
        assert!(Keyring::parse(&twice, "X").is_err());
        let only_audit = format!("audit:1:{}", b.to_base64());
        assert!(
            Keyring::parse(&only_audit, "X").is_err(),
            "master keys are required"
        );
    }

    #[test]
    fn a_comment_may_hold_commas() {
        let key = SecretKey::generate();
        let text = format!("# keys, moved here, kept safe\n1:{}\n", key.to_base64());
        let ring = Keyring::parse(&text, "X").expect("parses");
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn rejects_bad_entries_naming_the_variable() {
        for bad in [
            "",
            "1",
            "0:AAAA",
            "x:AAAA",
            "1:c2hvcnQ=",
            "audit:AAAA",
            "audit:0:AAAA",
        ] {
            let err = Keyring::parse(bad, "COFFER_MASTER_KEYS").expect_err(bad);
            assert!(err.to_string().starts_with("COFFER_MASTER_KEYS"), "{err}");
        }
    }

    #[test]
    fn debug_prints_no_key_material() {
        let key = SecretKey::generate();
        let b64 = key.to_base64();
        let ring = Keyring::from_keys([(1, key)]);
        assert!(!format!("{ring:?}").contains(&b64));
    }

    #[test]
    fn generated_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keyring");
        let (ring, created) = Keyring::load_or_generate(&path).expect("generates");
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = Keyring::load_or_generate(&path).expect("loads");
        assert!(!created);
        assert_eq!(
            again.get(1).expect("v1").expose(),
            ring.get(1).expect("v1").expose()
        );
        let public = |r: &Keyring| r.newest_audit_key().map(AuditKey::public_key);
        assert!(
            public(&ring).is_some(),
            "a generated keyring has an audit key"
        );
        assert_eq!(public(&again), public(&ring));
    }
}
