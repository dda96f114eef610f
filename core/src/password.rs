//! argon2id password hashing, on threads of its own, never on the async runtime's.

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::text::{Arg, t_with};
use crate::types::Invalid;

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 1024;

/// OWASP's argon2id parameters: 19 MiB, t=2, p=1.
#[allow(
    clippy::expect_used,
    reason = "constant parameters, checked by every test that hashes"
)]
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("constant parameters are valid")
}

/// Room reserved for a run's working memory: past the largest threshold glibc's malloc adapts
/// to (32 MiB), so the block is a mapping of its own that goes back to the system when freed.
/// Below it, the 19 MiB of a run stayed resident in the thread's arena after being freed.
/// Only the blocks argon2 uses are ever touched, so the rest costs address space, not memory.
const RESERVED_BYTES: usize = 33 << 20;

thread_local! {
    /// A hashing thread's argon2 working memory, kept while logins are waiting their turn and
    /// released when the thread runs out of work: an idle service holds none of it.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs argon2 with `blocks` blocks of this thread's working memory.
fn with_memory<T>(blocks: usize, run: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() != blocks {
            let reserved = (RESERVED_BYTES / size_of::<Block>()).max(blocks);
            *memory = Vec::with_capacity(reserved);
            memory.resize(blocks, Block::default());
        }
        run(memory)
    })
}

/// Gives this thread's working memory back to the system.
fn release_memory() {
    MEMORY.with_borrow_mut(|memory| *memory = Vec::new());
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password`.
fn hash_here(password: &[u8]) -> anyhow::Result<String> {
    let params = params();
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    with_memory(params.block_count(), |memory| {
        argon2.hash_password_into_with_memory(password, &salt, &mut out, memory)
    })
    .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| anyhow::anyhow!("encoding password hash: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("password salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("password hash: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored`, under the parameters stored with it. The
/// outputs are compared in constant time (`Output`'s equality); anything malformed is `false`.
fn verify_here(password: &[u8], stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let hashed = with_memory(params.block_count(), |memory| {
        argon2.hash_password_into_with_memory(password, salt, &mut out, memory)
    });
    hashed.is_ok() && Output::new(&out).is_ok_and(|computed| computed == *expected)
}

pub fn check_strength(password: &str) -> Result<(), Invalid> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(Invalid(t_with(
            "password-error-too-short",
            [("min", Arg::from(MIN_LEN))],
        )));
    }
    if password.len() > MAX_LEN {
        return Err(Invalid(t_with(
            "password-error-too-long",
            [("max", Arg::from(MAX_LEN))],
        )));
    }
    Ok(())
}

type Job = Box<dyn FnOnce() + Send>;

/// Which line a hashing job waits in. Threads always take a waiting login (or any other check
/// of a known account's password) first, so a flood of sign-ups slows other sign-ups, never a
/// login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Login = 0,
    SignUp = 1,
}

/// How many jobs may wait in each line, in the whole process; past that a request is refused
/// at once (503) instead of queueing without end. Sign-ups are held to [`SIGNUPS_AT_ONCE`] per
/// service before they reach the line; this is the backstop.
const MAX_WAITING: [usize; 2] = [256, 256];

/// Sign-ups one service hashes or has waiting at once; past that a sign-up is refused at once
/// (503). Counted per [`crate::Core`], so that services sharing a process (the tests) do not
/// spend each other's.
pub const SIGNUPS_AT_ONCE: usize = 16;

/// Too many passwords are waiting to be hashed: the caller answers 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("too many passwords are being checked at the moment; try again shortly")]
pub struct Busy;

#[derive(Default)]
struct Queue {
    waiting: std::sync::Mutex<[std::collections::VecDeque<Job>; 2]>,
    wake: std::sync::Condvar,
}

impl Queue {
    fn take(waiting: &mut [std::collections::VecDeque<Job>; 2]) -> Option<Job> {
        waiting[Line::Login as usize]
            .pop_front()
            .or_else(|| waiting[Line::SignUp as usize].pop_front())
    }

    /// The next job; an idle thread gives its memory back before it sleeps.
    fn next(&self) -> Job {
        let lock = || {
            self.waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(job) = Self::take(&mut lock()) {
            return job;
        }
        release_memory();
        let mut waiting = lock();
        loop {
            if let Some(job) = Self::take(&mut waiting) {
                return job;
            }
            waiting = self
                .wake
                .wait(waiting)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn push(&self, line: Line, job: Job) -> Result<(), Busy> {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if waiting[line as usize].len() >= MAX_WAITING[line as usize] {
            return Err(Busy);
        }
        waiting[line as usize].push_back(job);
        drop(waiting);
        self.wake.notify_one();
        Ok(())
    }
}

/// The queue of the hashing threads, started on first use. There is one thread per core but
/// one (at least one): an argon2id run takes a core for about 20 ms, so a burst of logins would
/// otherwise take every core from the downloads under way; logins beyond that wait their turn.
/// Fixed threads also keep memory bounded: each run needs 19 MiB (on the blocking pool the
/// service grew by 19 MiB with each new thread that verified a password).
fn hashers() -> &'static Queue {
    use std::sync::OnceLock;
    static QUEUE: OnceLock<&'static Queue> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let queue: &'static Queue = Box::leak(Box::default());
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        for i in 0..cores.saturating_sub(1).max(1) {
            let spawned = std::thread::Builder::new()
                .name(format!("coffer-password-{i}"))
                .spawn(move || {
                    loop {
                        (queue.next())();
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start a password hashing thread");
            }
        }
        queue
    })
}

/// Runs `work` on a hashing thread and waits for its result; [`Busy`] when its line is full.
async fn on_hashing_thread<T: Send + 'static>(
    line: Line,
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    hashers().push(line, job)?;
    Ok(result.await?)
}

/// Hashes a new account's password, in the sign-up line (which never holds up a login), if
/// one of the service's `slots` ([`SIGNUPS_AT_ONCE`]) is free; [`Busy`] otherwise.
pub async fn hash_for_signup(
    slots: &tokio::sync::Semaphore,
    password: SecretString,
) -> anyhow::Result<String> {
    let _slot = slots.try_acquire().map_err(|_| Busy)?;
    on_hashing_thread(Line::SignUp, move || {
        hash_here(password.expose_secret().as_bytes())
    })
    .await?
}

pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    on_hashing_thread(Line::Login, move || {
        hash_here(password.expose_secret().as_bytes())
    })
    .await?
}

/// Verifies in constant time (argon2's own comparison). A malformed stored hash is `false`.
pub async fn verify(password: SecretString, stored: String) -> anyhow::Result<bool> {
    on_hashing_thread(Line::Login, move || {
        verify_here(password.expose_secret().as_bytes(), &stored)
    })
    .await
}

/// A hash of a random password, verified against when an account does not exist so that
/// unknown and known emails take the same time. Made once, on a hashing thread.
pub async fn dummy_hash() -> anyhow::Result<String> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash(SecretString::from("coffer-timing-equaliser")))
        .await
        .cloned()
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
    fn hashes_are_interchangeable_with_the_argon2_crates_own() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery")
            .expect("hash")
            .to_string();
        assert!(verify_here(b"correct horse battery", &theirs));
        assert!(!verify_here(b"correct horse batterY", &theirs));
        let ours = hash_here(b"correct horse battery").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        // The same memory serves run after run on one thread.
        for _ in 0..3 {
            assert!(verify_here(b"correct horse battery", &ours));
        }
    }

    #[test]
    fn strength_limits() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough pw").is_ok());
        assert!(check_strength(&"x".repeat(2000)).is_err());
    }
}
