//! The environment as Coffer reads it: one typed struct, [`Settings`], with a field per
//! `COFFER_*` variable (`bind` is `COFFER_BIND`), its default, and what a value must look like,
//! deserialized by figment. A value that does not parse is refused in one line naming its
//! variable; the checks that need more than a type are `super::checks`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Deserialize;

use super::{ConfigError, bad};

/// Declares [`Settings`]: each field with its variable, its type, its default, and what the
/// variable takes (the line a refusal prints).
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident in $var:literal: $ty:ty = $default:expr,
        $expected:literal;
    )+) => {
        #[derive(Debug, Deserialize)]
        #[serde(default)]
        pub(super) struct Settings {
            $($(#[doc = $doc])* pub(super) $field: $ty,)+
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $($field: $default,)+ }
            }
        }

        /// Every field: its name, its variable, and what the variable takes.
        pub(super) const FIELDS: &[Field] = &[$(Field {
            name: stringify!($field),
            variable: $var,
            expected: $expected,
        },)+];
    };
}

settings! {
    bind in "COFFER_BIND": SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
        "a socket address such as 127.0.0.1:8080";
    metrics_bind in "COFFER_METRICS_BIND": Option<SocketAddr> = None,
        "a socket address such as 0.0.0.0:9090";
    metrics_token in "COFFER_METRICS_TOKEN": Option<String> = None,
        "a token of at least 16 characters (e.g. `openssl rand -hex 32`)";
    public_url in "COFFER_PUBLIC_URL": Option<String> = None,
        "an http:// or https:// URL";
    data_dir in "COFFER_DATA_DIR": PathBuf = PathBuf::from("./data"),
        "a directory path";
    database_url in "COFFER_DATABASE_URL": Option<String> = None,
        "a sqlite:// or postgres:// URL";
    redis_url in "COFFER_REDIS_URL": Option<String> = None,
        "a redis:// or rediss:// URL";
    redis_namespace in "COFFER_REDIS_NAMESPACE": String = "coffer".to_owned(),
        "letters, digits and - _ : .";
    storage_url in "COFFER_STORAGE_URL": Option<String> = None,
        "a file:///absolute/path or s3://bucket/prefix URL";
    smtp_url in "COFFER_SMTP_URL": Option<String> = None,
        "an smtp://host:port or smtps://user:pass@host URL";
    mail_from in "COFFER_MAIL_FROM": String = "Coffer <coffer@localhost>".to_owned(),
        "a mailbox such as `Coffer <coffer@example.org>`";
    master_keys in "COFFER_MASTER_KEYS": Option<String> = None,
        "version:base64key,… (see `coffer keys generate`)";
    master_keys_file in "COFFER_MASTER_KEYS_FILE": Option<PathBuf> = None,
        "a file path";
    kms in "COFFER_KMS": Option<String> = None,
        "pkcs11:token=…;object=…?module-path=… or aws-kms:<key ARN or alias/name>";
    kms_pin in "COFFER_KMS_PIN": Option<String> = None,
        "the PKCS#11 token's user PIN (better: COFFER_KMS_PIN_FILE)";
    max_upload_bytes in "COFFER_MAX_UPLOAD_BYTES": u64 = 2 << 30,
        "a positive number of bytes";
    allowed_types in "COFFER_ALLOWED_TYPES": Option<String> = None,
        "a comma-separated list of MIME types such as application/pdf,image/png";
    clamav_addr in "COFFER_CLAMAV_ADDR": Option<String> = None,
        "host:port of clamd";
    admin_email in "COFFER_ADMIN_EMAIL": Option<String> = None,
        "an email address";
    admin_password in "COFFER_ADMIN_PASSWORD": Option<String> = None,
        "a password";
    session_ttl_hours in "COFFER_SESSION_TTL_HOURS": u64 = 12,
        "a number of hours";
    session_idle_minutes in "COFFER_SESSION_IDLE_MINUTES": u64 = 30,
        "a number of minutes from 1 to 1440";
    require_mfa in "COFFER_REQUIRE_MFA": bool = false,
        "true or false";
    oidc_issuer in "COFFER_OIDC_ISSUER": Option<String> = None,
        "the provider's issuer URL, such as https://sso.example.org/realms/staff";
    oidc_client_id in "COFFER_OIDC_CLIENT_ID": Option<String> = None,
        "the client ID Coffer is registered under at the provider";
    oidc_client_secret in "COFFER_OIDC_CLIENT_SECRET": Option<String> = None,
        "the client's secret at the provider";
    oidc_scopes in "COFFER_OIDC_SCOPES": String = "openid email profile".to_owned(),
        "scopes separated by spaces or commas, such as openid email profile groups";
    oidc_provider_name in "COFFER_OIDC_PROVIDER_NAME": String = "SSO".to_owned(),
        "a name of at most 60 characters, such as Keycloak or Microsoft";
    oidc_jit in "COFFER_OIDC_JIT": bool = false,
        "true or false";
    oidc_role_claim in "COFFER_OIDC_ROLE_CLAIM": Option<String> = None,
        "a claim's name, such as groups or roles";
    oidc_admin_group in "COFFER_OIDC_ADMIN_GROUP": Option<String> = None,
        "the group or role whose members are admins";
    local_login in "COFFER_LOCAL_LOGIN": bool = true,
        "true or false";
    break_glass_admin in "COFFER_BREAK_GLASS_ADMIN": Option<String> = None,
        "an admin's email address";
    signups_per_hour in "COFFER_SIGNUPS_PER_HOUR": u32 = 20,
        "a number of sign-ups";
    signup in "COFFER_SIGNUP": Option<String> = None,
        "open, invite, or domains:a.org,b.org";
    share_emails_per_day in "COFFER_SHARE_EMAILS_PER_DAY": u32 = 200,
        "a number of emails";
    trusted_proxies in "COFFER_TRUSTED_PROXIES": String = String::new(),
        "comma-separated networks or addresses, such as 10.0.0.0/8,192.0.2.7";
    audit_repeat_window in "COFFER_AUDIT_REPEAT_WINDOW": Span = Span::secs(600),
        "a duration such as 10m, 1h or 30s";
    audit_checkpoint_interval in "COFFER_AUDIT_CHECKPOINT_INTERVAL": Span = Span::secs(60),
        "a duration of at least 1s, such as 1m or 30s";
    share_max_ttl in "COFFER_SHARE_MAX_TTL": Span = Span::secs(7 * 86_400),
        "a duration such as 7d, 48h or 90m";
    require_recipient_verification in "COFFER_REQUIRE_RECIPIENT_VERIFICATION": bool = false,
        "true or false";
    recipient_verification_ttl in "COFFER_RECIPIENT_VERIFICATION_TTL": Span = Span::secs(12 * 3600),
        "a duration of at least 1m, such as 12h, 30m or 7d";
    sweep_stuck_after_secs in "COFFER_SWEEP_STUCK_AFTER_SECS": u64 = 120,
        "a number of seconds";
    job_max_attempts in "COFFER_JOB_MAX_ATTEMPTS": u32 = 30,
        "a number of runs (at least 1)";
    processing_deadline in "COFFER_PROCESSING_DEADLINE": Span = Span::secs(86_400),
        "a duration such as 24h, 90m or 2d";
    sweep_interval_secs in "COFFER_SWEEP_INTERVAL_SECS": u64 = 60,
        "a number of seconds";
    poll_interval_ms in "COFFER_POLL_INTERVAL_MS": u64 = 50,
        "a number of milliseconds";
    orphan_grace_secs in "COFFER_ORPHAN_GRACE_SECS": u64 = 3600,
        "a number of seconds";
    rewrap_batch in "COFFER_REWRAP_BATCH": u64 = 5000,
        "a number of keys from 1 to 8000";
    reseal_after_validation in "COFFER_RESEAL_AFTER_VALIDATION": bool = false,
        "true or false";
    /// Read by the binary's logger, before the rest (`src/main.rs`).
    log in "COFFER_LOG": Option<String> = None,
        "a tracing env-filter";
    /// Likewise.
    log_format in "COFFER_LOG_FORMAT": Option<String> = None,
        "text or json";
}

