//! Fixed-window counters of failed attempts: in process for the embedded default, in Redis when
//! several processes must share them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redis::aio::ConnectionManager;

#[derive(Clone)]
pub enum RateLimiter {
    Memory(Arc<Mutex<HashMap<String, (u32, Instant)>>>),
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

impl RateLimiter {
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
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
        match self {
            Self::Memory(map) => {
                let mut map = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                map.retain(|_, (_, until)| *until > now);
                let entry = map.entry(key.to_owned()).or_insert((0, now + window));
                if entry.0 >= limit {
                    return Ok(Some(entry.1 - now));
                }
                entry.0 += 1;
                Ok(None)
            }
            Self::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                let key = format!("{namespace}:rl:{key}");
                let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
                let (count, ttl): (u32, i64) = redis::pipe()
                    .incr(&key, 1)
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
                    give_back_redis(&mut conn, &key).await?;
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
            Self::Memory(map) => {
                if let Some(entry) = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get_mut(key)
                {
                    entry.0 = entry.0.saturating_sub(1);
                }
            }
            Self::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                give_back_redis(&mut conn, &format!("{namespace}:rl:{key}")).await?;
            }
        }
        Ok(())
    }

    pub async fn clear(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Self::Memory(map) => {
                map.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(key);
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
async fn give_back_redis(conn: &mut ConnectionManager, key: &str) -> anyhow::Result<()> {
    redis::Script::new(
        "local n = tonumber(redis.call('GET', KEYS[1]) or '0') \
         if n > 0 then redis.call('DECR', KEYS[1]) end return 0",
    )
    .key(key)
    .invoke_async::<i64>(conn)
    .await
    .context("returning a rate-limit unit in Redis")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
