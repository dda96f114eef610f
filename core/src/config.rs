//! Configuration: one typed struct, read once from the environment and validated at start-up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::types::EmailAddress;

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
    pub max_upload_bytes: u64,
    pub allowed_types: Vec<String>,
    pub clamav_addr: Option<String>,
    pub admin: Option<AdminBootstrap>,
    pub session_ttl: Duration,
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

    /// Reads `COFFER_*` variables from any source (tests pass their own).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut vars: HashMap<String, String> = vars
            .into_iter()
            .filter(|(k, v)| (k.starts_with("COFFER_") || k.starts_with("AWS_")) && !v.is_empty())
            .collect();
        read_secret_files(&mut vars)?;
        let mut aws: Vec<(String, String)> = vars
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        aws.sort();
        let get = |name: &str| vars.get(name).map(String::as_str);

        let bind: SocketAddr = parse_or(
            get("COFFER_BIND"),
            "127.0.0.1:8080",
            "COFFER_BIND",
            "a socket address such as 127.0.0.1:8080",
        )?;
        let metrics_bind = get("COFFER_METRICS_BIND")
            .map(|v| {
                v.parse::<SocketAddr>().map_err(|_| {
                    bad(
                        "COFFER_METRICS_BIND",
                        "a socket address such as 0.0.0.0:9090",
                    )
                })
            })
            .transpose()?;
        let metrics_token = match get("COFFER_METRICS_TOKEN").filter(|t| !t.is_empty()) {
            Some(token) if token.len() < 16 => {
                return Err(bad(
                    "COFFER_METRICS_TOKEN",
                    "a token of at least 16 characters (e.g. `openssl rand -hex 32`)",
                ));
            }
            token => token.map(|t| secrecy::SecretString::from(t.to_owned())),
        };
        let public_url = match get("COFFER_PUBLIC_URL") {
            Some(v) => Url::parse(v)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| bad("COFFER_PUBLIC_URL", "an http:// or https:// URL"))?,
            // Links in emails and cookie flags follow the public URL: on any address but
            // loopback it cannot be guessed (`http://0.0.0.0:8080/s/…` reaches nobody).
            None if !bind.ip().is_loopback() => {
                return Err(bad(
                    "COFFER_PUBLIC_URL",
                    format!(
                        "the address people reach Coffer at, such as https://files.example.org: it is required when COFFER_BIND ({bind}) is not a loopback address"
                    ),
                ));
            }
            None => Url::parse(&format!("http://{bind}"))
                .map_err(|_| bad("COFFER_BIND", "a socket address"))?,
        };
        let data_dir = PathBuf::from(get("COFFER_DATA_DIR").unwrap_or("./data"));
        let database_url = match get("COFFER_DATABASE_URL") {
            Some(v)
                if v.starts_with("sqlite:")
                    || v.starts_with("postgres://")
                    || v.starts_with("postgresql://") =>
            {
                v.to_owned()
            }
            Some(_) => return Err(bad("COFFER_DATABASE_URL", "a sqlite:// or postgres:// URL")),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("coffer.db").display()),
        };
        let redis_url = match get("COFFER_REDIS_URL") {
            Some(v) if v.starts_with("redis://") || v.starts_with("rediss://") => {
                Some(v.to_owned())
            }
            Some(_) => return Err(bad("COFFER_REDIS_URL", "a redis:// or rediss:// URL")),
            None => None,
        };
        let redis_namespace = get("COFFER_REDIS_NAMESPACE").unwrap_or("coffer").to_owned();
        if !redis_namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
        {
            return Err(bad("COFFER_REDIS_NAMESPACE", "letters, digits and - _ : ."));
        }
        let storage_url = match get("COFFER_STORAGE_URL") {
            Some(v) => Url::parse(v)
                .ok()
                .filter(|u| matches!(u.scheme(), "file" | "s3"))
                .ok_or_else(|| {
                    bad(
                        "COFFER_STORAGE_URL",
                        "a file:///absolute/path or s3://bucket/prefix URL",
                    )
                })?,
            None => {
                let dir = absolute(&data_dir.join("blobs"));
                Url::from_directory_path(&dir)
                    .map_err(|()| bad("COFFER_DATA_DIR", "a directory path"))?
            }
        };
        let smtp_url = match get("COFFER_SMTP_URL") {
            Some(v) => Some(
                Url::parse(v)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "smtp" | "smtps"))
                    .ok_or_else(|| {
                        bad(
                            "COFFER_SMTP_URL",
                            "an smtp://host:port or smtps://user:pass@host URL",
                        )
                    })?,
            ),
            None => None,
        };
        let mail_from = get("COFFER_MAIL_FROM")
            .unwrap_or("Coffer <coffer@localhost>")
            .to_owned();
        if mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(
                "COFFER_MAIL_FROM",
                "a mailbox such as `Coffer <coffer@example.org>`",
            ));
        }
        let master_keys = match (get("COFFER_MASTER_KEYS"), get("COFFER_MASTER_KEYS_FILE")) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "COFFER_MASTER_KEYS",
                    "set either COFFER_MASTER_KEYS or COFFER_MASTER_KEYS_FILE, not both",
                ));
            }
            (Some(keys), None) => MasterKeySource::Inline(SecretString::from(keys.to_owned())),
            (None, Some(path)) => MasterKeySource::File(PathBuf::from(path)),
            (None, None) => MasterKeySource::DataDir,
        };
        let max_upload_bytes = parse_or(
            get("COFFER_MAX_UPLOAD_BYTES"),
            "2147483648",
            "COFFER_MAX_UPLOAD_BYTES",
            "a positive number of bytes",
        )
        .and_then(|n: u64| {
            if n > 0 {
                Ok(n)
            } else {
                Err(bad("COFFER_MAX_UPLOAD_BYTES", "a positive number of bytes"))
            }
        })?;
        let allowed_types = match get("COFFER_ALLOWED_TYPES") {
            Some(list) => {
                let types: Vec<String> = list
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .filter(|t| !t.is_empty())
                    .collect();
                if types.is_empty() || types.iter().any(|t| t.split('/').count() != 2) {
                    return Err(bad(
                        "COFFER_ALLOWED_TYPES",
                        "a comma-separated list of MIME types such as application/pdf,image/png",
                    ));
                }
                types
            }
            None => DEFAULT_ALLOWED_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        };
        let clamav_addr = get("COFFER_CLAMAV_ADDR").map(str::to_owned);
        let admin = match (get("COFFER_ADMIN_EMAIL"), get("COFFER_ADMIN_PASSWORD")) {
            (None, None) => None,
            (Some(email), Some(password)) => Some(AdminBootstrap {
                email: EmailAddress::parse(email)
                    .map_err(|_| bad("COFFER_ADMIN_EMAIL", "an email address"))?,
                password: SecretString::from(password.to_owned()),
            }),
            (Some(_), None) => {
                return Err(bad(
                    "COFFER_ADMIN_PASSWORD",
                    "set together with COFFER_ADMIN_EMAIL",
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "COFFER_ADMIN_EMAIL",
                    "set together with COFFER_ADMIN_PASSWORD",
                ));
            }
        };
        let signups_per_hour = parse_or::<u32>(
            get("COFFER_SIGNUPS_PER_HOUR"),
            "20",
            "COFFER_SIGNUPS_PER_HOUR",
            "a number of sign-ups",
        )?;
        let signup = get("COFFER_SIGNUP")
            .map(|raw| {
                crate::types::SignupPolicy::parse(raw).map_err(|e| bad("COFFER_SIGNUP", &e.0))
            })
            .transpose()?;
        let share_emails_per_day = parse_or::<u32>(
            get("COFFER_SHARE_EMAILS_PER_DAY"),
            "200",
            "COFFER_SHARE_EMAILS_PER_DAY",
            "a number of emails",
        )?;
        let trusted_proxies = crate::client::parse_networks(
            get("COFFER_TRUSTED_PROXIES").unwrap_or(""),
        )
        .ok_or_else(|| {
            bad(
                "COFFER_TRUSTED_PROXIES",
                "comma-separated networks or addresses, such as 10.0.0.0/8,192.0.2.7",
            )
        })?;
        let audit_repeat_window = parse_duration(
            get("COFFER_AUDIT_REPEAT_WINDOW").unwrap_or("10m"),
        )
        .ok_or_else(|| {
            bad(
                "COFFER_AUDIT_REPEAT_WINDOW",
                "a duration such as 10m, 1h or 30s",
            )
        })?;
        let audit_checkpoint_interval =
            parse_duration(get("COFFER_AUDIT_CHECKPOINT_INTERVAL").unwrap_or("1m"))
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| {
                    bad(
                        "COFFER_AUDIT_CHECKPOINT_INTERVAL",
                        "a duration of at least 1s, such as 1m or 30s",
                    )
                })?;
        let session_ttl = Duration::from_secs(
            60 * 60
                * parse_or::<u64>(
                    get("COFFER_SESSION_TTL_HOURS"),
                    "12",
                    "COFFER_SESSION_TTL_HOURS",
                    "a number of hours",
                )?,
        );
        let share_max_ttl = parse_duration(get("COFFER_SHARE_MAX_TTL").unwrap_or("7d"))
            .ok_or_else(|| bad("COFFER_SHARE_MAX_TTL", "a duration such as 7d, 48h or 90m"))?;
        let stuck_after = Duration::from_secs(parse_or(
            get("COFFER_SWEEP_STUCK_AFTER_SECS"),
            "120",
            "COFFER_SWEEP_STUCK_AFTER_SECS",
            "a number of seconds",
        )?);
        let job_max_attempts = parse_or::<u32>(
            get("COFFER_JOB_MAX_ATTEMPTS"),
            "30",
            "COFFER_JOB_MAX_ATTEMPTS",
            "a number of runs (at least 1)",
        )?;
        if job_max_attempts == 0 {
            return Err(bad(
                "COFFER_JOB_MAX_ATTEMPTS",
                "a number of runs (at least 1)",
            ));
        }
        let processing_deadline = parse_duration(
            get("COFFER_PROCESSING_DEADLINE").unwrap_or("24h"),
        )
        .ok_or_else(|| {
            bad(
                "COFFER_PROCESSING_DEADLINE",
                "a duration such as 24h, 90m or 2d",
            )
        })?;
        let sweep_interval = Duration::from_secs(
            parse_or::<u64>(
                get("COFFER_SWEEP_INTERVAL_SECS"),
                "60",
                "COFFER_SWEEP_INTERVAL_SECS",
                "a number of seconds",
            )?
            .max(1),
        );
        let poll_interval = Duration::from_millis(
            parse_or::<u64>(
                get("COFFER_POLL_INTERVAL_MS"),
                "50",
                "COFFER_POLL_INTERVAL_MS",
                "a number of milliseconds",
            )?
            .max(1),
        );

        let orphan_grace = Duration::from_secs(
            parse_or::<u64>(
                get("COFFER_ORPHAN_GRACE_SECS"),
                "3600",
                "COFFER_ORPHAN_GRACE_SECS",
                "a number of seconds",
            )?
            .max(1),
        );

        // 4 parameters per key must stay under SQLite's 32,766 per statement.
        let rewrap_batch = parse_or::<u64>(
            get("COFFER_REWRAP_BATCH"),
            "5000",
            "COFFER_REWRAP_BATCH",
            "a number of keys from 1 to 8000",
        )
        .ok()
        .filter(|n| (1..=8000).contains(n))
        .ok_or_else(|| bad("COFFER_REWRAP_BATCH", "a number of keys from 1 to 8000"))?;
        Ok(Self {
            bind,
            metrics_bind,
            metrics_token,
            public_url_set: vars.contains_key("COFFER_PUBLIC_URL"),
            public_url,
            data_dir,
            database_url,
            redis_url,
            redis_namespace,
            storage_url,
            smtp_url,
            mail_from,
            master_keys,
            max_upload_bytes,
            allowed_types,
            clamav_addr,
            admin,
            session_ttl,
            signups_per_hour,
            share_emails_per_day,
            signup,
            audit_repeat_window,
            audit_checkpoint_interval,
            trusted_proxies,
            share_max_ttl,
            stuck_after,
            job_max_attempts,
            processing_deadline,
            sweep_interval,
            orphan_grace,
            poll_interval,
            rewrap_batch,
            aws,
        })
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

