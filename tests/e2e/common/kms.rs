//! The HSM and the KMS the key tests use, both real: SoftHSM2 tokens of the test's own (its own
//! configuration and token directory, initialised with `softhsm2-util`, keys made with OpenSC's
//! `pkcs11-tool`, as the README tells an operator), and keys in moto's KMS (the S3 server of
//! the production topology speaks KMS's API too).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's SoftHSM2 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 token directory of the test's own, and the PIN its tokens share.
pub struct SoftHsm {
    dir: tempfile::TempDir,
    pub pin: String,
}

impl SoftHsm {
    /// An empty token directory, and a token `token` in it.
    pub fn with_token(token: &str) -> Self {
        let dir = tempfile::tempdir().expect("token dir");
        std::fs::create_dir(dir.path().join("tokens")).expect("tokens dir");
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                dir.path().display()
            ),
        )
        .expect("softhsm2.conf");
        let hsm = Self {
            dir,
            pin: format!("{:06}", rand::random::<u32>() % 1_000_000),
        };
        std::fs::write(hsm.pin_file(), &hsm.pin).expect("pin file");
        hsm.add_token(token);
        hsm
    }

    /// A token `token` holding one key, labelled `key` (as [`SoftHsm::add_key`] makes it).
    pub fn with_key(token: &str, key: &str) -> Self {
        let hsm = Self::with_token(token);
        hsm.add_key(token, key);
        hsm
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// Runs one of SoftHSM's or OpenSC's tools on this token directory.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let output = Command::new(program)
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap_or_else(|e| panic!("{program} runs (apt: softhsm2 opensc): {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{program} {args:?}: {text}");
        text
    }

    pub fn add_token(&self, token: &str) {
        self.run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                token,
                "--so-pin",
                "12345678",
                "--pin",
                &self.pin,
            ],
        );
    }

    /// An AES-256 key labelled `label` on `token`, for encrypting and decrypting only, that
    /// never leaves the token.
    pub fn add_key(&self, token: &str, label: &str) {
        self.pkcs11_tool(
            token,
            &[
                "--keygen",
                "--key-type",
                "AES:32",
                "--usage-decrypt",
                "--sensitive",
                "--label",
                label,
            ],
        );
    }

    /// Destroys the key labelled `label` on `token`.
    pub fn delete_key(&self, token: &str, label: &str) {
        self.pkcs11_tool(
            token,
            &["--delete-object", "--type", "secrkey", "--label", label],
        );
    }

    /// OpenSC's `pkcs11-tool` on SoftHSM2's module, signed in to `token`.
    fn pkcs11_tool(&self, token: &str, args: &[&str]) {
        let mut all = vec![
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            token,
            "--login",
            "--pin",
            &self.pin,
        ];
        all.extend_from_slice(args);
        self.run("pkcs11-tool", &all);
    }

    /// The variables that give a process `key` on `token`: `COFFER_KMS`, the PIN file, and
    /// where SoftHSM finds its tokens.
    pub fn vars(&self, token: &str, key: &str) -> Vec<(String, String)> {
        self.vars_with_pin_file(token, key, &self.pin_file())
    }

    pub fn vars_with_pin_file(
        &self,
        token: &str,
        key: &str,
        pin_file: &Path,
    ) -> Vec<(String, String)> {
        vec![
            ("COFFER_KMS".into(), kms_uri(token, key, SOFTHSM_MODULE)),
            ("COFFER_KMS_PIN_FILE".into(), pin_file.display().to_string()),
            ("SOFTHSM2_CONF".into(), self.conf().display().to_string()),
        ]
    }
}

fn kms_uri(token: &str, key: &str, module: &str) -> String {
    format!(
        "pkcs11:token={};object={}?module-path={module}",
        crate::common::percent_encode(token),
        crate::common::percent_encode(key)
    )
}

/// A token of a [`SoftHsm`] served over a socket by p11-kit's server and reached through
/// p11-kit's client module, as a network HSM is through its vendor's: the test stops the
/// server and starts it again. p11-kit 0.25 or later (0.24 does not carry AES-GCM's
/// parameters): `.ci/run` builds it from Debian's source into `~/.cache/coffer`.
pub struct NetworkHsm<'a> {
    hsm: &'a SoftHsm,
    token: String,
    socket: PathBuf,
    server: std::sync::Mutex<Option<std::process::Child>>,
}

impl<'a> NetworkHsm<'a> {
    pub async fn serve(hsm: &'a SoftHsm, token: &str) -> Self {
        let server = Self {
            hsm,
            token: token.to_owned(),
            socket: hsm.dir.path().join("p11-kit.socket"),
            server: std::sync::Mutex::default(),
        };
        server.restore().await;
        server
    }

    /// A file of the p11-kit 0.25 that `.ci/run`'s `ensure_p11kit` builds.
    fn p11_kit(path: &str) -> String {
        let path = format!(
            "{}/.cache/coffer/p11-kit-0.25.5/{path}",
            std::env::var("HOME").unwrap_or_default()
        );
        assert!(
            Path::new(&path).exists(),
            "{path} is missing: p11-kit 0.25 (.ci/run's ensure_p11kit builds it)"
        );
        path
    }

    /// The variables that give a process `key` on the served token.
    pub fn vars(&self, key: &str) -> Vec<(String, String)> {
        vec![
            (
                "COFFER_KMS".into(),
                kms_uri(
                    &self.token,
                    key,
                    &Self::p11_kit("lib/pkcs11/p11-kit-client.so"),
                ),
            ),
            (
                "COFFER_KMS_PIN_FILE".into(),
                self.hsm.pin_file().display().to_string(),
            ),
            (
                "P11_KIT_SERVER_ADDRESS".into(),
                format!("unix:path={}", self.socket.display()),
            ),
        ]
    }
}

