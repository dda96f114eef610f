//! The service under test: the release `coffer` binary in child processes, on the embedded
//! default (`coffer serve`: SQLite, embedded queue) or on PostgreSQL + Redis (`coffer api` +
//! `coffer worker`). Blobs go to the local disk in both: an S3 server here would be a Python
//! mock, and its speed is not Coffer's.

use sea_orm::ConnectionTrait as _;

use serde_json::json;

use super::common::smtp::SmtpServer;
use super::common::{self, Process};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Embedded,
    Postgres,
}

impl Topology {
    pub fn label(self) -> &'static str {
        match self {
            Self::Embedded => "embedded (SQLite)",
            Self::Postgres => "PostgreSQL + Redis",
        }
    }
}

pub const USER: (&str, &str) = ("bench@example.org", "correct horse battery");

/// Where big temporary files go: `COFFER_BENCH_DIR`, else the system's temporary directory.
pub fn scratch_dir() -> tempfile::TempDir {
    match std::env::var_os("COFFER_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("scratch directory")
}

/// A bench database's URL. Over loopback, as in docker-compose.yml, without TLS (the local
/// cluster offers it, and it would cost both sides CPU for nothing).
pub fn database_url(name: &str) -> String {
    format!("{}/{name}?sslmode=disable", common::pg_admin_url())
}

pub struct Stack {
    topology: Topology,
    pub base: String,
    /// Each process with the role it plays.
    processes: Vec<(&'static str, Process)>,
    _data: tempfile::TempDir,
    /// The database and Redis keys of the PostgreSQL topology, removed even when a run fails.
    leftovers: common::Leftovers,
    /// Where the service's mail goes: the address check of the bench user, and share links.
    smtp: SmtpServer,
    /// The settings the service runs with (database, data dir, keyring), for a core in the
    /// harness's own process on the same store.
    vars: Vec<(String, String)>,
}

impl Stack {
    pub async fn start(topology: Topology) -> Self {
        Self::start_with(topology, &[]).await
    }

    /// With `keys` giving the master keys (`COFFER_KMS` and what it needs) instead of a
    /// keyring file.
    pub async fn start_with(topology: Topology, keys: &[(String, String)]) -> Self {
        let data = scratch_dir();
        let smtp = SmtpServer::start();
        let mut vars: Vec<(String, String)> = vec![
            ("COFFER_SMTP_URL".into(), smtp.url.clone()),
            ("COFFER_BIND".into(), "127.0.0.1:0".into()),
            ("COFFER_DATA_DIR".into(), data.path().display().to_string()),
            // The 4 GiB file is over the default 2 GiB limit.
            ("COFFER_MAX_UPLOAD_BYTES".into(), (8u64 << 30).to_string()),
            // The bench user's session outlives the scale section's seeding (about 23 minutes
            // on SQLite) with the service stopped.
            ("COFFER_SESSION_IDLE_MINUTES".into(), "1440".into()),
        ];
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut leftovers = common::Leftovers::default();
        match topology {
            Topology::Embedded => {}
            Topology::Postgres => {
                let name = format!("coffer_bench_{unique}");
                let admin =
                    sea_orm::Database::connect(format!("{}/postgres", common::pg_admin_url()))
                        .await
                        .expect("PostgreSQL at 127.0.0.1:5432 (COFFER_TEST_POSTGRES)");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create the bench database");
                admin.close().await.ok();
                let ns = format!("coffer-bench-{unique}");
                vars.extend([
                    ("COFFER_DATABASE_URL".into(), database_url(&name)),
                    ("COFFER_REDIS_URL".into(), common::redis_url()),
                    ("COFFER_REDIS_NAMESPACE".into(), ns.clone()),
                ]);
                leftovers.pg_database = Some(name);
                leftovers.redis_namespace = Some(ns);
                // Migrations first, as the README asks of a production deployment.
                let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
                    .arg("migrate")
                    .env("COFFER_LOG", "warn")
                    .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .status()
                    .expect("coffer migrate");
                assert!(migrated.success(), "coffer migrate failed");
            }
        }
        if keys.is_empty() && topology == Topology::Postgres {
            // The production roles are given their keyring; they never generate one.
            let keyring = data.path().join("keyring");
            std::fs::write(
                &keyring,
                format!(
                    "1:{}\naudit:1:{}\n",
                    coffer::coffer_core::crypto::SecretKey::generate().to_base64(),
                    coffer::coffer_core::crypto::SecretKey::generate().to_base64()
                ),
            )
            .expect("the bench keyring");
            vars.push((
                "COFFER_MASTER_KEYS_FILE".into(),
                keyring.display().to_string(),
            ));
        }
        vars.extend_from_slice(keys);
        let processes = start_processes(topology, &vars);
        let base = processes[0].1.base.clone().expect("the API listens");
        Self {
            topology,
            base,
            processes,
            _data: data,
            leftovers,
            smtp,
            vars,
        }
    }

    /// A signed-up user's session token.
    pub async fn user_token(&self, http: &reqwest::Client) -> String {
        let client = common::Client {
            base: self.base.clone(),
            http: http.clone(),
        };
        let token = client.sign_in(USER.0, USER.1, true).await;
        // Its address confirmed with the emailed link, so that it may share by email.
        let mail = self.smtp.wait_for(USER.0, 1).await.remove(0);
        let text = mail.part("text/plain");
        let link = text
            .split_whitespace()
            .find(|w| w.contains("verify-email?token="))
            .expect("the address check's link");
        let raw = link.rsplit_once("token=").expect("token").1;
        let verified = client
            .post_json("/api/v1/auth/verify-email", &json!({ "token": raw }), None)
            .await;
        assert!(verified.status().is_success(), "address verified");
        token
    }

    /// Shares file `id` with one recipient (no download limit) and returns the emailed link.
    pub async fn share_link(&self, http: &reqwest::Client, token: &str, id: &str) -> String {
        const RECIPIENT: &str = "recipient@example.org";
        let client = common::Client {
            base: self.base.clone(),
            http: http.clone(),
        };
        let shared = client
            .post_json(
                &format!("/api/v1/files/{id}/shares"),
                &json!({ "recipients": [RECIPIENT], "expires_in_hours": 24 }),
                Some(token),
            )
            .await;
        assert!(shared.status().is_success(), "shared: {}", shared.status());
        self.smtp.wait_for(RECIPIENT, 1).await.remove(0).link()
    }

    /// Each process's peak resident set size so far, in MiB.
    pub fn peak_rss_mib(&self) -> Vec<(&'static str, f64)> {
        self.processes
            .iter()
            .map(|(role, p)| (*role, p.peak_rss_kib() as f64 / 1024.0))
            .collect()
    }

    /// The settings the service's processes run with.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// Stops the service's processes and keeps their store, for work in the harness's process.
    pub fn stop_processes(&mut self) {
        drop(std::mem::take(&mut self.processes));
    }

    /// Starts the service's processes again on the same store (after [`Self::stop_processes`]);
    /// the API listens on a new port.
    pub fn restart_processes(&mut self) {
        self.processes = start_processes(self.topology, &self.vars);
        self.base = self.processes[0].1.base.clone().expect("the API listens");
    }

    pub async fn stop(mut self) {
        drop(std::mem::take(&mut self.processes));
        self.leftovers.remove().await;
    }
}

/// `coffer serve`, or `coffer api` and `coffer worker` (the worker told the API's address).
fn start_processes(topology: Topology, vars: &[(String, String)]) -> Vec<(&'static str, Process)> {
    match topology {
        Topology::Embedded => vec![("serve", Process::start("serve", vars))],
        Topology::Postgres => {
            let api = Process::start("api", vars);
            let base = api.base.clone().expect("the API listens");
            let mut worker_vars = vars.to_vec();
            worker_vars.push(("COFFER_PUBLIC_URL".into(), base));
            vec![
                ("api", api),
                ("worker", Process::start("worker", &worker_vars)),
            ]
        }
    }
}
