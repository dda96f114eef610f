//! Resolved sessions, kept for a second so that a burst of requests with one session's token
//! reads the database once, not once per request (issue 17: the small-request rate).
//!
//! What may be stale, and for how long: an entry lives [`FRESH_FOR`] (one second). Everything
//! in this process that ends a session or changes what a session may do (sign-out, "sign out
//! everywhere", a password change or reset, an admin disabling an account or changing its role,
//! a second factor set up or removed, a sign-in that replaces a session) empties the cache at
//! once, so in this process nothing is stale. Another process (a second `coffer api` behind a
//! load balancer) learns of such a change within [`FRESH_FOR`]; docs/SECURITY.md says so.
//!
//! An entry is never made from a read that began before the last emptying (a generation count),
//! so a request racing a sign-out cannot put the ended session back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::principal::Session;

/// How long an entry is used before the database is asked again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Entries at most; past that the cache starts again empty (a flood of made-up tokens never
/// reaches it: only sessions the database resolved are kept).
const MOST: usize = 10_000;

/// A resolved session: who it is, and what its idle and lifetime checks need.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub session: Session,
    pub expires_at: DateTime<Utc>,
    /// When its use was last written (`last_seen_at`).
    pub seen: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<Vec<u8>, (Resolved, Instant)>>,
    generation: AtomicU64,
}

impl SessionCache {
    /// The session `token_hash` resolved to within [`FRESH_FOR`], if any.
    pub fn get(&self, token_hash: &[u8]) -> Option<Resolved> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token_hash)
            .filter(|(_, at)| at.elapsed() < FRESH_FOR)
            .map(|(resolved, _)| resolved.clone())
    }

    /// The generation a database read starts in: pass it to [`Self::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps what a read that started in `generation` resolved, unless the cache was emptied
    /// since.
    pub fn put(&self, token_hash: Vec<u8>, resolved: Resolved, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MOST {
            entries.clear();
        }
        entries.insert(token_hash, (resolved, Instant::now()));
    }

    /// Notes that a session's use was just written.
    pub fn seen(&self, token_hash: &[u8], at: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((resolved, _)) = entries.get_mut(token_hash) {
            resolved.seen = at;
        }
    }

    /// Forgets every session: something that ends sessions or changes what they may do
    /// happened in this process.
    pub fn empty(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{Access, User};
    use crate::types::Role;

    fn resolved() -> Resolved {
        Resolved {
            session: Session {
                id: uuid::Uuid::now_v7(),
                user: User {
                    id: uuid::Uuid::now_v7(),
                    email: "a@example.org".into(),
                    role: Role::User,
                    access: Access::Session,
                },
            },
            expires_at: Utc::now(),
            seen: Utc::now(),
        }
    }

    #[test]
    fn a_read_from_before_an_emptying_is_not_kept() {
        let cache = SessionCache::default();
        let before = cache.generation();
        cache.empty();
        cache.put(vec![1], resolved(), before);
        assert!(cache.get(&[1]).is_none());
        let now = cache.generation();
        cache.put(vec![1], resolved(), now);
        assert!(cache.get(&[1]).is_some());
        cache.empty();
        assert!(cache.get(&[1]).is_none());
    }
}
