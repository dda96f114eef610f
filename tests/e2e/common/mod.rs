//! The end-to-end harness: a real Coffer per test, on its own port, data dir, database and
//! Redis namespace, driven over HTTP.

pub mod kms;
pub mod oidc;
pub mod seed;
pub mod smtp;
pub mod web;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coffer::coffer_core::{Config, Core};
use coffer::{Roles, Running};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// SQLite, embedded queue, local blobs: what `cargo run` gives a new user.
    Embedded,
    /// PostgreSQL, Redis and S3-compatible object storage.
    Production,
}

/// Runs an async test body once per topology: the embedded one always, the production one
/// only with `--include-ignored` (it needs PostgreSQL and Redis).
#[macro_export]
macro_rules! both_topologies {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Topology::Embedded).await;
                }
            )*
        }
        mod production {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL at 127.0.0.1:5432, Redis at 127.0.0.1:6379 and an S3 server at 127.0.0.1:9000"]
                async fn $name() {
                    super::$name($crate::common::Topology::Production).await;
                }
            )*
        }
    };
}

pub fn pg_admin_url() -> String {
    std::env::var("COFFER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// An S3-compatible server (moto in CI) for the production topology's blobs.
pub fn s3_endpoint() -> String {
    std::env::var("COFFER_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:9000".into())
}

/// What every test service is given as `COFFER_METRICS_TOKEN`, and [`Client::scrape`] sends.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

pub fn redis_url() -> String {
    std::env::var("COFFER_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The backing services of one test: created on spawn, removed on stop — or, when the test
/// fails first, as it unwinds ([`Leftovers`]).
pub struct Environment {
    pub topology: Topology,
    pub data: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
    leftovers: Leftovers,
}

/// What a production-topology test creates outside its temporary directory: a PostgreSQL
/// database, Redis keys under a namespace, a bucket. Removed by [`Environment::cleanup`], or by
/// this guard's `Drop` when a test panics before it gets there.
#[derive(Default)]
pub struct Leftovers {
    pub pg_database: Option<String>,
    pub redis_namespace: Option<String>,
    pub bucket: Option<String>,
}

impl Leftovers {
    pub async fn remove(&mut self) {
        if let Some(name) = self.pg_database.take()
            && let Ok(admin) =
                sea_orm::Database::connect(format!("{}/postgres", pg_admin_url())).await
        {
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sea_orm::ConnectionTrait::execute_unprepared(&admin, &drop).await;
            admin.close().await.ok();
        }
        if let Some(ns) = self.redis_namespace.take()
            && let Ok(client) = redis::Client::open(redis_url())
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{ns}:*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
        if let Some(bucket) = self.bucket.take() {
            remove_bucket(&bucket).await;
        }
    }

    fn is_empty(&self) -> bool {
        self.pg_database.is_none() && self.redis_namespace.is_none() && self.bucket.is_none()
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.is_empty() {
            return;
        }
        let mut rest = std::mem::take(self);
        // `drop` cannot await and may run on the test's runtime: remove them from a thread of
        // its own, with a runtime of its own.
        let removed = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(rest.remove());
            }
        })
        .join();
        if removed.is_err() {
            eprintln!("could not remove a test's database, Redis keys or bucket");
        }
    }
}

/// Empties and deletes a bucket of the S3-compatible server (a bucket must be empty to go).
async fn remove_bucket(bucket: &str) {
    let http = reqwest::Client::new();
    let base = format!("{}/{bucket}", s3_endpoint());
    // Each round deletes a listing's worth (up to 1000 keys); a bounded number of rounds.
    for _ in 0..100 {
        let Ok(listing) = http.get(format!("{base}?list-type=2")).send().await else {
            return;
        };
        let text = listing.text().await.unwrap_or_default();
        let keys: Vec<&str> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .collect();
        if keys.is_empty() {
            break;
        }
        for key in keys {
            let _ = http.delete(format!("{base}/{key}")).send().await;
        }
    }
    let _ = http.delete(&base).send().await;
}

impl Environment {
    pub async fn new(topology: Topology, extra: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("temp data dir");
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut vars: Vec<(String, String)> = vec![
            ("COFFER_BIND".into(), "127.0.0.1:0".into()),
            ("COFFER_METRICS_TOKEN".into(), METRICS_TOKEN.into()),
            ("COFFER_DATA_DIR".into(), data.path().display().to_string()),
            ("COFFER_POLL_INTERVAL_MS".into(), "20".into()),
        ];
        let mut leftovers = Leftovers::default();
        if topology == Topology::Production {
            let name = format!("coffer_test_{unique}");
            let admin = sea_orm::Database::connect(format!("{}/postgres", pg_admin_url()))
                .await
                .expect("PostgreSQL is reachable (COFFER_TEST_POSTGRES)");
            sea_orm::ConnectionTrait::execute_unprepared(
                &admin,
                &format!("CREATE DATABASE {name}"),
            )
            .await
            .expect("create test database");
            admin.close().await.ok();
            leftovers.pg_database = Some(name.clone());
            vars.push((
                "COFFER_DATABASE_URL".into(),
                format!("{}/{name}", pg_admin_url()),
            ));
            vars.push(("COFFER_REDIS_URL".into(), redis_url()));
            // A bucket of its own on the S3-compatible server.
            let bucket = format!("coffer-test-{unique}");
            let created = reqwest::Client::new()
                .put(format!("{}/{bucket}", s3_endpoint()))
                .send()
                .await
                .expect("the S3 server is reachable (COFFER_TEST_S3)");
            assert!(
                created.status().is_success(),
                "creating bucket: {}",
                created.status()
            );
            leftovers.bucket = Some(bucket.clone());
            vars.push(("COFFER_STORAGE_URL".into(), format!("s3://{bucket}/blobs")));
            for (key, value) in [
                ("AWS_ENDPOINT", s3_endpoint()),
                ("AWS_ALLOW_HTTP", "true".into()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ACCESS_KEY_ID", "coffer-test".into()),
                ("AWS_SECRET_ACCESS_KEY", "coffer-test-secret".into()),
            ] {
                vars.push((key.into(), value));
            }
            let ns = format!("coffer-test-{unique}");
            vars.push(("COFFER_REDIS_NAMESPACE".into(), ns.clone()));
            leftovers.redis_namespace = Some(ns);
        }
        for (k, v) in extra {
            vars.retain(|(existing, _)| existing != k);
            vars.push(((*k).to_owned(), (*v).to_owned()));
        }
        // One keyring for every process of the test, as an operator gives it: `coffer serve`
        // finds it in its data dir (and adds versions to it when rotating), the other roles
        // are pointed at it (see `Environment::vars_for`).
        let keyring = data.path().join("keyring");
        std::fs::write(
            &keyring,
            format!(
                "# test keyring\n1:{}\n{}\n",
                coffer::coffer_core::crypto::SecretKey::generate().to_base64(),
                *AUDIT_KEY_LINE
            ),
        )
        .expect("test keyring");
        #[cfg(unix)]
        std::fs::set_permissions(
            &keyring,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("a private keyring");
        Self {
            topology,
            data,
            vars,
            leftovers,
        }
    }

    pub fn config(&self) -> Config {
        Config::from_vars(self.vars.clone()).expect("test configuration is valid")
    }

    /// [`verify_email`] for tests whose service runs in other processes.
    pub async fn verify_email(&self, email: &str) {
        let config = Config::from_vars(self.vars_for(Roles::WORKERS)).expect("configuration");
        let core = Core::build(config, false).await.expect("core");
        verify_email(&core, email).await;
    }

    /// The variables of a process that runs `roles`: the API or workers alone need to be
    /// given the keyring, which is the test's own unless the test chose another.
    pub fn vars_for(&self, roles: Roles) -> Vec<(String, String)> {
        vars_for(&self.vars, roles.api && roles.workers)
    }

    pub async fn start(&self, roles: Roles) -> Running {
        let config = Config::from_vars(self.vars_for(roles)).expect("test configuration is valid");
        coffer::start(config, roles).await.expect("service starts")
    }

    /// Adds the next version to the test's keyring file (as an operator would before
    /// rotating), and returns its number.
    pub fn add_master_key(&self) -> i32 {
        let path = self.data.path().join("keyring");
        let mut text = std::fs::read_to_string(&path).expect("keyring");
        let version = text
            .lines()
            .filter_map(|l| l.split_once(':')?.0.trim().parse::<i32>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        text.push_str(&format!(
            "{version}:{}\n",
            coffer::coffer_core::crypto::SecretKey::generate().to_base64()
        ));
        std::fs::write(&path, text).expect("keyring");
        version
    }

    /// Drops the test database, Redis keys and bucket.
    pub async fn cleanup(mut self) {
        self.leftovers.remove().await;
    }
}

/// Marks the account of `email` verified, as following its emailed link does (the link itself
/// is tested in `tests/e2e/accounts.rs`; other tests need an account that may share by email).
pub async fn verify_email(core: &Core, email: &str) {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    let account = entity::user::Entity::find()
        .filter(entity::user::Column::Email.eq(email.to_lowercase()))
        .one(core.db())
        .await
        .expect("query")
        .expect("the account exists");
    coffer::coffer_core::services::verification::mark_verified(
        core,
        account.id,
        coffer::coffer_core::audit::Actor::System,
        &Default::default(),
    )
    .await
    .expect("verified");
}

/// An audit key line (`audit:1:…`) for keyrings a test writes itself; one for the whole test
/// binary (each test has a database of its own, so they do not meet).
pub static AUDIT_KEY_LINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "audit:1:{}",
        coffer::coffer_core::crypto::SecretKey::generate().to_base64()
    )
});

/// `vars`, plus `COFFER_MASTER_KEYS_FILE` naming the data dir's keyring for a process that
/// does not serve (generate) it itself, unless the test gave keys of its own.
fn vars_for(vars: &[(String, String)], serves: bool) -> Vec<(String, String)> {
    let mut vars = vars.to_vec();
    let given = vars.iter().any(|(k, _)| {
        k == "COFFER_MASTER_KEYS" || k == "COFFER_MASTER_KEYS_FILE" || k == "COFFER_KMS"
    });
    if !serves
        && !given
        && let Some((_, dir)) = vars.iter().find(|(k, _)| k == "COFFER_DATA_DIR")
    {
        let keyring = Path::new(dir).join("keyring").display().to_string();
        vars.push(("COFFER_MASTER_KEYS_FILE".into(), keyring));
    }
    vars
}

/// A running Coffer in this process, and a [`Client`] for it (its methods are the app's:
/// `app.post_json(…)`, `app.http`, `app.base`).
pub struct TestApp {
    pub env: Environment,
    pub client: Client,
    pub running: Vec<Running>,
}

impl std::ops::Deref for TestApp {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// An HTTP client for one Coffer API: the in-process service of a [`TestApp`], or a process
/// of its own (`coffer api`, `coffer serve`). Every test talks to Coffer through one.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct User {
    pub email: String,
    pub token: String,
}

impl Client {
    /// A client for the API at `base` (`http://127.0.0.1:port`).
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/signup",
            &json!({ "email": email, "password": password }),
            None,
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({ "email": email, "password": password }),
            None,
        )
        .await
    }

    /// `PUT /api/v1/files/{name}` with a raw body.
    pub async fn put_file(&self, user: &User, name: &str, bytes: Vec<u8>) -> Response {
        let encoded = percent_encode(name);
        self.http
            .put(self.url(&format!("/api/v1/files/{encoded}")))
            .bearer_auth(&user.token)
            .body(bytes)
            .send()
            .await
            .expect("request")
    }

    /// `POST /api/v1/files` with the file in part `file`.
    pub async fn post_file(&self, user: &User, name: &str, bytes: Vec<u8>) -> Response {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        self.http
            .post(self.url("/api/v1/files"))
            .bearer_auth(&user.token)
            .multipart(form)
            .send()
            .await
            .expect("request")
    }

    /// Uploads and returns the new file's id, asserting the 202.
    pub async fn upload(&self, user: &User, name: &str, bytes: Vec<u8>) -> String {
        let response = self.put_file(user, name, bytes).await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{:?}",
            response.text().await
        );
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    pub async fn file(&self, user: &User, id: &str) -> Value {
        let response = self.get(&format!("/api/v1/files/{id}"), &user.token).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    /// Polls the file until its status is final (`ready` or `rejected`), within a deadline.
    pub async fn wait_until_settled(&self, user: &User, id: &str) -> Value {
        eventually("the file settling", Duration::from_secs(60), || async {
            let file = self.file(user, id).await;
            match file["status"].as_str() {
                Some("ready" | "rejected") => Ok(file),
                _ => Err(format!("file {id}: {file}")),
            }
        })
        .await
    }

    /// Downloads file `id` whole with session `token` and checks it is `bytes`.
    pub async fn reads_back(&self, token: &str, id: &str, bytes: &[u8]) {
        let body = self
            .http
            .get(self.url(&format!("/api/v1/files/{id}/content")))
            .bearer_auth(token)
            .send()
            .await
            .expect("download");
        assert_eq!(body.status(), StatusCode::OK, "file {id}");
        assert!(
            body.bytes().await.expect("body")[..] == bytes[..],
            "file {id} reads back as uploaded"
        );
    }

    pub async fn download(&self, user: &User, id: &str) -> Response {
        self.get(&format!("/api/v1/files/{id}/content"), &user.token)
            .await
    }

    /// `GET path` (with a bearer token when given), as JSON.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// Signs in (signing up first when asked) and returns the session token.
    pub async fn sign_in(&self, email: &str, password: &str, sign_up: bool) -> String {
        if sign_up {
            let signup = self.signup(email, password).await;
            assert_eq!(signup.status(), StatusCode::ACCEPTED);
        }
        let login: Value = self
            .login(email, password)
            .await
            .json()
            .await
            .expect("json");
        login["token"].as_str().expect("token").to_owned()
    }

    /// `PUT`s a file and returns its id, asserting the 202.
    pub async fn put_upload(
        &self,
        token: &str,
        name: &str,
        body: impl Into<reqwest::Body>,
    ) -> String {
        let upload = self
            .http
            .put(self.url(&format!("/api/v1/files/{name}")))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .expect("upload");
        assert_eq!(upload.status(), StatusCode::ACCEPTED);
        upload.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// A new ready file of `user`'s, named `name`, shared by a link without recipient as
    /// `share` asks: (file id, link, share id).
    pub async fn shared_link(
        &self,
        user: &User,
        name: &str,
        bytes: Vec<u8>,
        share: &Value,
    ) -> (String, String, String) {
        let file = self.upload(user, name, bytes).await;
        assert_eq!(
            self.wait_until_settled(user, &file).await["status"],
            "ready"
        );
        let created: Value = self
            .post_json(
                &format!("/api/v1/files/{file}/shares"),
                share,
                Some(&user.token),
            )
            .await
            .json()
            .await
            .expect("json");
        let share = &created["shares"][0];
        (
            file,
            share["url"]
                .as_str()
                .expect("a link without recipient has a url")
                .to_owned(),
            share["id"].as_str().expect("id").to_owned(),
        )
    }

    /// A new ready file of `user`'s, named `name`, shared with `recipient` as `share` asks, and
    /// the email the recipient got: (file id, the share as created, the email).
    pub async fn emailed_share(
        &self,
        smtp: &smtp::SmtpServer,
        user: &User,
        (name, bytes): (&str, Vec<u8>),
        recipient: &str,
        mut share: Value,
    ) -> (String, Value, smtp::Mail) {
        let file = self.upload(user, name, bytes).await;
        assert_eq!(
            self.wait_until_settled(user, &file).await["status"],
            "ready"
        );
        share["recipients"] = json!([recipient]);
        let created: Value = self
            .post_json(
                &format!("/api/v1/files/{file}/shares"),
                &share,
                Some(&user.token),
            )
            .await
            .json()
            .await
            .expect("json");
        let mail = smtp.wait_for(recipient, 1).await.remove(0);
        (file, created["shares"][0].clone(), mail)
    }

    /// Polls until `share` counts `completed` complete downloads: a download is recorded
    /// complete a moment after its transfer ends.
    pub async fn wait_for_completed_downloads(&self, user: &User, share: &str, completed: i64) {
        eventually(
            "the downloads recorded complete",
            Duration::from_secs(30),
            || async {
                let report = self
                    .get_json(
                        &format!("/api/v1/shares/{share}/activity?limit=1"),
                        Some(&user.token),
                    )
                    .await;
                if report["share"]["downloads_completed"].as_i64() == Some(completed) {
                    return Ok(());
                }
                Err(format!("the share is {}", report["share"]))
            },
        )
        .await;
    }

    /// Uploads and waits (with a deadline) until the file is ready.
    pub async fn upload_ready(&self, token: &str, name: &str, bytes: Vec<u8>) -> String {
        let id = self.put_upload(token, name, bytes).await;
        self.wait_ready(token, &id).await;
        id
    }

    /// Polls a file until it is ready, within two minutes.
    pub async fn wait_ready(&self, token: &str, id: &str) {
        self.wait_ready_within(token, id, Duration::from_secs(120))
            .await;
    }

    /// Polls a file until it is ready, failing once `limit` has passed (or it is rejected).
    pub async fn wait_ready_within(&self, token: &str, id: &str, limit: Duration) {
        eventually("the file becoming ready", limit, || async {
            let file = self
                .get_json(&format!("/api/v1/files/{id}"), Some(token))
                .await;
            assert_ne!(file["status"], "rejected", "{file}");
            if file["status"] == "ready" {
                Ok(())
            } else {
                Err(file.to_string())
            }
        })
        .await;
    }

    /// The Prometheus text of `/metrics`, with the test services' metrics token.
    pub async fn scrape(&self) -> String {
        let response = self
            .http
            .get(self.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("text")
    }
}

impl TestApp {
    pub async fn spawn(topology: Topology) -> Self {
        Self::spawn_with(topology, &[], Roles::ALL).await
    }

    pub async fn spawn_with(topology: Topology, extra: &[(&str, &str)], roles: Roles) -> Self {
        let env = Environment::new(topology, extra).await;
        let running = env.start(roles).await;
        let addr = running.addr.expect("API role listens");
        Self {
            env,
            client: Client::new(format!("http://{addr}")),
            running: vec![running],
        }
    }

    pub fn core(&self) -> &Core {
        &self.running[0].core
    }

    /// Starts the workers in this process too (for tests that hold them back at first). They
    /// build links from the public URL, so they are told where the API listens.
    pub async fn start_workers(&mut self) {
        let mut vars = self.env.vars_for(Roles::WORKERS);
        vars.push(("COFFER_PUBLIC_URL".into(), self.base.clone()));
        let config = Config::from_vars(vars).expect("worker configuration");
        let workers = coffer::start(config, Roles::WORKERS)
            .await
            .expect("workers start");
        self.running.push(workers);
    }

    /// Starts a second API instance on the same database and storage, behind the same public
    /// address (as a load balancer spreads requests over instances); its own base URL.
    pub async fn start_second_api(&mut self) -> String {
        let mut vars = self.env.vars_for(Roles::API);
        vars.push(("COFFER_PUBLIC_URL".into(), self.base.clone()));
        let config = Config::from_vars(vars).expect("configuration");
        let second = coffer::start(config, Roles::API)
            .await
            .expect("a second API instance starts");
        let base = format!("http://{}", second.addr.expect("it listens"));
        self.running.push(second);
        base
    }

    pub async fn stop(self) {
        for running in self.running {
            running.stop().await.expect("clean shutdown");
        }
        self.env.cleanup().await;
    }

    /// A fresh account, its address verified, signed in.
    pub async fn user(&self) -> User {
        let email = format!("user-{}@example.org", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery staple";
        assert_eq!(
            self.signup(&email, password).await.status(),
            StatusCode::ACCEPTED
        );
        self.verify_email(&email).await;
        let login = self.login(&email, password).await;
        assert_eq!(login.status(), StatusCode::OK);
        let body: Value = login.json().await.expect("json");
        User {
            email,
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// The newest audit event of `action` (panics when there is none).
    pub async fn newest_event(&self, action: &str) -> entity::audit_event::Model {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};
        entity::audit_event::Entity::find()
            .filter(entity::audit_event::Column::Action.eq(action))
            .order_by_desc(entity::audit_event::Column::OccurredAt)
            .order_by_desc(entity::audit_event::Column::Id)
            .one(self.core().db())
            .await
            .expect("query")
            .unwrap_or_else(|| panic!("no {action} event"))
    }

    /// The targets of the recorded events of `action`.
    pub async fn audit_targets(&self, action: &str) -> Vec<String> {
        self.audit_actions()
            .await
            .into_iter()
            .filter(|(a, _, _)| a == action)
            .filter_map(|(_, target, _)| target)
            .collect()
    }

    /// Audit actions recorded so far, in order.
    pub async fn audit_actions(&self) -> Vec<(String, Option<String>, String)> {
        use sea_orm::{EntityTrait as _, QueryOrder as _};
        entity::audit_event::Entity::find()
            .order_by_asc(entity::audit_event::Column::Id)
            .all(self.core().db())
            .await
            .expect("audit rows")
            .into_iter()
            // The log's own bookkeeping (a checkpoint written whenever one is due) is no
            // action of the test's.
            .filter(|e| e.action != "audit.checkpoint")
            .map(|e| (e.action, e.target_id, e.outcome))
            .collect()
    }

    /// The stored (sealed) bytes of a file's blob, and its object path.
    pub async fn blob(&self, file_id: &str) -> (String, Vec<u8>) {
        let object = self
            .objects(&format!("blobs/{file_id}"))
            .await
            .pop()
            .expect("the file has a blob");
        let bytes = self
            .core()
            .storage
            .read_raw(&object.as_str().into())
            .await
            .expect("read blob");
        (object, bytes.to_vec())
    }

    /// Replaces an object's stored bytes (a restored backup, or tampering).
    pub async fn put_object(&self, object: &str, bytes: Vec<u8>) {
        self.core()
            .storage
            .write_raw(&object.into(), bytes.into())
            .await
            .expect("write object");
    }

    /// Flips one stored byte of a file's blob, `offset_from_end` bytes before its end.
    pub async fn tamper_blob(&self, file_id: &str, offset_from_end: usize) {
        let (object, mut bytes) = self.blob(file_id).await;
        let at = bytes.len() - offset_from_end;
        bytes[at] ^= 0x40;
        self.put_object(&object, bytes).await;
    }

    /// See [`verify_email`].
    pub async fn verify_email(&self, email: &str) {
        verify_email(self.core(), email).await;
    }

    /// Waits until nothing is left under `quarantine/{prefix}`: a job removes a quarantine
    /// object just after it records the file `ready` or `rejected`, so a test that has seen
    /// the status may still see the object for a moment.
    pub async fn quarantine_emptied(&self, prefix: &str) {
        let prefix = format!("quarantine/{prefix}");
        eventually(
            "the quarantine emptying",
            Duration::from_secs(30),
            || async {
                let left = self.objects(&prefix).await;
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        )
        .await;
    }

    /// Paths of files' objects under `prefix` (the audit checkpoints left out).
    pub async fn objects(&self, prefix: &str) -> Vec<String> {
        self.core()
            .storage
            .list(prefix)
            .await
            .expect("list objects")
            .into_iter()
            .map(|p| p.to_string())
            // The audit log's signed checkpoints are no file's.
            .filter(|p| !p.starts_with("audit/checkpoints/"))
            .collect()
    }
}

/// Sends ten GETs of `url` at once, reading each body whole, and answers the one body that was
/// delivered: it fails unless exactly one answer is 200 and the others are refused as in progress
/// (409) or used up (410).
pub async fn ten_at_once_deliver_one(app: &TestApp, url: &str) -> Vec<u8> {
    use futures::StreamExt as _;
    let attempts = (0..10).map(|_| {
        let request = app.http.get(url);
        async move {
            let response = request.send().await.expect("download");
            let status = response.status();
            let mut body = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(piece) = stream.next().await {
                body.extend_from_slice(&piece.expect("piece"));
            }
            (status, body)
        }
    });
    let results = futures::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = results.iter().map(|(s, _)| *s).collect();
    assert!(
        statuses
            .iter()
            .all(|s| [StatusCode::OK, StatusCode::CONFLICT, StatusCode::GONE].contains(s)),
        "{statuses:?}"
    );
    let mut delivered: Vec<Vec<u8>> = results
        .into_iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(delivered.len(), 1, "{statuses:?}");
    delivered.remove(0)
}

/// What a Python one-liner prints (trimmed): `python3 -c script args…`, which must succeed.
pub fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Deterministic, incompressible-looking bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A small valid-looking PDF with the given bytes inside.
/// A ZIP archive of stored (uncompressed) entries, as Office writes its documents' parts.
pub fn zip_stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        let (crc, size, name_len) = (crc32(data), data.len() as u32, name.len() as u16);
        let fields = |sig: &[u8], out: &mut Vec<u8>, central: bool| {
            out.extend_from_slice(sig);
            if central {
                out.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            for v in [20u16, 0, 0, 0, 0] {
                out.extend_from_slice(&v.to_le_bytes()); // version, flags, method, time, date
            }
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&name_len.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central {
                for v in [0u16, 0, 0] {
                    out.extend_from_slice(&v.to_le_bytes()); // comment, disk, internal attrs
                }
                out.extend_from_slice(&0u32.to_le_bytes()); // external attrs
                out.extend_from_slice(&offset.to_le_bytes());
            }
            out.extend_from_slice(name.as_bytes());
        };
        fields(b"PK\x03\x04", &mut out, false);
        out.extend_from_slice(data);
        fields(b"PK\x01\x02", &mut central, true);
    }
    let (at, len, n) = (out.len() as u32, central.len() as u32, entries.len() as u16);
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    for v in [0u16, 0, n, n] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Copies a directory tree (a fixture, or the reference app into a scratch directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read the directory") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

pub fn pdf(body: &[u8]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\n%%EOF\n");
    out
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    files_where(dir, |p| {
        std::fs::read(p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

/// Every file under `dir` (if it exists) whose name matches.
pub fn files_named(dir: &Path, matches: impl Fn(&str) -> bool) -> Vec<String> {
    files_where(dir, |p| {
        p.file_name().is_some_and(|n| matches(&n.to_string_lossy()))
    })
}

fn files_where(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(
        response
            .headers()
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let body: Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:coffer:problem:"))
    );
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

/// Polls `probe` until it yields a value, failing the test with `what` and the last state
/// `probe` described once `within` has passed: the one way the tests wait for something to
/// happen (never a fixed sleep).
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(state) => assert!(
                Instant::now() < deadline,
                "{what} did not happen within {within:?}: {state}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real `coffer` binary in a child process, killed on drop.
pub struct Process {
    pub child: Child,
    /// `http://addr` when the role serves the API.
    pub base: Option<String>,
    /// `http://addr` of a worker's health and metrics listener (`COFFER_METRICS_BIND`).
    pub ops: Option<String>,
}

impl Process {
    /// Runs `coffer <role>` with `vars`; for roles that serve the API, waits for its address.
    pub fn start(role: &str, vars: &[(String, String)]) -> Self {
        Self::spawn(role, vars, Stdio::inherit())
    }

    /// Runs `coffer <role>` expecting it to refuse to start: returns what it wrote to stderr
    /// once it has exited with an error (within a minute; a process that starts is a failure).
    pub fn refused(role: &str, vars: &[(String, String)]) -> String {
        let vars = vars_for(vars, role == "serve");
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg(role)
            .env("COFFER_LOG", "warn")
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("coffer runs");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("`coffer {role}` started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("stderr");
        assert!(!status.success(), "`coffer {role}` exited 0: {stderr}");
        stderr
    }

    /// Like [`Process::start`], with the log (stderr) written to `log`.
    pub fn start_logging_to(role: &str, vars: &[(String, String)], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        Self::spawn(role, vars, Stdio::from(file))
    }

    fn spawn(role: &str, vars: &[(String, String)], stderr: Stdio) -> Self {
        let vars = vars_for(vars, role == "serve");
        // Quiet unless the test's variables ask for more.
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg(role)
            .env("COFFER_LOG", "warn")
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("coffer starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut base, mut ops) = (None, None);
        for line in lines.by_ref() {
            let line = line.expect("line");
            if let Some(addr) = line.strip_prefix("Coffer is listening on ") {
                base = Some(addr.trim().to_owned());
            }
            if let Some(url) = line.trim_start().strip_prefix("metrics:") {
                let url = url.split_whitespace().next().expect("metrics URL");
                ops = Some(url.trim_end_matches("/metrics").to_owned());
            }
            if line.trim_start().starts_with("master keys:") {
                break; // the last line of the banner
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base, ops }
    }

    /// Peak resident set size, from Linux's /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resident set size now, from Linux's /proc.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of the samples of metric `name` whose labels include every pair in `labels`, in a
/// Prometheus/OpenMetrics text exposition; `None` when no sample matches.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric_name != name {
            continue;
        }
        let has = |(k, v): &(&str, &str)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        };
        if labels.iter().all(has) {
            let v: f64 = value.parse().expect("a numeric sample");
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}