impl Outage for NetworkHsm<'_> {
    /// Kills the server: the client module's connection breaks, and new ones are refused.
    async fn cut(&self) {
        let server = self.server.lock().expect("server").take();
        if let Some(server) = server {
            kill_group(server);
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts the server again on the same socket, and waits until it listens.
    async fn restore(&self) {
        let child = Command::new(Self::p11_kit("libexec/p11-kit/p11-kit-server"))
            .args(["-f", "-n"])
            .arg(&self.socket)
            .args(["--provider", SOFTHSM_MODULE])
            .arg(format!(
                "pkcs11:token={}",
                crate::common::percent_encode(&self.token)
            ))
            .env("SOFTHSM2_CONF", self.hsm.conf())
            // A group of its own: the server forks a child per connection, killed with it.
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("p11-kit's server runs");
        *self.server.lock().expect("server") = Some(child);
        let socket = self.socket.clone();
        crate::common::eventually(
            "p11-kit's server listening",
            std::time::Duration::from_secs(30),
            || {
                let socket = socket.clone();
                async move {
                    std::os::unix::net::UnixStream::connect(&socket)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await;
    }
}

impl Drop for NetworkHsm<'_> {
    fn drop(&mut self) {
        if let Ok(Some(server)) = self.server.get_mut().map(Option::take) {
            kill_group(server);
        }
    }
}

/// Kills p11-kit's server and the child it forked for each connection (its process group).
fn kill_group(mut server: std::process::Child) {
    let group = format!("-{}", server.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = server.wait();
}

/// What an outage test takes away and gives back: the network to a KMS, or an HSM's server.
pub trait Outage {
    async fn cut(&self);
    async fn restore(&self);
}

/// A fresh symmetric key in the KMS of the S3-compatible server (moto), and the variables that
/// give a process that key.
pub async fn aws_kms_key() -> (String, Vec<(String, String)>) {
    let arn = create_aws_key(&crate::common::s3_endpoint()).await;
    let vars = vars_for_aws_key(&arn);
    (arn, vars)
}

/// A fresh symmetric key in the KMS at `endpoint`; its ARN.
pub async fn create_aws_key(endpoint: &str) -> String {
    let key = moto_kms(endpoint)
        .create_key()
        .description("coffer test")
        .send()
        .await
        .expect("moto's KMS creates a key (COFFER_TEST_S3)");
    key.key_metadata()
        .and_then(|m| m.arn())
        .expect("an ARN")
        .to_owned()
}

/// Disables a key of moto's KMS (as an operator might by mistake).
pub async fn disable_aws_key(arn: &str) {
    // moto finds the key by its id only (AWS takes the ARN too).
    let id = arn.rsplit_once("key/").map_or(arn, |(_, id)| id);
    moto_kms(&crate::common::s3_endpoint())
        .disable_key()
        .key_id(id)
        .send()
        .await
        .expect("moto's KMS disables the key");
}

fn moto_kms(endpoint: &str) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "coffer-test",
            "coffer-test-secret",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

pub fn vars_for_aws_key(key: &str) -> Vec<(String, String)> {
    vars_for_aws_key_at(key, &crate::common::s3_endpoint())
}

/// The same, reaching the KMS at `endpoint` (a [`Relay`] to it).
pub fn vars_for_aws_key_at(key: &str, endpoint: &str) -> Vec<(String, String)> {
    vec![
        (
            "COFFER_KMS".into(),
            format!("aws-kms:{key}?region=us-east-1&endpoint={endpoint}"),
        ),
        ("AWS_ACCESS_KEY_ID".into(), "coffer-test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "coffer-test-secret".into()),
    ]
}

/// `vars` with `extra` set (replacing what they set already).
pub fn with(vars: &[(String, String)], extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .cloned()
        .collect();
    all.extend_from_slice(extra);
    all
}

/// The network between Coffer and its KMS, which the test cuts and restores: a TCP relay to the
/// KMS. Cut, it refuses connections and drops the open ones, as a KMS that went away does.
pub struct Relay {
    addr: std::net::SocketAddr,
    target: String,
    serving: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Relay {
    /// A relay to the S3-compatible server's KMS.
    pub async fn to_kms() -> Self {
        let target = crate::common::s3_endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the relay");
        let addr = listener.local_addr().expect("its address");
        let relay = Self {
            addr,
            target,
            serving: std::sync::Mutex::default(),
        };
        relay.serve(listener);
        relay
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target.clone();
        let task = tokio::spawn(async move {
            // Dropped with this task: every connection it relays ends with it.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.serving.lock().expect("relay") = Some(task);
    }
}

impl Outage for Relay {
    /// Stops listening and drops every open connection.
    async fn cut(&self) {
        let task = self.serving.lock().expect("relay").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same address.
    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("the relay's address again");
        self.serve(listener);
    }
}

/// A moto server of the test's own that checks credentials (`INITIAL_NO_AUTH_ACTION_COUNT`):
/// its first request goes unchecked (the one that makes the key), every later one must be
/// signed by credentials it knows, which none of the tests' are. Killed on drop.
pub struct StrictKms {
    child: std::process::Child,
    pub endpoint: String,
}

impl StrictKms {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server runs (pip install 'moto[server]')");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        crate::common::eventually(
            "moto listening",
            std::time::Duration::from_secs(60),
            || async {
                // A GET is not an action: it spends none of the unchecked requests.
                http.get(format!("{endpoint}/moto-api/"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )
        .await;
        Self { child, endpoint }
    }
}

impl Drop for StrictKms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
