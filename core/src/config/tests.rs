//! Tests of the configuration: parsing, refusals, and the README's table of variables.

use super::settings::{FIELDS, parse_duration};
use super::*;

/// The `COFFER_*` names in `text`, in order of appearance.
fn names(text: &str) -> Vec<String> {
    text.match_indices("COFFER_")
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        // A prefix alone (`"COFFER_"`) names no variable.
        .filter(|name| !name.ends_with('_'))
        .collect()
}

/// Every variable the code reads is in the README's table (a `_FILE` twin of a credential
/// is covered by the sentence that lists them), and every row of the table is read.
#[test]
fn the_readme_table_lists_every_variable_and_no_other() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Configuration section");
    let mut table = std::collections::BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `COFFER_")) {
        let first = row.split('|').nth(1).unwrap_or_default();
        let mut last = String::new();
        for cell in first.split('`').skip(1).step_by(2) {
            let name = if cell == "_FILE" {
                format!("{last}_FILE")
            } else {
                cell.to_owned()
            };
            last.clone_from(&name);
            table.insert(name);
        }
    }
    let as_files = readme
        .split("may be given as a file")
        .next()
        .and_then(|before| before.rsplit("that hold a credential").next())
        .map(names)
        .unwrap_or_default();
    let read: std::collections::BTreeSet<String> = FIELDS
        .iter()
        .map(|f| f.variable.to_owned())
        .chain(names(include_str!("settings.rs")))
        .chain(names(include_str!("../../../src/main.rs")))
        .collect();
    for name in &read {
        let file_twin = name
            .strip_suffix("_FILE")
            .is_some_and(|base| as_files.iter().any(|n| n == base));
        assert!(
            table.contains(name) || file_twin,
            "{name} is read but not in the README's Configuration table"
        );
    }
    for name in &table {
        assert!(
            read.contains(name),
            "README lists {name}, which nothing reads"
        );
    }
    assert!(table.len() > 30, "{table:?}");
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_are_embedded() {
    let config = Config::from_vars(vars(&[])).expect("defaults");
    assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(config.public_url.as_str(), "http://127.0.0.1:8080/");
    assert!(config.is_embedded_database());
    assert!(config.redis_url.is_none());
    assert_eq!(config.storage_url.scheme(), "file");
    assert_eq!(config.max_upload_bytes, 2 << 30);
    assert!(matches!(config.master_keys, MasterKeySource::DataDir));
    assert_eq!(config.share_max_ttl, Duration::from_secs(7 * 86_400));
}

#[test]
fn credentials_come_from_files_and_a_public_bind_needs_a_public_url() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("admin_password");
    std::fs::write(&secret, "from a secret file\n").expect("write");
    let secret = secret.display().to_string();
    let config = Config::from_vars(vars(&[
        ("COFFER_ADMIN_EMAIL", "admin@example.org"),
        ("COFFER_ADMIN_PASSWORD_FILE", &secret),
    ]))
    .expect("config");
    let admin = config.admin.expect("admin");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&admin.password),
        "from a secret file"
    );
    let both = Config::from_vars(vars(&[
        ("COFFER_ADMIN_EMAIL", "admin@example.org"),
        ("COFFER_ADMIN_PASSWORD", "x"),
        ("COFFER_ADMIN_PASSWORD_FILE", &secret),
    ]));
    assert!(both.is_err());
    let missing = Config::from_vars(vars(&[("AWS_SECRET_ACCESS_KEY_FILE", "/nonexistent")]))
        .expect_err("unreadable");
    assert_eq!(missing.var, "AWS_SECRET_ACCESS_KEY_FILE");

    let open = Config::from_vars(vars(&[("COFFER_BIND", "0.0.0.0:8080")])).expect_err("bind");
    assert_eq!(open.var, "COFFER_PUBLIC_URL");
    Config::from_vars(vars(&[
        ("COFFER_BIND", "0.0.0.0:8080"),
        ("COFFER_PUBLIC_URL", "https://files.example.org"),
    ]))
    .expect("with a public URL");
    Config::from_vars(vars(&[("COFFER_BIND", "[::1]:8080")])).expect("loopback");
}

/// Each field is set by the variable its name spells: `bind` by `COFFER_BIND`.
#[test]
fn every_field_is_named_by_its_variable() {
    for field in FIELDS {
        assert_eq!(
            field.variable,
            format!("COFFER_{}", field.name.to_ascii_uppercase())
        );
        assert!(!field.expected.contains('\n'), "{}", field.variable);
    }
}

/// A setting Coffer does not know is reported (a typo must not pass unnoticed), and the rest
/// still apply.
#[test]
fn unknown_variables_are_named() {
    let read = settings::read(vars(&[
        ("COFFER_TRUSTED_PROXY", "10.0.0.0/8"),
        ("COFFER_SIGNUPS_PER_HOUR", "5"),
    ]))
    .expect("settings");
    assert_eq!(read.unknown, ["COFFER_TRUSTED_PROXY"]);
    assert_eq!(read.settings.signups_per_hour, 5);
}

