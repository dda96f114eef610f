//! What both the API and the workers need: configuration, cryptography, storage, the queue,
//! the audit trail and the services that act on users and files.

pub mod audit;
pub mod client;
pub mod config;
pub mod crypto;
pub mod db;
pub mod digest;
pub mod error;
pub mod filetype;
pub mod mail;
pub mod metrics;
pub mod password;
pub mod private_file;
pub mod queue;
pub mod ratelimit;
pub mod request_id;
pub mod scan;
pub mod services;
pub mod storage;
pub mod types;

use std::sync::Arc;

use anyhow::Context as _;
use sea_orm::DatabaseConnection;

pub use config::Config;
pub use error::{ServiceError, ServiceResult};

use crypto::{KeyStore, Keyring, KeyringSource};
use queue::Queue;
use ratelimit::RateLimiter;
use storage::Storage;

/// Why a wrapped key did not open.
#[derive(Debug, thiserror::Error)]
pub enum KeyFailure {
    /// The keyring cannot be used for it: the operator's to fix; retry later.
    #[error("{0}")]
    Fault(ServiceError),
    /// It does not open under the right master key: the stored row was altered.
    #[error("{0}")]
    Altered(crypto::CryptoError),
}

/// Everything a request handler or a job needs, cheap to clone.
#[derive(Clone, Debug)]
pub struct Core {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    /// Queues the busiest writers of an SQLite database in this process (the audit writer and
    /// the sealer).
    pub write_gate: db::WriteGate,
    pub storage: Storage,
    pub keys: Arc<KeyStore>,
    pub queue: Queue,
    pub limiter: RateLimiter,
    pub mailer: mail::Mailer,
    pub metrics: metrics::Metrics,
    /// Where events that are the whole of their action are recorded.
    pub audit: audit::AuditWriter,
    /// clamd, when `COFFER_CLAMAV_ADDR` is set.
    pub scanner: Option<scan::Scanner>,
    /// The audit trail's own trouble (see `services::audit`).
    pub audit_alarms: Arc<audit::Alarms>,
    /// Stored objects the last orphan pass found without a file row (see `services::orphans`).
    pub(crate) rowless: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Core {
    /// Wraps a file's key under the active master-key version.
    pub async fn wrap_key(
        &self,
        file_id: uuid::Uuid,
        key: &crypto::SecretKey,
    ) -> ServiceResult<crypto::WrappedKey> {
        let version = services::keys::active_version(&self.db).await?;
        let kek = services::keys::verified_key(self, version).await?;
        self.keys.clear_fault();
        Ok(crypto::wrap_key(&kek, version, file_id, key))
    }

    /// Opens a wrapped key. A key that does not open under a version this process has checked
    /// against the database was altered ([`KeyFailure::Altered`]); a version missing from the
    /// keyring, or one whose material differs from the database's, is the operator's problem
    /// ([`KeyFailure::Fault`]: logged, counted, shown by `/readyz`), never the file's.
    pub async fn unwrap_key(
        &self,
        file_id: uuid::Uuid,
        wrapped: &crypto::WrappedKey,
    ) -> Result<crypto::SecretKey, KeyFailure> {
        let kek = services::keys::verified_key(self, wrapped.kek_version)
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

    /// [`Core::build_with`] for a command-line tool: it creates the embedded keyring only on
    /// the embedded database.
    pub async fn build(config: Config, migrate: bool) -> anyhow::Result<Self> {
        let keyring = if config.is_embedded_database() {
            KeyringUse::MayGenerate
        } else {
            KeyringUse::MustExist
        };
        Self::build_with(config, migrate, keyring).await
    }

    /// Connects to every backing service, applies migrations when asked, and checks that the
    /// keyring is the database's (check values) and can open every key the database holds.
    pub async fn build_with(
        config: Config,
        migrate: bool,
        keyring: KeyringUse,
    ) -> anyhow::Result<Self> {
        // Two rustls crypto providers are in the dependency graph; choose one for everybody
        // (lettre's TLS would panic otherwise). An error only means one is installed already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // Whatever Coffer creates is its own alone: the database, the keyring, the outbox
        // (live links), staging files.
        rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
        if config.is_embedded_database() || config.redis_url.is_none() {
            private_dir(&config.data_dir)?;
        }
        let keys = Arc::new(load_keyring(&config, keyring)?);
        if keys.ensure_audit_key()? {
            tracing::warn!("added an audit key to the generated keyring; back the keyring up");
        }
        let db = db::connect(&config.database_url).await?;
        if migrate {
            db::migrate(&db).await?;
        }
        services::keys::check_keyring_matches_database(&db, &keys).await?;
        services::keys::check_keyring_covers_database(&db, &keys.ring()).await?;
        services::keys::sync_versions(&db, &keys.ring()).await?;
        services::audit::check_audit_keys(&db, &keys).await?;
        let storage = Storage::from_url(&config.storage_url, &config.aws)?;
        let queue = Queue::connect(&config).await?;
        let mailer = mail::Mailer::from_config(&config)?;
        if !mailer.sends() {
            tracing::warn!(
                outbox = %config.data_dir.join("outbox").display(),
                "COFFER_SMTP_URL is unset: no email is sent; share emails wait in the outbox (readable by this user only) until their link stops working, and their shares show `outbox`"
            );
        }
        let limiter = match &config.redis_url {
            Some(url) => RateLimiter::redis(url, &config.redis_namespace).await?,
            None => RateLimiter::memory(),
        };
        let scanner = config.clamav_addr.clone().map(scan::Scanner::new);
        let write_gate = db::WriteGate::for_db(&db);
        let audit = audit::AuditWriter::start(
            db.clone(),
            write_gate.clone(),
            keys.clone(),
            config.audit_repeat_window,
        );
        Ok(Self {
            config: Arc::new(config),
            audit,
            write_gate,
            db,
            storage,
            keys,
            queue,
            limiter,
            mailer,
            metrics: metrics::Metrics::new(),
            scanner,
            audit_alarms: Arc::default(),
            rowless: Arc::default(),
        })
    }
}

/// Creates the data directory readable by Coffer's user only, and makes an existing one so.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making data directory {} private", dir.display()))?;
    }
    Ok(())
}

