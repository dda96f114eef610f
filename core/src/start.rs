//! Building a [`Core`]: connecting to every backing service and checking, before any work,
//! that the keyring is the database's.

use std::sync::Arc;

use anyhow::Context as _;

use crate::crypto::{KeyStore, Keyring, KeyringSource};
use crate::jobs::validate::ValidateFile;
use crate::jobs::{encrypt::EncryptFile, notify::SendShareEmail, rewrap::RewrapKeys};
use crate::queue::{Payload as _, Queue};
use crate::ratelimit::RateLimiter;
use crate::storage::Storage;
use crate::{Config, Core, KeyringUse, audit, config, db, mail, metrics, scan, services};

/// Every queue, named by its job's payload: what metrics count and the sweep vacuums.
pub(crate) const QUEUES: [&str; 4] = [
    ValidateFile::NAME,
    EncryptFile::NAME,
    SendShareEmail::NAME,
    RewrapKeys::NAME,
];

impl Core {
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
        // A keyring is read before anything connects (a bad one is the first thing said);
        // keys an HSM or KMS holds are in the database.
        let keys = load_keyring(&config, keyring)?;
        if let Keys::Loaded(keys) = &keys
            && keys.ensure_audit_key()?
        {
            tracing::warn!("added an audit key to the generated keyring; back the keyring up");
        }
        let db = db::connect(&config.database_url).await?;
        if migrate {
            db::migrate(&db).await?;
        }
        let keys = Arc::new(match keys {
            Keys::Loaded(keys) => keys,
            Keys::HeldBy(spec) => services::keys::kms::open(&db, spec, &config.aws).await?,
        });
        if keys.kms().is_some() {
            // Keys an HSM or KMS guards stay out of core files and other processes' ptrace.
            #[cfg(target_os = "linux")]
            if let Err(err) = rustix::process::set_dumpable_behavior(
                rustix::process::DumpableBehavior::NotDumpable,
            ) {
                tracing::warn!(error = %err, "could not make this process non-dumpable");
            }
        }
        if !keys.ring().is_locked() {
            tracing::warn!(
                "the master keys could not be locked into memory (RLIMIT_MEMLOCK, `ulimit -l`): they may be written to swap"
            );
        }
        services::keys::check_keyring_matches_database(&db, &keys).await?;
        services::keys::check_keyring_covers_database(&db, &keys).await?;
        services::keys::sync_versions(&db, &keys.ring()).await?;
        services::audit::check_audit_keys(&db, &keys).await?;
        let storage = Storage::from_url(&config.storage_url, &config.aws)?;
        let queue = Queue::connect(&config, &QUEUES).await?;
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
            db::sqlite_file(&config.database_url).as_deref(),
        );
        let oidc = match &config.identity.oidc {
            Some(settings) => Some(Arc::new(
                crate::identity_provider::Provider::new(
                    settings.clone(),
                    &config.public_link("/api/v1/auth/oidc/callback"),
                )
                .context("setting up single sign-on (COFFER_OIDC_*)")?,
            )),
            None => None,
        };
        Ok(Self {
            _checkpoints: db::checkpoints(&db).map(Arc::new),
            oidc,
            session_cache: Arc::default(),
            in_place: db::in_place::Reader::for_url(&config.database_url).map(Arc::new),
            kept: db::kept::Kept::for_db(&db).map(Arc::new),
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
            signup_slots: Arc::new(tokio::sync::Semaphore::new(
                crate::password::SIGNUPS_AT_ONCE,
            )),
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

/// Where a process's master keys come from.
enum Keys<'a> {
    /// A keyring, read.
    Loaded(KeyStore),
    /// An HSM or KMS, which wraps them in the database.
    HeldBy(&'a crate::crypto::kms::KmsSpec),
}

fn load_keyring(config: &Config, keyring: KeyringUse) -> anyhow::Result<Keys<'_>> {
    use secrecy::ExposeSecret as _;
    Ok(Keys::Loaded(match &config.master_keys {
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
        config::MasterKeySource::Kms(spec) => return Ok(Keys::HeldBy(spec)),
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
    }))
}