/// Settings that hold a credential may come from a file instead (`{NAME}_FILE`, as Docker and
/// Kubernetes mount secrets): the file's content, less a trailing newline.
const SECRET_FILES: [(&str, &str); 7] = [
    ("COFFER_METRICS_TOKEN", "COFFER_METRICS_TOKEN_FILE"),
    ("COFFER_DATABASE_URL", "COFFER_DATABASE_URL_FILE"),
    ("COFFER_REDIS_URL", "COFFER_REDIS_URL_FILE"),
    ("COFFER_SMTP_URL", "COFFER_SMTP_URL_FILE"),
    ("COFFER_ADMIN_PASSWORD", "COFFER_ADMIN_PASSWORD_FILE"),
    ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID_FILE"),
    ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY_FILE"),
];

fn read_secret_files(vars: &mut HashMap<String, String>) -> Result<(), ConfigError> {
    for (name, file_var) in SECRET_FILES {
        let Some(path) = vars.remove(file_var) else {
            continue;
        };
        if vars.contains_key(name) {
            return Err(bad(
                file_var,
                format!("set either {name} or {file_var}, not both"),
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad(file_var, format!("a readable file ({path}: {e})")))?;
        let value = text.trim_end_matches(['\r', '\n']);
        if !value.is_empty() {
            vars.insert(name.to_owned(), value.to_owned());
        }
    }
    Ok(())
}

fn parse_or<T: std::str::FromStr>(
    value: Option<&str>,
    default: &str,
    var: &'static str,
    expected: &str,
) -> Result<T, ConfigError> {
    value
        .unwrap_or(default)
        .trim()
        .parse()
        .map_err(|_| bad(var, expected))
}

/// `90m`, `48h`, `7d` (a bare number is hours).
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "h"),
    };
    let n: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