/// One setting.
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) variable: &'static str,
    pub(super) expected: &'static str,
}

/// The field a variable sets.
fn field_of(variable: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.variable == variable)
}

/// A duration written `90m`, `48h`, `7d` or `45s` (a bare number is hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span(pub(super) Duration);

impl Span {
    const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(Span)
            .ok_or_else(|| serde::de::Error::custom("not a duration"))
    }
}

/// `90m`, `48h`, `7d` (a bare number is hours).
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
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

/// The variables, as given: every value a string (figment's own environment provider would
/// read `[…]` as a list and a password of digits as a number).
struct Variables(BTreeMap<String, String>);

impl Provider for Variables {
    fn metadata(&self) -> Metadata {
        Metadata::named("COFFER_* environment variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = self
            .0
            .iter()
            .filter_map(|(name, value)| {
                let field = field_of(name)?;
                Some((field.name.to_owned(), Value::from(value.clone())))
            })
            .collect();
        Ok(Profile::Default.collect(dict))
    }
}

/// What the environment gives.
pub(super) struct Read {
    pub(super) settings: Settings,
    /// The standard `AWS_*` variables, sorted.
    pub(super) aws: Vec<(String, String)>,
    /// Variables named `COFFER_*` that Coffer does not read, for a warning (a typo must not
    /// go unnoticed).
    pub(super) unknown: Vec<String>,
}

/// The settings `vars` give. Empty values count as unset; `_FILE` twins of credentials are
/// read.
pub(super) fn read(vars: impl IntoIterator<Item = (String, String)>) -> Result<Read, ConfigError> {
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
    let mut unknown: Vec<String> = vars
        .keys()
        .filter(|k| k.starts_with("COFFER_") && field_of(k).is_none())
        .cloned()
        .collect();
    unknown.sort();
    let known = vars
        .into_iter()
        .filter(|(k, _)| field_of(k).is_some())
        .collect();
    let settings = Figment::from(Variables(known))
        .extract_lossy::<Settings>()
        .map_err(refusal)?;
    Ok(Read {
        settings,
        aws,
        unknown,
    })
}

/// The first of figment's errors, as the one line naming its variable.
fn refusal(errors: figment::Error) -> ConfigError {
    let name = errors
        .into_iter()
        .next()
        .and_then(|e| e.path.first().cloned())
        .unwrap_or_default();
    match FIELDS.iter().find(|f| f.name == name) {
        Some(field) => bad(field.variable, field.expected),
        None => bad("COFFER_*", "a setting Coffer could not read"),
    }
}

/// Settings that hold a credential may come from a file instead (`{NAME}_FILE`, as Docker and
/// Kubernetes mount secrets): the file's content, less a trailing newline.
const SECRET_FILES: [(&str, &str); 9] = [
    ("COFFER_METRICS_TOKEN", "COFFER_METRICS_TOKEN_FILE"),
    ("COFFER_DATABASE_URL", "COFFER_DATABASE_URL_FILE"),
    ("COFFER_REDIS_URL", "COFFER_REDIS_URL_FILE"),
    ("COFFER_SMTP_URL", "COFFER_SMTP_URL_FILE"),
    ("COFFER_ADMIN_PASSWORD", "COFFER_ADMIN_PASSWORD_FILE"),
    ("COFFER_KMS_PIN", "COFFER_KMS_PIN_FILE"),
    (
        "COFFER_OIDC_CLIENT_SECRET",
        "COFFER_OIDC_CLIENT_SECRET_FILE",
    ),
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
