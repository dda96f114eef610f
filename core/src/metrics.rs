//! Prometheus metrics: one registry per process (held by `Core`, so tests that start several
//! services in one process each see their own), rendered in the OpenMetrics text format.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sea_orm::{DatabaseConnection, FromQueryResult, Iterable as _, Statement};

use crate::queue::Queue;
use crate::types::FileStatus;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// One of the standard methods, or `other`: a client cannot add label values.
    method: &'static str,
    /// The matched route pattern, never the raw path (which may hold a share token).
    route: String,
    status: u16,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as Prometheus users expect them
pub enum JobOutcome {
    succeeded,
    /// Failed for good: invalid input, or out of attempts.
    failed,
    /// Failed for now; the job will run again.
    retried,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobOutcomeLabels {
    job: &'static str,
    outcome: JobOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Via {
    /// The owner, through the API.
    owner,
    /// A recipient, through a share link.
    share,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabels {
    via: Via,
}

/// Every metric Coffer exports. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    jobs_started: Family<JobLabels, Counter>,
    jobs_finished: Family<JobOutcomeLabels, Counter>,
    job_duration: Family<JobOutcomeLabels, Histogram>,
    queue_depth: Family<QueueLabels, Gauge>,
    files: Family<StatusLabels, Gauge>,
    uploaded_bytes: Counter,
    downloaded_bytes: Family<ViaLabels, Counter>,
    key_faults: Counter,
    /// When the file gauges were last counted: a scrape counts them at most every
    /// [`COUNT_FILES_EVERY`], so scraping never costs a table scan each time.
    files_counted: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The longest the file gauges may lag the database.
const COUNT_FILES_EVERY: Duration = Duration::from_secs(15);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms … about 33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn job_histogram() -> Histogram {
    // 5 ms … about 5.5 min
    Histogram::new(exponential_buckets(0.005, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coffer");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<HttpLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "http_request_duration_seconds",
            "Time until the response head was ready, by route and status",
            http_duration.clone(),
        );
        let jobs_started = Family::<JobLabels, Counter>::default();
        registry.register(
            "jobs_started",
            "Job runs started, by job type",
            jobs_started.clone(),
        );
        let jobs_finished = Family::<JobOutcomeLabels, Counter>::default();
        registry.register(
            "jobs_finished",
            "Job runs ended, by job type and outcome (succeeded, retried, failed)",
            jobs_finished.clone(),
        );
        let job_duration =
            Family::<JobOutcomeLabels, Histogram>::new_with_constructor(job_histogram as fn() -> _);
        registry.register(
            "job_duration_seconds",
            "Job run time, by job type and outcome",
            job_duration.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Tasks waiting in each queue (pending, or scheduled for a retry)",
            queue_depth.clone(),
        );
        let files = Family::<StatusLabels, Gauge>::default();
        registry.register("files", "Files by status", files.clone());
        let uploaded_bytes = Counter::default();
        registry.register(
            "uploaded_bytes",
            "Plaintext bytes of accepted uploads",
            uploaded_bytes.clone(),
        );
        let downloaded_bytes = Family::<ViaLabels, Counter>::default();
        registry.register(
            "downloaded_bytes",
            "Plaintext bytes sent to owners and recipients",
            downloaded_bytes.clone(),
        );
        let key_faults = Counter::default();
        registry.register(
            "key_faults",
            "Key operations that failed for a keyring problem (a missing master-key version, or one that differs from the database's): an operator's error, retried, never a file's",
            key_faults.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                http_requests,
                http_duration,
                jobs_started,
                jobs_finished,
                job_duration,
                queue_depth,
                files,
                uploaded_bytes,
                downloaded_bytes,
                key_faults,
                files_counted: std::sync::Mutex::new(None),
            }),
        }
    }

    /// `route` is a route pattern of Coffer's own (or `unmatched`), never the request's path.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        let labels = HttpLabels {
            method: METHODS
                .into_iter()
                .find(|m| *m == method)
                .unwrap_or("other"),
            route: route.to_owned(),
            status,
        };
        self.inner.http_requests.get_or_create(&labels).inc();
        self.inner
            .http_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn job_started(&self, job: &'static str) {
        self.inner
            .jobs_started
            .get_or_create(&JobLabels { job })
            .inc();
    }

    pub fn job_finished(&self, job: &'static str, outcome: JobOutcome, elapsed: Duration) {
        let labels = JobOutcomeLabels { job, outcome };
        self.inner.jobs_finished.get_or_create(&labels).inc();
        self.inner
            .job_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn uploaded(&self, bytes: u64) {
        self.inner.uploaded_bytes.inc_by(bytes);
    }

    pub fn downloaded(&self, via: Via, bytes: u64) {
        self.inner
            .downloaded_bytes
            .get_or_create(&ViaLabels { via })
            .inc_by(bytes);
    }

    pub fn key_fault(&self) {
        self.inner.key_faults.inc();
    }

    /// Refreshes the gauges read from the database and the queue, then renders every metric.
    /// A gauge whose source is unreachable keeps its last value; readiness reports the outage.
    pub async fn render(&self, db: &DatabaseConnection, queue: &Queue) -> String {
        if self.files_due() {
            self.count_files(db).await;
        }
        self.render_queue_and_registry(queue).await
    }

    /// Whether the file gauges are due a count, claiming it if so (concurrent scrapes do not
    /// each count).
    fn files_due(&self) -> bool {
        let mut counted = self
            .inner
            .files_counted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if counted.is_some_and(|at| now.duration_since(at) < COUNT_FILES_EVERY) {
            return false;
        }
        *counted = Some(now);
        true
    }

    async fn count_files(&self, db: &DatabaseConnection) {
        match file_counts(db).await {
            Ok(counts) => {
                for status in FileStatus::iter() {
                    let n = counts
                        .iter()
                        .find(|c| c.status == status)
                        .map_or(0, |c| c.count);
                    self.inner
                        .files
                        .get_or_create(&StatusLabels {
                            status: status.as_str(),
                        })
                        .set(n);
                }
            }
            Err(err) => tracing::warn!(error = %err, "metrics: counting files failed"),
        }
    }

    async fn render_queue_and_registry(&self, queue: &Queue) -> String {
        match queue.depths().await {
            Ok(depths) => {
                for (queue, depth) in depths {
                    self.inner
                        .queue_depth
                        .get_or_create(&QueueLabels { queue })
                        .set(depth);
                }
            }
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "metrics: queue depth failed"),
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[derive(Debug, FromQueryResult)]
struct StatusCount {
    status: FileStatus,
    count: i64,
}

async fn file_counts(db: &DatabaseConnection) -> Result<Vec<StatusCount>, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    StatusCount::find_by_statement(Statement::from_string(
        backend,
        "SELECT status, COUNT(*) AS count FROM files GROUP BY status",
    ))
    .all(db)
    .await
}
