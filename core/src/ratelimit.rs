//! Fixed-window counters of failed attempts: in process for the embedded default, in Redis when
//! several processes must share them.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redis::aio::ConnectionManager;

#[derive(Clone)]
pub enum RateLimiter {
    Memory(Arc<Windows>),
    Redis {
        conn: ConnectionManager,
        namespace: String,
    },
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory(_) => "RateLimiter(memory)",
            Self::Redis { .. } => "RateLimiter(redis)",
        })
    }
}

/// Independent locks over the in-process counters: an attempt locks one shard, for one lookup.
const SHARDS: usize = 64;
/// How often spent windows are dropped, one shard at a time, away from any attempt.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// The in-process counters: each key's attempts in its window, and when the window closes. An
/// attempt never walks the map; a closed window is reset when its key comes back, and dropped
/// by [`Windows::prune`] when it does not.
pub struct Windows {
    hasher: std::hash::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

/// Each key's attempts so far, and when its window closes.
type Shard = HashMap<String, (u32, Instant)>;

impl Default for Windows {
    fn default() -> Self {
        Self {
            hasher: std::hash::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Windows {
    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        self.shards[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops every closed window, holding one shard's lock at a time.
    pub fn prune(&self) {
        let now = Instant::now();
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|_, (_, until)| *until > now);
        }
    }

    /// How many keys are held, closed windows included.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Prunes `windows` every [`PRUNE_EVERY`] until the limiter is dropped.
async fn prune_until_dropped(windows: Weak<Windows>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let Some(windows) = windows.upgrade() else {
            return;
        };
        // Off the runtime's worker threads: a large map takes a while to walk.
        let _ = tokio::task::spawn_blocking(move || windows.prune()).await;
    }
}

impl RateLimiter {
    /// Counters in this process, pruned by a task on the current runtime (when there is one).
    pub fn memory() -> Self {
        let windows = Arc::new(Windows::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(prune_until_dropped(Arc::downgrade(&windows)));
        }
        Self::Memory(windows)
    }

    pub async fn redis(url: &str, namespace: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("COFFER_REDIS_URL")?;
        let conn = ConnectionManager::new(client)
            .await
            .context("connecting to Redis for rate limits")?;
        Ok(Self::Redis {
            conn,
            namespace: namespace.to_owned(),
        })
    }

    /// `Some(retry_after)` when `key` has reached `limit` in its current window.
    /// Takes one attempt from `key`'s budget of `limit` per `window` *before* the attempt is
    /// checked, atomically, so that a burst of concurrent attempts cannot all slip under the
    /// limit. Returns how long to wait when the budget is spent (nothing is taken then). A
    /// successful attempt hands its unit back with [`RateLimiter::give_back`].
    pub async fn take(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> anyhow::Result<Option<Duration>> {
        self.take_n(key, 1, limit, window).await
    }

    /// [`RateLimiter::take`] for `n` units at once: all of them, or none.
    pub async fn take_n(
        &self,
        key: &str,
        n: u32,
        limit: u32,
        window: Duration,
    ) -> anyhow::Result<Option<Duration>> {
        match self {
            Self::Memory(windows) => {
                let mut shard = windows.shard(key);
                let now = Instant::now();
                let entry = shard.entry(key.to_owned()).or_insert((0, now + window));
                if entry.1 <= now {
                    *entry = (0, now + window); // its window closed: a fresh one
                }
                if entry.0.saturating_add(n) > limit {
                    return Ok(Some(entry.1 - now));
                }
                entry.0 += n;
                Ok(None)
            }
            Self::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                let key = format!("{namespace}:rl:{key}");
                let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
                let (count, ttl): (u32, i64) = redis::pipe()
                    .incr(&key, n)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ms)
                    .arg("NX")
                    .ignore()
                    .pttl(&key)
                    .query_async(&mut conn)
                    .await
                    .context("taking a rate-limit unit in Redis")?;
                if count > limit {
                    give_back_redis(&mut conn, &key, n).await?;
                    return Ok(Some(Duration::from_millis(ttl.max(1) as u64)));
                }
                Ok(None)
            }
        }
    }

    /// Takes one unit from each `(key, limit)`: all of them, or none when one is spent.
    pub async fn take_all(
        &self,
        keys: &[(&str, u32)],
        window: Duration,
    ) -> anyhow::Result<Option<Duration>> {
        for (i, (key, limit)) in keys.iter().enumerate() {
            if let Some(wait) = self.take(key, *limit, window).await? {
                for (taken, _) in &keys[..i] {
                    self.give_back(taken).await?;
                }
                return Ok(Some(wait));
            }
        }
        Ok(None)
    }

    /// Returns a unit taken for an attempt that succeeded.
    pub async fn give_back(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Self::Memory(windows) => {
                if let Some(entry) = windows.shard(key).get_mut(key) {
                    entry.0 = entry.0.saturating_sub(1);
                }
            }
            Self::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                give_back_redis(&mut conn, &format!("{namespace}:rl:{key}"), 1).await?;
            }
        }
        Ok(())
    }

