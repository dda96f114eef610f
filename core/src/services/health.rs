//! Whether this process can do its work: each backing service probed within a deadline, and
//! the metrics it exposes.

use std::future::Future;
use std::time::Duration;

use crate::Core;

/// How long one readiness check may take before it counts as down: probes must not hang.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What each probe found.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub database: bool,
    pub queue: bool,
    pub storage: bool,
    /// `None` when no malware scanner is configured.
    pub scanner: Option<bool>,
    /// A master-key version is missing from the keyring, or differs from the database's.
    pub keyring_fault: bool,
    /// Whether the HSM or KMS answers; `None` when the keys are in a keyring.
    pub kms: Option<bool>,
}

impl Readiness {
    /// Whether the services every request needs are up.
    pub fn ready(&self) -> bool {
        self.database && self.queue && self.storage
    }
}

async fn check<E: std::fmt::Display>(
    what: &'static str,
    probe: impl Future<Output = Result<(), E>>,
) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(check = what, error = %err, "readiness check failed");
            false
        }
        Err(_) => {
            tracing::warn!(check = what, "readiness check timed out");
            false
        }
    }
}

/// Probes the database, the queue, the storage and the scanner at once, each within a deadline.
pub async fn readiness(core: &Core) -> Readiness {
    let scanner = async {
        match &core.scanner {
            Some(scanner) => Some(check("scanner", scanner.ping()).await),
            None => None,
        }
    };
    // The HSM or KMS is asked only while its last call went unanswered (until it answers
    // again): every probe of a cloud KMS is a billed call and a line in its log.
    let kms = async {
        match core.keys.kms() {
            Some(kms) if kms.down().is_some() => Some(check("kms", kms.probe()).await),
            Some(_) => Some(true),
            None => None,
        }
    };
    let (database, queue, storage, scanner, kms) = tokio::join!(
        check("database", core.db.ping()),
        check("queue", async {
            core.queue.check().await.map_err(|e| format!("{e:#}"))
        }),
        check("storage", core.storage.check()),
        scanner,
        kms,
    );
    Readiness {
        database,
        queue,
        storage,
        scanner,
        keyring_fault: core.keys.fault().is_some(),
        kms,
    }
}

/// This process's metrics in the OpenMetrics text format, with the gauges read from the
/// database and the queue brought up to date.
pub async fn metrics(core: &Core) -> String {
    core.metrics.render(&core.db, &core.queue).await
}
