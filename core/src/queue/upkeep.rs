//! What operators and the sweep need of the queues: how many tasks wait, and removing the
//! tasks that finished long ago.

use std::time::Duration;

use anyhow::Context as _;
use apalis_redis::RedisStorage;

use super::{Connection, Queue, redis_config};

impl Queue {
    /// Tasks waiting in each queue: pending, or (on Redis) scheduled for a retry.
    pub async fn depths(&self) -> anyhow::Result<Vec<(&'static str, i64)>> {
        match &self.connection {
            Connection::Sqlite(pool) => {
                let rows: Vec<(String, i64)> = sea_orm::sqlx::query_as(
                    "SELECT job_type, COUNT(*) FROM Jobs WHERE status = 'Pending' GROUP BY job_type",
                )
                .fetch_all(pool)
                .await
                .context("counting the embedded queue")?;
                Ok(self
                    .queues
                    .iter()
                    .map(|queue| {
                        let n = rows.iter().find(|(t, _)| t == queue).map_or(0, |r| r.1);
                        (*queue, n)
                    })
                    .collect())
            }
            Connection::Redis {
                conn, namespace, ..
            } => {
                let mut pipe = redis::pipe();
                for queue in self.queues {
                    let config = redis_config(namespace, queue);
                    pipe.llen(config.active_jobs_list())
                        .zcard(config.scheduled_jobs_set());
                }
                let counts: Vec<i64> = pipe
                    .query_async(&mut conn.clone())
                    .await
                    .context("counting Redis queues")?;
                Ok(self
                    .queues
                    .iter()
                    .zip(counts.chunks(2))
                    .map(|(queue, c)| (*queue, c.iter().sum()))
                    .collect())
            }
        }
    }

    /// Deletes tasks that finished more than `age` ago: apalis keeps every task it ran (its
    /// payload and result) until told otherwise, so the queue would grow without end.
    pub async fn vacuum(&self, age: Duration) -> anyhow::Result<usize> {
        match &self.connection {
            Connection::Sqlite(pool) => {
                let cutoff = chrono::Utc::now().timestamp() - i64::try_from(age.as_secs())?;
                let deleted = sea_orm::sqlx::query(
                    "DELETE FROM Jobs WHERE done_at <= ?1 AND (status IN ('Done', 'Killed') \
                     OR (status = 'Failed' AND attempts >= max_attempts))",
                )
                .bind(cutoff)
                .execute(pool)
                .await
                .context("vacuuming the embedded queue")?;
                Ok(usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX))
            }
            Connection::Redis {
                conn, namespace, ..
            } => {
                use apalis_core::backend::Vacuum as _;
                let mut deleted = 0;
                for queue in self.queues {
                    // Deleting needs no payload type: any stands in.
                    let mut s = RedisStorage::<serde_json::Value>::new(conn.clone())
                        .with_config(redis_config(namespace, queue));
                    deleted += s.vacuum_before(age).await.context("vacuuming a queue")?;
                }
                Ok(deleted)
            }
        }
    }
}
