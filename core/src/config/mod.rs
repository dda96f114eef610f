//! Configuration: read once from the environment ([`settings`]: one typed struct, a field per
//! variable), checked ([`checks`]), and held as [`Config`] for the life of the process.

mod checks;
mod identity;
mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::types::EmailAddress;

pub use identity::{Identity, OidcConfig, PasswordUse, RoleMapping};

/// Default allowlist: documents, images, archives and media; nothing executable.
pub const DEFAULT_ALLOWED_TYPES: &[&str] = &[
    "application/pdf",
    "text/plain",
    "application/rtf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/epub+zip",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/tiff",
    "image/bmp",
    "image/heif",
    "image/avif",
    "application/dicom",
    "application/zip",
    "application/gzip",
    "application/x-tar",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-xz",
    "application/x-bzip2",
    "application/zstd",
    "audio/mpeg",
    "audio/x-wav",
    "audio/ogg",
    "audio/x-flac",
    "audio/m4a",
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/x-msvideo",
];

#[derive(Debug, Clone)]
pub enum MasterKeySource {
    Inline(SecretString),
    File(PathBuf),
    /// Generate (or reuse) `{data_dir}/keyring` — the embedded default.
    DataDir,
    /// Wrapped by an HSM or KMS, kept wrapped in the database (`COFFER_KMS`).
    Kms(crate::crypto::kms::KmsSpec),
}

#[derive(Debug, Clone)]
pub struct AdminBootstrap {
    pub email: EmailAddress,
    pub password: SecretString,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    /// Where a process without the API (`coffer worker`) serves `/healthz`, `/readyz` and
    /// `/metrics`; unset: nowhere.
    pub metrics_bind: Option<SocketAddr>,
    /// The bearer token that opens `/metrics` on the public listener (`COFFER_METRICS_TOKEN`);
    /// without one, metrics are served on `COFFER_METRICS_BIND` only.
    pub metrics_token: Option<secrecy::SecretString>,
    pub public_url: Url,
    /// Whether `public_url` was given, rather than derived from `bind`.
    pub public_url_set: bool,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: Option<String>,
    /// Key prefix of every Redis key Coffer writes (queues included).
    pub redis_namespace: String,
    pub storage_url: Url,
    pub smtp_url: Option<Url>,
    pub mail_from: String,
    pub master_keys: MasterKeySource,
    /// The PKCS#11 token's PIN (`COFFER_KMS_PIN(_FILE)`), for `COFFER_KMS` or
    /// `coffer keys migrate --to pkcs11:…`.
    pub kms_pin: Option<SecretString>,
    pub max_upload_bytes: u64,
    pub allowed_types: Vec<String>,
    pub clamav_addr: Option<String>,
    pub admin: Option<AdminBootstrap>,
    pub session_ttl: Duration,
    /// A session unused this long ends (`COFFER_SESSION_IDLE_MINUTES`).
    pub session_idle: Duration,
    /// Every local account must have a second factor (`COFFER_REQUIRE_MFA`): a session without
    /// one may only set it up.
    pub require_mfa: bool,
    /// Single sign-on, local passwords, the break-glass admin.
    pub identity: Identity,
    /// Sign-ups one client address may make per hour (`COFFER_SIGNUPS_PER_HOUR`).
    pub signups_per_hour: u32,
    /// Who may sign up, when `COFFER_SIGNUP` fixes it (else the admin's setting decides).
    pub signup: Option<crate::types::SignupPolicy>,
    /// Share emails (recipients) one account may send per day (`COFFER_SHARE_EMAILS_PER_DAY`).
    pub share_emails_per_day: u32,
    /// Proxies whose `Forwarded`/`X-Forwarded-For` headers name the client
    /// (`COFFER_TRUSTED_PROXIES`); nobody else's are read.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The window in which anonymous audit events of one kind beyond the first few are counted
    /// instead of recorded one by one (`COFFER_AUDIT_REPEAT_WINDOW`).
    pub audit_repeat_window: Duration,
    /// Longest time between two signed checkpoints of the audit chain while it grows
    /// (`COFFER_AUDIT_CHECKPOINT_INTERVAL`).
    pub audit_checkpoint_interval: Duration,
    /// Longest lifetime a share link may be given.
    pub share_max_ttl: Duration,
    /// Every share's recipient must prove the address the link was sent to before
    /// downloading (`COFFER_REQUIRE_RECIPIENT_VERIFICATION`), whatever the share asks.
    pub require_recipient_verification: bool,
    /// How long a browser that proved it stays verified for one link
    /// (`COFFER_RECIPIENT_VERIFICATION_TTL`; never past the link's expiry).
    pub recipient_verification_ttl: Duration,
    /// A file left this long in `quarantined` or `validated` is re-enqueued by the sweep.
    pub stuck_after: Duration,
    /// Runs of validate and encrypt a file may take before it is rejected as unprocessable
    /// (`COFFER_JOB_MAX_ATTEMPTS`).
    pub job_max_attempts: u32,
    /// A file not ready this long after its upload is rejected, however few its attempts
    /// (`COFFER_PROCESSING_DEADLINE`).
    pub processing_deadline: Duration,
    pub sweep_interval: Duration,
    /// Stored objects that no file needs any more are looked for this often, and an object or
    /// partial write that no file row explains yet is removed once it is this old (longer than
    /// an upload may pause).
    pub orphan_grace: Duration,
    /// How often idle workers look for new jobs.
    pub poll_interval: Duration,
    /// Keys rewrapped per transaction during a rotation.
    pub rewrap_batch: u64,
    /// Whether the encrypt job re-seals a validated upload under a fresh data key instead of
    /// keeping the object and key it was sealed under in quarantine (`docs/SECURITY.md`).
    pub reseal_after_validation: bool,
    /// The standard `AWS_*` variables, for S3 storage (read with the rest, not from the
    /// process environment at use).
    pub aws: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {expected}")]
pub struct ConfigError {
    pub var: &'static str,
    pub expected: String,
}

fn bad(var: &'static str, expected: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        expected: expected.into(),
    }
}

impl Config {
    /// `path` (with its query) under `COFFER_PUBLIC_URL`: what links in emails point to.
    pub fn public_link(&self, path: &str) -> String {
        format!("{}{path}", self.public_url.as_str().trim_end_matches('/'))
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads `COFFER_*` (and `AWS_*`) variables from any source (tests pass their own).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let read = settings::read(vars)?;
        if !read.unknown.is_empty() {
            tracing::warn!(variables = %read.unknown.join(", "), "these variables are not settings of this version of Coffer (a typo?); README lists them");
        }
        read.settings.check(read.aws)
    }

    /// Records the address actually bound (port 0 picks one); a derived public URL follows it.
    pub fn bound_to(&mut self, addr: SocketAddr) {
        self.bind = addr;
        if !self.public_url_set
            && let Ok(url) = Url::parse(&format!("http://{addr}"))
        {
            self.public_url = url;
        }
    }

    /// Work last touched before this instant is considered abandoned (`stuck_after` ago).
    pub fn stuck_before(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        now - chrono::Duration::from_std(self.stuck_after).unwrap_or(chrono::Duration::minutes(2))
    }

    pub fn is_embedded_database(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

#[cfg(test)]
mod tests;
