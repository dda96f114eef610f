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
pub mod identity_provider;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod password;
pub mod principal;
pub mod private_file;
pub mod queue;
pub mod ratelimit;
pub mod request_id;
pub mod scan;
pub mod services;
pub mod session_cache;
mod start;
pub mod storage;
pub mod text;
pub mod types;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use config::Config;
pub use error::{JobError, ServiceError, ServiceResult};

use crypto::KeyStore;
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
    /// Only core's services touch tables; outside core, tests reach it through [`Core::db`].
    pub(crate) db: DatabaseConnection,
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
    /// Sign-ups being hashed or waiting to be (see `password::SIGNUPS_AT_ONCE`).
    pub(crate) signup_slots: Arc<tokio::sync::Semaphore>,
    /// Single rows of an SQLite database read on the calling thread (see `db::in_place`).
    pub(crate) in_place: Option<Arc<db::in_place::Reader>>,
    /// PostgreSQL connections kept out of the pool for lookups (see `db::kept`).
    pub(crate) kept: Option<Arc<db::kept::Kept>>,
    /// Sessions resolved within the last second (see `session_cache`).
    pub session_cache: Arc<session_cache::SessionCache>,
    /// The OpenID provider, when single sign-on is set up (`COFFER_OIDC_ISSUER`).
    pub oidc: Option<Arc<identity_provider::Provider>>,
    /// SQLite's checkpoints, off the request path (see `db::checkpoints`); they stop with the
    /// last clone of the core.
    _checkpoints: Option<Arc<tokio_util::task::AbortOnDropHandle<()>>>,
}

/// Whether a process may create the keyring file in its data directory when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringUse {
    /// `coffer serve`, and tools on the embedded database.
    MayGenerate,
    /// Anything else: a keyring made here would hold keys no other process has.
    MustExist,
}

impl Core {
    /// The database, for tests that must reach under the services (tampering with rows,
    /// simulating crashes): built only with the `test-support` feature, which only the test
    /// and benchmark targets enable.
    #[cfg(feature = "test-support")]
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}