/// Whether a process may create the keyring file in its data directory when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringUse {
    /// `coffer serve`, and tools on the embedded database.
    MayGenerate,
    /// Anything else: a keyring made here would hold keys no other process has.
    MustExist,
}

fn load_keyring(config: &Config, keyring: KeyringUse) -> anyhow::Result<KeyStore> {
    use secrecy::ExposeSecret as _;
    Ok(match &config.master_keys {
        config::MasterKeySource::Inline(keys) => KeyStore::new(
            Keyring::parse(keys.expose_secret(), "COFFER_MASTER_KEYS")?,
            KeyringSource::Environment,
            None,
        ),
        config::MasterKeySource::File(path) => KeyStore::new(
            Keyring::read_file(path, "COFFER_MASTER_KEYS_FILE")?,
            KeyringSource::File(path.clone()),
            None,
        ),
        config::MasterKeySource::DataDir => {
            let path = config.data_dir.join("keyring");
            if keyring == KeyringUse::MustExist && !path.exists() {
                anyhow::bail!(
                    "no master keys: set COFFER_MASTER_KEYS or COFFER_MASTER_KEYS_FILE (only `coffer serve` generates a keyring, {})",
                    path.display()
                );
            }
            let (keyring, created) = Keyring::load_or_generate(&path)?;
            let path = std::path::absolute(&path).unwrap_or(path);
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "generated a new master keyring; back it up: without it no stored file can be decrypted"
                );
                KeyStore::new(keyring, KeyringSource::Generated(path.clone()), Some(path))
            } else {
                KeyStore::new(keyring, KeyringSource::File(path.clone()), Some(path))
            }
        }
    })
}
