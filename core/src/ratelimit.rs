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
    pub async fn blocked(&self, key: &str, limit: u32) -> anyhow::Result<Option<Duration>> {
        match self {
            Self::Memory(map) => {
                let mut map = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                map.retain(|_, (_, until)| *until > now);
                Ok(map
                    .get(key)
                    .filter(|(count, _)| *count >= limit)
                    .map(|(_, until)| *until - now))
            }
            Self::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                let key = format!("{namespace}:rl:{key}");
                let (count, ttl): (Option<u32>, i64) = redis::pipe()
                    .get(&key)
                    .pttl(&key)
                    .query_async(&mut conn)
                    .await
                    .context("reading a rate limit from Redis")?;
                Ok((count.unwrap_or(0) >= limit && ttl > 0)
                    .then(|| Duration::from_millis(ttl as u64)))
            }
        }
    }

    /// Counts one attempt against `key`; the window starts at its first attempt.
    pub async fn record(&self, key: &str, window: Duration) -> anyhow::Result<()> {
        match self {
            Self::Memory(map) => {
                let mut map = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                let entry = map.entry(key.to_owned()).or_insert((0, now + window));
                if entry.1 <= now {
                    *entry = (0, now + window);
                }
                entry.0 += 1;
            }
            Self::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                let key = format!("{namespace}:rl:{key}");
                let ms = window.as_millis() as i64;
                redis::pipe()
                    .incr(&key, 1)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ms)
                    .arg("NX")
                    .query_async::<()>(&mut conn)
                    .await
                    .context("recording a rate limit in Redis")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_limiter_blocks_after_limit_and_reports_wait() {
        let limiter = RateLimiter::memory();
        for _ in 0..3 {
            assert_eq!(limiter.blocked("k", 3).await.expect("ok"), None);
            limiter
                .record("k", Duration::from_secs(60))
                .await
                .expect("ok");
        }
        let wait = limiter.blocked("k", 3).await.expect("ok").expect("blocked");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert_eq!(limiter.blocked("other", 3).await.expect("ok"), None);
        limiter.clear("k").await.expect("ok");
        assert_eq!(limiter.blocked("k", 3).await.expect("ok"), None);
    }
}
