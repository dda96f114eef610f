//! argon2id password hashing, always on the blocking pool.

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use secrecy::{ExposeSecret as _, SecretString};

use crate::types::Invalid;

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 1024;

/// OWASP's argon2id parameters: 19 MiB, t=2, p=1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn check_strength(password: &str) -> Result<(), Invalid> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(Invalid(format!(
            "password must have at least {MIN_LEN} characters"
        )));
    }
    if password.len() > MAX_LEN {
        return Err(Invalid(format!(
            "password must have at most {MAX_LEN} bytes"
        )));
    }
    Ok(())
}

/// How many passwords this process hashes at once: one argon2id run takes a core and 19 MiB for
/// about 20 ms, so a burst of logins would otherwise take every core from the downloads under
/// way (and 19 MiB a login). One core is always left to the rest of the service; logins beyond
/// that wait their turn.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1))
    })
}

/// Runs `work` on the blocking pool once a hashing slot is free.
async fn on_hashing_slot<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let _slot = hashing_slots().acquire().await?;
    Ok(tokio::task::spawn_blocking(work).await?)
}

pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    on_hashing_slot(move || {
        argon2()
            .hash_password(password.expose_secret().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await?
}

/// Verifies in constant time (argon2's own comparison). A malformed stored hash is `false`.
pub async fn verify(password: SecretString, stored: String) -> anyhow::Result<bool> {
    on_hashing_slot(move || {
        PasswordHash::new(&stored)
            .map(|parsed| {
                argon2()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
}

/// A hash of a random password, verified against when an account does not exist so that
/// unknown and known emails take the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        argon2()
            .hash_password(b"coffer-timing-equaliser")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let stored = hash(SecretString::from("correct horse battery"))
            .await
            .expect("hash");
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(
            verify(SecretString::from("correct horse battery"), stored.clone())
                .await
                .expect("verify")
        );
        assert!(
            !verify(SecretString::from("wrong horse battery"), stored)
                .await
                .expect("verify")
        );
        assert!(
            !verify(SecretString::from("x"), "garbage".into())
                .await
                .expect("verify")
        );
    }

    #[test]
    fn strength_limits() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough pw").is_ok());
        assert!(check_strength(&"x".repeat(2000)).is_err());
    }
}
