//! argon2id password hashing, on threads of its own, never on the async runtime's.

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::types::Invalid;

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 1024;

/// OWASP's argon2id parameters: 19 MiB, t=2, p=1.
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

type Job = Box<dyn FnOnce() + Send>;

/// The queue of the hashing threads, started on first use. There is one thread per core but
/// one (at least one): an argon2id run takes a core for about 20 ms, so a burst of logins would
/// otherwise take every core from the downloads under way; logins beyond that wait their turn.
/// Fixed threads also keep memory bounded: each run needs 19 MiB (on the blocking pool the
/// service grew by 19 MiB with each new thread that verified a password).
fn hashers() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<Job>> {
    use std::sync::{Arc, Mutex, OnceLock, mpsc};
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        for i in 0..cores.saturating_sub(1).max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("coffer-password-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking the next job. Whoever holds it
                        // waits for the queue, so a thread that must wait for the lock has no
                        // work coming either: its memory goes back first.
                        let queue = match queue.try_lock() {
                            Ok(queue) => queue,
                            Err(std::sync::TryLockError::WouldBlock) => {
                                release_memory();
                                let Ok(queue) = queue.lock() else { break };
                                queue
                            }
                            Err(std::sync::TryLockError::Poisoned(_)) => break,
                        };
                        let next = match queue.try_recv() {
                            Err(mpsc::TryRecvError::Empty) => {
                                release_memory();
                                queue.recv().ok()
                            }
                            next => next.ok(),
                        };
                        drop(queue);
                        match next {
                            Some(job) => job(),
                            None => break,
                        }
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start a password hashing thread");
            }
        }
        Mutex::new(jobs)
    })
}

/// Runs `work` on a hashing thread and waits for its result.
async fn on_hashing_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    hashers()
        .lock()
        .map_err(|_| anyhow::anyhow!("the password hashing queue is poisoned"))?
        .send(job)
        .map_err(|_| anyhow::anyhow!("no password hashing thread is running"))?;
    Ok(result.await?)
}

pub async fn hash(password: SecretString) -> anyhow::Result<String> {
    on_hashing_thread(move || hash_here(password.expose_secret().as_bytes())).await?
}

/// Verifies in constant time (argon2's own comparison). A malformed stored hash is `false`.
pub async fn verify(password: SecretString, stored: String) -> anyhow::Result<bool> {
    on_hashing_thread(move || verify_here(password.expose_secret().as_bytes(), &stored)).await
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
