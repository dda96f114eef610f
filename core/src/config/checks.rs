//! What [`Settings`] must also meet beyond their types: schemes, ranges, lengths, and settings
//! that go together. Each refusal is one line naming its variable.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::settings::Settings;
use super::{AdminBootstrap, Config, ConfigError, DEFAULT_ALLOWED_TYPES, MasterKeySource, bad};
use crate::crypto::kms::KmsSpec;
use crate::types::EmailAddress;

impl Settings {
    /// The configuration these settings make, with the `AWS_*` variables for S3.
    pub(super) fn check(mut self, aws: Vec<(String, String)>) -> Result<Config, ConfigError> {
        let admin_email = self
            .admin_email
            .as_deref()
            .and_then(|e| EmailAddress::parse(e).ok());
        let identity = self.identity(admin_email.as_ref())?;
        let bind = self.bind;
        let metrics_token = match self.metrics_token {
            Some(token) if token.len() < 16 => {
                return Err(bad(
                    "COFFER_METRICS_TOKEN",
                    "a token of at least 16 characters (e.g. `openssl rand -hex 32`)",
                ));
            }
            token => token.map(SecretString::from),
        };
        let public_url_set = self.public_url.is_some();
        let public_url = match self.public_url {
            Some(v) => url_of(&v, &["http", "https"])
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
        let data_dir = self.data_dir;
        let database_url = match self.database_url {
            Some(v)
                if v.starts_with("sqlite:")
                    || v.starts_with("postgres://")
                    || v.starts_with("postgresql://") =>
            {
                v
            }
            Some(_) => return Err(bad("COFFER_DATABASE_URL", "a sqlite:// or postgres:// URL")),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("coffer.db").display()),
        };
        let redis_url = match self.redis_url {
            Some(v) if v.starts_with("redis://") || v.starts_with("rediss://") => Some(v),
            Some(_) => return Err(bad("COFFER_REDIS_URL", "a redis:// or rediss:// URL")),
            None => None,
        };
        if !self
            .redis_namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
        {
            return Err(bad("COFFER_REDIS_NAMESPACE", "letters, digits and - _ : ."));
        }
        let storage_url = match self.storage_url {
            Some(v) => url_of(&v, &["file", "s3"]).ok_or_else(|| {
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
        let smtp_url = match self.smtp_url {
            Some(v) => Some(url_of(&v, &["smtp", "smtps"]).ok_or_else(|| {
                bad(
                    "COFFER_SMTP_URL",
                    "an smtp://host:port or smtps://user:pass@host URL",
                )
            })?),
            None => None,
        };
        if self.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(
                "COFFER_MAIL_FROM",
                "a mailbox such as `Coffer <coffer@example.org>`",
            ));
        }
        // Also read without COFFER_KMS: `coffer keys migrate --to pkcs11:…` signs in with it.
        let kms_pin = self.kms_pin.map(SecretString::from);
        let master_keys = match (self.master_keys, self.master_keys_file, self.kms) {
            (Some(_), Some(_), _) => {
                return Err(bad(
                    "COFFER_MASTER_KEYS",
                    "set either COFFER_MASTER_KEYS or COFFER_MASTER_KEYS_FILE, not both",
                ));
            }
            (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
                return Err(bad(
                    "COFFER_KMS",
                    "set either COFFER_KMS or a keyring (COFFER_MASTER_KEYS, COFFER_MASTER_KEYS_FILE), not both: `coffer keys migrate --to …` moves the keys from one to the other",
                ));
            }
            (None, None, Some(kms)) => MasterKeySource::Kms(
                KmsSpec::parse(&kms, kms_pin.clone())
                    .map_err(|detail| bad("COFFER_KMS", detail))?,
            ),
            (Some(keys), None, None) => MasterKeySource::Inline(SecretString::from(keys)),
            (None, Some(path), None) => MasterKeySource::File(path),
            (None, None, None) => MasterKeySource::DataDir,
        };
        if self.max_upload_bytes == 0 {
            return Err(bad("COFFER_MAX_UPLOAD_BYTES", "a positive number of bytes"));
        }
        let allowed_types = match self.allowed_types {
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
        let admin = match (self.admin_email.take(), self.admin_password.take()) {
            (None, None) => None,
            (Some(email), Some(password)) => Some(AdminBootstrap {
                email: EmailAddress::parse(&email)
                    .map_err(|_| bad("COFFER_ADMIN_EMAIL", "an email address"))?,
                password: SecretString::from(password),
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
        let signup = self
            .signup
            .map(|raw| {
                crate::types::SignupPolicy::parse(&raw).map_err(|e| bad("COFFER_SIGNUP", &e.0))
            })
            .transpose()?;
        let trusted_proxies =
            crate::client::parse_networks(&self.trusted_proxies).ok_or_else(|| {
                bad(
                    "COFFER_TRUSTED_PROXIES",
                    "comma-separated networks or addresses, such as 10.0.0.0/8,192.0.2.7",
                )
            })?;
        if self.audit_checkpoint_interval.0 < Duration::from_secs(1) {
            return Err(bad(
                "COFFER_AUDIT_CHECKPOINT_INTERVAL",
                "a duration of at least 1s, such as 1m or 30s",
            ));
        }
        let recipient_verification_ttl = self.recipient_verification_ttl.0;
        if recipient_verification_ttl < Duration::from_secs(60) {
            return Err(bad(
                "COFFER_RECIPIENT_VERIFICATION_TTL",
                "a duration of at least 1m, such as 12h, 30m or 7d",
            ));
        }
        if self.job_max_attempts == 0 {
            return Err(bad(
                "COFFER_JOB_MAX_ATTEMPTS",
                "a number of runs (at least 1)",
            ));
        }
        // 4 parameters per key must stay under SQLite's 32,766 per statement.
        if !(1..=8000).contains(&self.rewrap_batch) {
            return Err(bad(
                "COFFER_REWRAP_BATCH",
                "a number of keys from 1 to 8000",
            ));
        }
        if !(1..=1440).contains(&self.session_idle_minutes) {
            return Err(bad(
                "COFFER_SESSION_IDLE_MINUTES",
                "a number of minutes from 1 to 1440",
            ));
        }
        Ok(Config {
            bind,
            metrics_bind: self.metrics_bind,
            metrics_token,
            public_url_set,
            public_url,
            data_dir,
            database_url,
            redis_url,
            redis_namespace: self.redis_namespace,
            storage_url,
            smtp_url,
            mail_from: self.mail_from,
            master_keys,
            kms_pin,
            max_upload_bytes: self.max_upload_bytes,
            allowed_types,
            clamav_addr: self.clamav_addr,
            admin,
            session_ttl: Duration::from_secs(self.session_ttl_hours.saturating_mul(3600)),
            session_idle: Duration::from_secs(self.session_idle_minutes * 60),
            require_mfa: self.require_mfa,
            identity,
            signups_per_hour: self.signups_per_hour,
            share_emails_per_day: self.share_emails_per_day,
            signup,
            audit_repeat_window: self.audit_repeat_window.0,
            audit_checkpoint_interval: self.audit_checkpoint_interval.0,
            trusted_proxies,
            share_max_ttl: self.share_max_ttl.0,
            require_recipient_verification: self.require_recipient_verification,
            recipient_verification_ttl,
            stuck_after: Duration::from_secs(self.sweep_stuck_after_secs),
            job_max_attempts: self.job_max_attempts,
            processing_deadline: self.processing_deadline.0,
            sweep_interval: Duration::from_secs(self.sweep_interval_secs.max(1)),
            orphan_grace: Duration::from_secs(self.orphan_grace_secs.max(1)),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(1)),
            rewrap_batch: self.rewrap_batch,
            reseal_after_validation: self.reseal_after_validation,
            aws,
        })
    }
}

/// `text` as a URL of one of `schemes`.
fn url_of(text: &str, schemes: &[&str]) -> Option<Url> {
    Url::parse(text)
        .ok()
        .filter(|u| schemes.contains(&u.scheme()))
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
