//! Starting and stopping Coffer's roles (API, workers) in one process; shared by the binary and
//! the end-to-end tests.

// The web app and the API nest many middleware layers around many routes: computing the layout
// of the composed endpoint's future goes deeper than the default limit (128) on a clean build.
#![recursion_limit = "256"]

use std::net::SocketAddr;

use anyhow::Context as _;
use coffer_api::Surface;
use coffer_core::config::MasterKeySource;
use coffer_core::{Config, Core, KeyringUse};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use coffer_api;
pub use coffer_core;

/// Which parts of the service this process runs.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub api: bool,
    pub workers: bool,
}

impl Roles {
    pub const ALL: Self = Self {
        api: true,
        workers: true,
    };
    pub const API: Self = Self {
        api: true,
        workers: false,
    };
    pub const WORKERS: Self = Self {
        api: false,
        workers: true,
    };
}

/// The newest master-key version the configured keyring holds, if it can be read.
pub fn newest_key_version(config: &Config) -> Option<i32> {
    configured_keyring(config)?.versions().max()
}

/// The newest audit-key version of the keyring the configuration names, if it can be read.
pub fn newest_audit_key_version(config: &Config) -> Option<i32> {
    configured_keyring(config)?
        .newest_audit_key()
        .map(coffer_core::crypto::AuditKey::version)
}

fn configured_keyring(config: &Config) -> Option<coffer_core::crypto::Keyring> {
    use coffer_core::crypto::Keyring;
    use secrecy::ExposeSecret as _;
    let ring = match &config.master_keys {
        MasterKeySource::Inline(keys) => {
            Keyring::parse(keys.expose_secret(), "COFFER_MASTER_KEYS").ok()?
        }
        MasterKeySource::File(path) => Keyring::read_file(path, "COFFER_MASTER_KEYS_FILE").ok()?,
        MasterKeySource::DataDir => {
            Keyring::read_file(&config.data_dir.join("keyring"), "keyring file").ok()?
        }
        MasterKeySource::Kms(_) => return None,
    };
    Some(ring)
}

/// A started service.
pub struct Running {
    /// Where the API listens, if this process serves it.
    pub addr: Option<SocketAddr>,
    /// Where a process without the API serves health and metrics (`COFFER_METRICS_BIND`).
    pub metrics_addr: Option<SocketAddr>,
    pub core: Core,
    stop: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

/// Connects, migrates, bootstraps the admin, and starts the requested roles.
pub async fn start(mut config: Config, roles: Roles) -> anyhow::Result<Running> {
    // Bind first, so links built from the public URL carry the port actually used.
    let listener = if roles.api {
        let (acceptor, local) = coffer_api::bind(config.bind)
            .await
            .with_context(|| format!("listening on {} (COFFER_BIND)", config.bind))?;
        config.bound_to(local);
        Some((acceptor, local))
    } else {
        None
    };
    // Operators' /healthz, /readyz and /metrics, on an address of their own.
    let ops_listener = match config.metrics_bind {
        Some(bind) => Some(
            coffer_api::bind(bind)
                .await
                .with_context(|| format!("listening on {bind} (COFFER_METRICS_BIND)"))?,
        ),
        None => None,
    };
    // Processes of the production roles share one database: each must be given the keyring
    // (a keyring generated here would hold keys no other process has).
    let keyring = if roles.api && roles.workers {
        KeyringUse::MayGenerate
    } else if matches!(config.master_keys, MasterKeySource::DataDir) {
        anyhow::bail!(
            "COFFER_MASTER_KEYS or COFFER_MASTER_KEYS_FILE is required for `coffer api` and `coffer worker`: give every process the same keyring (`coffer keys generate` prints a key line); only `coffer serve` generates one"
        );
    } else {
        KeyringUse::MustExist
    };
    let core = Core::build_with(config, true, keyring).await?;
    if let Some(admin) = &core.config.admin {
        coffer_core::services::users::bootstrap_admin(&core, &admin.email, admin.password.clone())
            .await
            .map_err(|e| anyhow::anyhow!("COFFER_ADMIN_EMAIL/COFFER_ADMIN_PASSWORD: {e}"))?;
    }
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut serve = |name: &'static str, surface, acceptor| {
        let (core, stop) = (core.clone(), stop.clone());
        let server = async move {
            coffer_api::serve(
                core,
                surface,
                acceptor,
                async move { stop.cancelled().await },
            )
            .await
            .with_context(|| format!("{name} server"))
        };
        tasks.push((name, tokio::spawn(server)));
    };
    let addr = listener.map(|(acceptor, local)| {
        serve("api", Surface::Api, acceptor);
        local
    });
    // The identity provider's keys before the first sign-in needs them, and a clear line in the
    // log if it cannot be reached (sign-ins with it answer 503 meanwhile; nothing else waits).
    if let (Some(_), Some(provider)) = (addr, core.oidc.clone()) {
        tokio::spawn(async move { provider.warm_up().await });
    }
    let metrics_addr = ops_listener.map(|(acceptor, local)| {
        serve("metrics", Surface::Ops, acceptor);
        local
    });
    if roles.workers {
        let (core, stop) = (core.clone(), stop.clone());
        tasks.push((
            "workers",
            tokio::spawn(async move {
                coffer_worker::run(core, async move { stop.cancelled().await }).await
            }),
        ));
    }
    Ok(Running {
        addr,
        metrics_addr,
        core,
        stop,
        tasks,
    })
}

impl Running {
    /// Stops accepting work, lets what runs finish, and waits for every role to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until every role has ended (after a stop, or on a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        for (name, task) in self.tasks {
            task.await
                .with_context(|| format!("{name} task panicked"))??;
        }
        Ok(())
    }

    /// A handle that stops the service when cancelled.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }
}
