//! The queues: one per kind of job, named by [`Payload::NAME`], on Redis or an embedded SQLite
//! file. The only module that knows apalis's storage types: callers enqueue with
//! [`Queue::enqueue`], the worker takes each kind's [`Queue::backend`].

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::TaskSink as _;
use apalis_redis::{ConnectionManager, RedisStorage};
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use futures::StreamExt as _;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::Config;

/// A kind of queued task: its payload is stored as JSON in the queue named [`Payload::NAME`].
/// Declared with [`payload!`] beside the job's logic in `crate::jobs`.
pub trait Payload: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static {
    /// The queue's name, stored with every task and shown in metrics: never renamed (tasks
    /// in flight would be lost).
    const NAME: &'static str;

    /// The row the job works on, for its log lines.
    fn subject(&self) -> Uuid;

    /// The request that caused the job, for its log lines.
    fn request_id(&self) -> Option<String>;
}

/// Declares a job's payload: one row id and the request id, stored as JSON with exactly these
/// field names (tasks in flight are read back by them), the queue's name, and a constructor
/// that carries the current request's id.
macro_rules! payload {
    ($(#[doc = $doc:literal])* $ty:ident($id:ident) in $name:literal;) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        pub struct $ty {
            pub $id: uuid::Uuid,
            /// The request that caused this job, for its log lines.
            #[serde(default)]
            pub request_id: Option<String>,
        }

        impl $crate::queue::Payload for $ty {
            const NAME: &'static str = $name;

            fn subject(&self) -> uuid::Uuid {
                self.$id
            }

            fn request_id(&self) -> Option<String> {
                self.request_id.clone()
            }
        }

        impl $ty {
            /// The job for the row `id`, carrying the current request's id.
            pub fn new(id: uuid::Uuid) -> Self {
                Self {
                    $id: id,
                    request_id: $crate::request_id::current(),
                }
            }
        }
    };
}
pub(crate) use payload;

/// Where one job type's tasks live.
#[derive(Clone)]
pub enum Backend<T> {
    Sqlite(SqliteStorage<T>),
    Redis(RedisStorage<T>),
}

#[derive(Clone)]
enum Connection {
    Sqlite(SqlitePool),
    Redis {
        conn: ConnectionManager,
        /// For the subscription that hears other processes' wake-ups.
        client: redis::Client,
        namespace: String,
    },
}

/// Waits between attempts to subscribe to other processes' wake-ups.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(200);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(10);

/// Tasks a worker fetches at once: as many as it runs at once (the worker's concurrency). A
/// bigger batch leaves fetched tasks waiting in the worker's hands, where a killed process
/// strands them until apalis's orphan recovery (minutes later), and keeps apalis's backend in
/// its `Buffered` state, in which it does not pass task events on to Redis.
pub const FETCH_BATCH: usize = 4;

fn sqlite_config(queue: &str) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(queue)
        .batch_size(FETCH_BATCH)
}

fn redis_config(namespace: &str, queue: &str) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(format!("{namespace}:{queue}"))
        .batch_size(FETCH_BATCH)
}

/// The Redis channel on which a process that queued a task tells the workers of every other
/// process; the message is the queue's name.
fn wake_channel(namespace: &str) -> String {
    format!("{namespace}:wake")
}