    pub async fn clear(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Self::Memory(windows) => {
                windows.shard(key).remove(key);
            }
            Self::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                redis::cmd("DEL")
                    .arg(format!("{namespace}:rl:{key}"))
                    .query_async::<()>(&mut conn)
                    .await
                    .context("clearing a rate limit in Redis")?;
            }
        }
        Ok(())
    }
}

/// Decrements a counter that still exists and is positive (an expired one stays gone).
async fn give_back_redis(conn: &mut ConnectionManager, key: &str, n: u32) -> anyhow::Result<()> {
    redis::Script::new(
        "local n = tonumber(redis.call('GET', KEYS[1]) or '0') \
         local back = math.min(n, tonumber(ARGV[1])) \
         if back > 0 then redis.call('DECRBY', KEYS[1], back) end return 0",
    )
    .key(key)
    .arg(n)
    .invoke_async::<i64>(conn)
    .await
    .context("returning a rate-limit unit in Redis")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn several_units_are_taken_all_or_none() {
        let limiter = RateLimiter::memory();
        let day = Duration::from_secs(86_400);
        assert_eq!(limiter.take_n("k", 2, 3, day).await.expect("ok"), None);
        assert!(limiter.take_n("k", 2, 3, day).await.expect("ok").is_some());
        // The refused request took nothing: one unit is still there.
        assert_eq!(limiter.take_n("k", 1, 3, day).await.expect("ok"), None);
        assert!(limiter.take("k", 3, day).await.expect("ok").is_some());
    }

    #[tokio::test]
    async fn memory_limiter_takes_until_spent_and_reports_wait() {
        let limiter = RateLimiter::memory();
        let window = Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take("k", 3, window).await.expect("ok"), None);
        }
        let wait = limiter
            .take("k", 3, window)
            .await
            .expect("ok")
            .expect("spent");
        assert!(wait <= window && wait > Duration::from_secs(50));
        assert_eq!(limiter.take("other", 3, window).await.expect("ok"), None);
        limiter.give_back("k").await.expect("ok");
        assert_eq!(limiter.take("k", 3, window).await.expect("ok"), None);
        // All or nothing: a spent second key hands the first one's unit back.
        let both = [("fresh", 3), ("k", 3)];
        assert!(limiter.take_all(&both, window).await.expect("ok").is_some());
        for _ in 0..3 {
            assert_eq!(limiter.take("fresh", 3, window).await.expect("ok"), None);
        }
        limiter.clear("k").await.expect("ok");
        assert_eq!(limiter.take("k", 3, window).await.expect("ok"), None);
    }

    #[tokio::test]
    async fn an_attempt_leaves_other_keys_alone_and_pruning_drops_closed_windows() {
        let limiter = RateLimiter::memory();
        let RateLimiter::Memory(windows) = &limiter else {
            unreachable!("a memory limiter")
        };
        // A hundred thousand addresses tried once, as a spray of random emails would.
        let short = Duration::from_millis(1);
        for i in 0..100_000 {
            let key = format!("login:email:{i}");
            assert_eq!(limiter.take(&key, 5, short).await.expect("ok"), None);
        }
        let open = Duration::from_secs(60);
        // Every one of those windows closes (a millisecond each).
        let last = "login:email:99999";
        let deadline = Instant::now() + Duration::from_secs(10);
        while windows.shard(last).get(last).expect("kept").1 > Instant::now() {
            assert!(Instant::now() < deadline, "the windows never closed");
            tokio::task::yield_now().await;
        }
        // An attempt walks none of them: the closed windows are all still there.
        assert_eq!(
            limiter.take("login:ip:one", 5, open).await.expect("ok"),
            None
        );
        assert_eq!(windows.len(), 100_001);
        // A key whose window closed starts a fresh one when it comes back.
        for _ in 0..5 {
            assert_eq!(
                limiter.take("login:email:7", 5, open).await.expect("ok"),
                None
            );
        }
        assert!(
            limiter
                .take("login:email:7", 5, open)
                .await
                .expect("ok")
                .is_some()
        );
        // The pruner drops what is closed and keeps what is open.
        windows.prune();
        assert_eq!(windows.len(), 2);
    }
}
