//! The queues: one per kind of job, named by [`Payload::NAME`], on Redis or an embedded SQLite
//! file. The only module that knows apalis's storage types: callers enqueue with
//! [`Queue::enqueue`], the worker takes each kind's [`Queue::backend`].

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::TaskSink as _;
use apalis_redis::{ConnectionManager, RedisStorage};
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::config::Config;

mod upkeep;
mod wake;

pub use wake::Wakers;
use wake::wake_channel;

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
}