/// Signals that a task was just queued, one per queue. A worker looks for tasks at once
/// instead of at its next poll: a job that queues the next one (validate → encrypt → email) or
/// an upload does not wait a poll interval per step. Tasks queued in this process fire them
/// directly; on Redis, tasks queued by other processes fire them through
/// [`Queue::listen_for_tasks`].
#[derive(Clone)]
pub struct Wakers(Arc<[(&'static str, Arc<Notify>)]>);

impl Wakers {
    fn new(queues: &[&'static str]) -> Self {
        Self(queues.iter().map(|q| (*q, Arc::default())).collect())
    }

    /// The signal of the queue named `queue`.
    pub fn of(&self, queue: &str) -> Option<&Arc<Notify>> {
        self.0.iter().find(|(q, _)| *q == queue).map(|(_, n)| n)
    }

    fn all(&self) {
        for (_, waker) in self.0.iter() {
            waker.notify_one();
        }
    }
}

#[derive(Clone)]
pub struct Queue {
    connection: Connection,
    /// Every queue's name (`crate::jobs`' payloads), for metrics and the vacuum.
    queues: &'static [&'static str],
    /// Idle workers look for new tasks this often.
    pub poll_interval: Duration,
    pub wake: Wakers,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.connection {
            Connection::Sqlite(_) => "Queue(sqlite)",
            Connection::Redis { .. } => "Queue(redis)",
        })
    }
}

impl Queue {
    /// Redis when `COFFER_REDIS_URL` is set, else an embedded SQLite queue in the data dir
    /// (its own file, so apalis's pragmas and locks never touch the application database).
    /// `queues` names every kind of job there is.
    pub async fn connect(config: &Config, queues: &'static [&'static str]) -> anyhow::Result<Self> {
        match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str())
                    .context("COFFER_REDIS_URL: not a Redis URL")?;
                let conn = client
                    .get_connection_manager()
                    .await
                    .context("connecting to Redis (COFFER_REDIS_URL)")?;
                Ok(Self {
                    connection: Connection::Redis {
                        conn,
                        client,
                        namespace: config.redis_namespace.clone(),
                    },
                    queues,
                    poll_interval: config.poll_interval,
                    wake: Wakers::new(queues),
                })
            }
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!("creating data directory {}", config.data_dir.display())
                })?;
                let path = config.data_dir.join("queue.db");
                let options =
                    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                        .context("queue database path")?
                        .create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(15));
                let open = |max: u32| {
                    SqlitePoolOptions::new()
                        .max_connections(max)
                        .connect_with(options.clone())
                };
                // apalis's setup changes pragmas on whichever connection runs it; connections
                // opened before it could keep a stale view of the queue on a new database. Run it
                // on a pool of its own and serve from a fresh one.
                let setup = open(1)
                    .await
                    .with_context(|| format!("opening the embedded queue {}", path.display()))?;
                // Other processes on the same queue file may hold its lock for a moment (setup
                // switches the journal mode and runs migrations); try again rather than fail.
                let mut attempt = 0;
                loop {
                    match SqliteStorage::setup(&setup).await {
                        Ok(()) => break,
                        Err(err) if attempt < 20 => {
                            attempt += 1;
                            tracing::debug!(error = %err, attempt, "embedded queue busy; retrying setup");
                            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                        }
                        Err(err) => {
                            return Err(anyhow::Error::new(err)
                                .context("creating the embedded queue's tables"));
                        }
                    }
                }
                setup.close().await;
                // Each worker holds connections for fetching, heartbeats and acks while API
                // handlers push; with 4 connections an idle worker was seen starving for seconds.
                let pool = open(16)
                    .await
                    .with_context(|| format!("opening the embedded queue {}", path.display()))?;
                Ok(Self {
                    connection: Connection::Sqlite(pool),
                    queues,
                    poll_interval: config.poll_interval,
                    wake: Wakers::new(queues),
                })
            }
        }
    }

    /// Where tasks of `J` wait: what the worker consumes. A storage is a handle on the
    /// connection; each call makes a fresh one, as each push did before.
    pub fn backend<J: Payload>(&self) -> Backend<J> {
        match &self.connection {
            Connection::Sqlite(pool) => {
                Backend::Sqlite(SqliteStorage::new(pool).with_config(sqlite_config(J::NAME)))
            }
            Connection::Redis {
                conn, namespace, ..
            } => Backend::Redis(
                RedisStorage::new(conn.clone()).with_config(redis_config(namespace, J::NAME)),
            ),
        }
    }

    /// Queues `job` and wakes the workers of its queue, here and in every other process.
    #[tracing::instrument(skip_all, fields(queue = J::NAME))]
    pub async fn enqueue<J: Payload>(&self, job: J) -> anyhow::Result<()> {
        let what = || format!("queueing a {} job", J::NAME);
        match self.backend::<J>() {
            Backend::Sqlite(mut s) => s.push(job).await.with_context(what)?,
            Backend::Redis(mut s) => s.push(job).await.with_context(what)?,
        }
        self.announce(J::NAME).await;
        Ok(())
    }

    /// Wakes the workers of `queue`  for a task just queued: this
    /// process's at once and, on Redis, every other process's through [`wake_channel`]. Only a
    /// hint: a worker that misses it finds the task at its next poll.
    async fn announce(&self, queue: &'static str) {
        if let Some(waker) = self.wake.of(queue) {
            waker.notify_one();
        }
        if let Connection::Redis {
            conn, namespace, ..
        } = &self.connection
        {
            let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(wake_channel(namespace))
                .arg(queue)
                .query_async(&mut conn.clone())
                .await;
            if let Err(err) = published {
                tracing::debug!(error = %err, queue, "could not announce a queued task; workers find it at their next poll");
            }
        }
    }

    /// On Redis, wakes this process's workers whenever another process queues a task, until
    /// `stop` is cancelled: without it a worker process waits up to a poll interval for each
    /// upload the API process queues. A lost subscription is made again (with backoff); the
    /// workers then look for what was queued meanwhile, and poll all along. Returns at once on
    /// the embedded queue.
    pub async fn listen_for_tasks(&self, stop: tokio_util::sync::CancellationToken) {
        let Connection::Redis {
            client, namespace, ..
        } = &self.connection
        else {
            return;
        };
        let channel = wake_channel(namespace);
        let mut backoff = RESUBSCRIBE_MIN;
        loop {
            let listening = async {
                let mut subscription = client.get_async_pubsub().await?;
                subscription.subscribe(&channel).await?;
                // Tasks queued while nobody listened.
                self.wake.all();
                backoff = RESUBSCRIBE_MIN;
                let mut messages = subscription.into_on_message();
                while let Some(message) = messages.next().await {
                    let queue = std::str::from_utf8(message.get_payload_bytes()).unwrap_or("");
                    if let Some(waker) = self.wake.of(queue) {
                        waker.notify_one();
                    }
                }
                Ok::<_, redis::RedisError>(())
            };
            let ended = tokio::select! {
                () = stop.cancelled() => return,
                ended = listening => ended,
            };
            match ended {
                Ok(()) => tracing::warn!("Redis closed the task subscription; subscribing again"),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis(), "cannot subscribe to queued tasks; workers poll meanwhile")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
        }
    }

    /// A cheap round trip for readiness checks.
    pub async fn check(&self) -> anyhow::Result<()> {
        match &self.connection {
            Connection::Sqlite(pool) => {
                sea_orm::sqlx::query("SELECT 1")
                    .execute(pool)
                    .await
                    .context("embedded queue")?;
            }
            Connection::Redis { conn, .. } => {
                let mut conn = conn.clone();
                let _: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .context("Redis PING")?;
            }
        }
        Ok(())
    }

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