/// Values are read as written: digits stay text where text is wanted, and numbers parse.
#[test]
fn values_keep_their_text() {
    let config = Config::from_vars(vars(&[
        ("COFFER_REDIS_NAMESPACE", "2024"),
        ("COFFER_ADMIN_EMAIL", "admin@example.org"),
        ("COFFER_ADMIN_PASSWORD", "[1, 2]"),
        ("COFFER_MAX_UPLOAD_BYTES", "1024"),
        ("COFFER_AUDIT_REPEAT_WINDOW", "30s"),
    ]))
    .expect("config");
    assert_eq!(config.redis_namespace, "2024");
    let admin = config.admin.expect("admin");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&admin.password),
        "[1, 2]"
    );
    assert_eq!(config.max_upload_bytes, 1024);
    assert_eq!(config.audit_repeat_window, Duration::from_secs(30));
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("45s"), Some(Duration::from_secs(45)));
    assert_eq!(parse_duration("48"), Some(Duration::from_secs(48 * 3600)));
    assert_eq!(parse_duration("2d"), Some(Duration::from_secs(2 * 86_400)));
    for bad in ["", "0d", "1w", "d", "-1h"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn bad_values_name_their_variable() {
    for (var, value) in [
        ("COFFER_BIND", "nowhere"),
        ("COFFER_DATABASE_URL", "mysql://x"),
        ("COFFER_REDIS_URL", "http://x"),
        ("COFFER_STORAGE_URL", "ftp://x"),
        ("COFFER_SMTP_URL", "http://x"),
        ("COFFER_MAX_UPLOAD_BYTES", "-1"),
        ("COFFER_ALLOWED_TYPES", "pdf"),
        ("COFFER_ADMIN_EMAIL", "admin@example.org"),
        ("COFFER_MAIL_FROM", "not a mailbox <"),
        ("COFFER_SHARE_MAX_TTL", "forever"),
        ("COFFER_JOB_MAX_ATTEMPTS", "0"),
        ("COFFER_METRICS_TOKEN", "short"),
        ("COFFER_TRUSTED_PROXIES", "10.0.0.0/40"),
        ("COFFER_PROCESSING_DEADLINE", "soon"),
        ("COFFER_SIGNUPS_PER_HOUR", "many"),
        ("COFFER_SESSION_TTL_HOURS", "-3"),
        ("COFFER_METRICS_BIND", "9090"),
        ("COFFER_REWRAP_BATCH", "9000"),
        ("COFFER_AUDIT_CHECKPOINT_INTERVAL", "0s"),
    ] {
        let err = Config::from_vars(vars(&[(var, value)])).expect_err(var);
        let line = err.to_string();
        assert!(
            line.starts_with(var) || line.starts_with("COFFER_ADMIN_PASSWORD"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}

#[test]
fn single_sign_on_settings_go_together_and_local_passwords_need_another_way_in() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, "s3cret\n").expect("write");
    let secret = secret.display().to_string();
    let config = Config::from_vars(vars(&[
        ("COFFER_OIDC_ISSUER", "https://sso.example.org/realms/staff"),
        ("COFFER_OIDC_CLIENT_ID", "coffer"),
        ("COFFER_OIDC_CLIENT_SECRET_FILE", &secret),
        ("COFFER_OIDC_SCOPES", "email,profile groups"),
        ("COFFER_OIDC_ROLE_CLAIM", "groups"),
        ("COFFER_OIDC_ADMIN_GROUP", "coffer-admins"),
        ("COFFER_LOCAL_LOGIN", "false"),
        ("COFFER_ADMIN_EMAIL", "Root@Example.org"),
        ("COFFER_ADMIN_PASSWORD", "x"),
    ]))
    .expect("config");
    let oidc = config.identity.oidc.clone().expect("single sign-on");
    assert_eq!(oidc.scopes, ["openid", "email", "profile", "groups"]);
    assert_eq!(
        oidc.client_secret
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret),
        Some("s3cret")
    );
    assert_eq!(oidc.provider_name, "SSO");
    assert!(!oidc.jit);
    let roles = oidc.roles.expect("roles");
    assert_eq!(
        (roles.claim.as_str(), roles.admin_group.as_str()),
        ("groups", "coffer-admins")
    );
    // The break-glass admin: COFFER_ADMIN_EMAIL, unless COFFER_BREAK_GLASS_ADMIN says.
    let identity = &config.identity;
    assert_eq!(
        identity.password_allowed("root@example.org"),
        super::PasswordUse::BreakGlassAdmin
    );
    assert_eq!(
        identity.password_allowed("someone@example.org"),
        super::PasswordUse::Refused
    );

    for (pairs, var) in [
        (
            vec![("COFFER_OIDC_ISSUER", "https://sso.example.org")],
            "COFFER_OIDC_CLIENT_ID",
        ),
        (
            vec![
                ("COFFER_OIDC_ISSUER", "http://sso.example.org"),
                ("COFFER_OIDC_CLIENT_ID", "coffer"),
            ],
            "COFFER_OIDC_ISSUER",
        ),
        (
            vec![
                ("COFFER_OIDC_ISSUER", "https://sso.example.org"),
                ("COFFER_OIDC_CLIENT_ID", "coffer"),
                ("COFFER_OIDC_ROLE_CLAIM", "groups"),
            ],
            "COFFER_OIDC_ADMIN_GROUP",
        ),
        (
            vec![("COFFER_OIDC_CLIENT_ID", "coffer")],
            "COFFER_OIDC_ISSUER",
        ),
        (vec![("COFFER_LOCAL_LOGIN", "false")], "COFFER_LOCAL_LOGIN"),
    ] {
        let refused = Config::from_vars(vars(&pairs)).expect_err("refused");
        assert_eq!(refused.var, var, "{pairs:?}");
    }
    // http only on this machine's loopback (a provider in a test, or behind a local proxy).
    Config::from_vars(vars(&[
        ("COFFER_OIDC_ISSUER", "http://localhost:8081"),
        ("COFFER_OIDC_CLIENT_ID", "coffer"),
    ]))
    .expect("loopback issuer");
}
