//! apalis workers: the queued jobs (validate, encrypt, notify, rewrap), the scheduled ones
//! (sweep, orphans), and the audit sealer.

use std::future::Future;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::layers::retry::backoff::{
    ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff as _,
};
use apalis::layers::retry::{BackoffRetryPolicy, HasherRng, RetryPolicy};
use apalis::prelude::*;
use apalis_cron::{CronScheduler, Tick};
use coffer_core::Core;
use coffer_core::JobError;
use coffer_core::jobs::{
    self, Job, encrypt::EncryptFile, notify::SendShareEmail, rewrap::RewrapKeys,
    validate::ValidateFile,
};
use coffer_core::metrics::JobOutcome;
use coffer_core::queue::{Backend, Payload as _};
use coffer_core::request_id;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tracing::Instrument as _;

/// After this many deliveries a transient failure stops retrying; the sweep picks the file up
/// again once it has been stuck for `COFFER_SWEEP_STUCK_AFTER_SECS`.
const MAX_ATTEMPTS: usize = 6;
/// Jobs of one type a process runs at once; it fetches as many at a time.
const CONCURRENCY: usize = coffer_core::queue::FETCH_BATCH;

/// Exponential backoff between `min` and `max`, with jitter.
#[allow(
    clippy::expect_used,
    reason = "called with the constant pairs of `run`"
)]
fn retry_policy(min: Duration, max: Duration) -> BackoffRetryPolicy<ExponentialBackoff<HasherRng>> {
    let backoff = ExponentialBackoffMaker::new(min, max, 0.5, HasherRng::default())
        .expect("constant backoff parameters are valid")
        .make_backoff();
    RetryPolicy::retries(MAX_ATTEMPTS - 1).with_backoff(backoff)
}

/// Runs one job: in a span that carries the request id of the request that caused it (and with
/// that id current, so the jobs it enqueues carry it on), with metrics and a log line.
async fn run_job(
    core: &Core,
    job: &'static str,
    id: uuid::Uuid,
    request_id: Option<String>,
    attempt: &Attempt,
    work: impl Future<Output = Result<(), JobError>>,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        job,
        %id,
        attempt = attempt.current(),
        request_id = tracing::field::Empty
    );
    if let Some(request_id) = &request_id {
        span.record("request_id", request_id.as_str());
    }
    let started = Instant::now();
    core.metrics.job_started(job);
    span.in_scope(|| tracing::debug!("job started"));
    let result = request_id::scope(request_id, work)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    let _entered = span.enter();
    let (verdict, outcome) = match result {
        Ok(()) => {
            tracing::info!(elapsed_ms, "job succeeded");
            (Ok(()), JobOutcome::succeeded)
        }
        Err(JobError::Permanent(reason)) => {
            tracing::warn!(%reason, elapsed_ms, "job failed permanently");
            (Err(AbortError::new(reason).into()), JobOutcome::failed)
        }
        Err(JobError::Transient(err)) if attempt.current() >= MAX_ATTEMPTS => {
            tracing::error!(error = %format!("{err:#}"), elapsed_ms, "job gave up; the sweep will retry later");
            (
                Err(AbortError::new(format!("{err:#}")).into()),
                JobOutcome::failed,
            )
        }
        Err(JobError::Transient(err)) => {
            tracing::warn!(error = %format!("{err:#}"), elapsed_ms, "job failed; retrying");
            (Err(err.into()), JobOutcome::retried)
        }
    };
    core.metrics.job_finished(job, outcome, elapsed);
    verdict
}

/// The handler of every queued job kind.
async fn handle<J: Job>(job: J, core: Data<Core>, attempt: Attempt) -> Result<(), BoxDynError> {
    let (id, request_id) = (job.subject(), job.request_id());
    let work = job.run(&core, attempt.current());
    run_job(&core, J::NAME, id, request_id, &attempt, work).await
}

async fn sweep_job(_tick: Tick, core: Data<Core>) -> Result<(), BoxDynError> {
    coffer_core::services::users::remove_dead_sessions(&core).await?;
    coffer_core::services::tokens::remove_dead(&core).await?;
    coffer_core::services::oidc::remove_stale_logins(&core).await?;
    jobs::sweep::sweep(&core)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string().into())
}

async fn orphans_job(_tick: Tick, core: Data<Core>) -> Result<(), BoxDynError> {
    coffer_core::services::orphans::remove(&core)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string().into())
}

/// A cron schedule firing every `interval` (rounded down to whole seconds, minutes or hours,
/// at most daily).
#[allow(
    clippy::expect_used,
    reason = "the expressions are built above; a test parses each shape"
)]
fn schedule(interval: Duration) -> cron::Schedule {
    let secs = interval.as_secs().max(1);
    let expr = if secs < 60 {
        format!("*/{secs} * * * * *")
    } else if secs < 3600 {
        format!("0 */{} * * * *", secs / 60)
    } else if secs < 24 * 3600 {
        format!("0 0 */{} * * *", secs / 3600)
    } else {
        "0 0 0 * * *".to_owned()
    };
    cron::Schedule::from_str(&expr).expect("generated cron expression is valid")
}

/// Wakes an idle worker every `interval` to look for new tasks, and at once when this process
/// queued one (`wake`). apalis's own `IntervalStrategy` replaces its timer when it fires
/// without polling the new one, so no waker is armed for the next tick; an idle worker then
/// slept until its 30 s heartbeat (seen here in about half of the runs). This one arms the
/// next timer at once.
struct EveryInterval {
    interval: Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    wake: Arc<Notify>,
    woken: Option<std::pin::Pin<Box<OwnedNotified>>>,
}

impl EveryInterval {
    fn new(interval: Duration, wake: Arc<Notify>) -> Self {
        Self {
            interval,
            timer: None,
            wake,
            woken: None,
        }
    }
}

impl PollStrategy for EveryInterval {
    fn poll_drive(
        &mut self,
        cx: &mut std::task::Context<'_>,
        _: &PollSnapshot,
    ) -> std::task::Poll<Option<()>> {
        let wake = &self.wake;
        let woken = fired(&mut self.woken, || wake.clone().notified_owned(), cx);
        if woken {
            self.timer = None; // the interval starts over
        }
        let interval = self.interval;
        let ticked = fired(&mut self.timer, || tokio::time::sleep(interval), cx);
        if woken || ticked {
            std::task::Poll::Ready(Some(()))
        } else {
            std::task::Poll::Pending
        }
    }
}

/// Whether the future in `slot` (made by `make` when there is none) has completed; one that has
/// is replaced by a new one, polled once so that its waker is armed before returning. Both of a
/// worker's wake-ups stay armed this way: a worker whose timer was not armed slept until
/// apalis's 30 s heartbeat.
fn fired<F: Future>(
    slot: &mut Option<std::pin::Pin<Box<F>>>,
    make: impl Fn() -> F,
    cx: &mut std::task::Context<'_>,
) -> bool {
    let current = slot.get_or_insert_with(|| Box::pin(make()));
    if Future::poll(current.as_mut(), cx).is_pending() {
        return false;
    }
    let mut next = Box::pin(make());
    let _ = Future::poll(next.as_mut(), cx);
    *slot = Some(next);
    true
}

/// Registers the worker of job kind `$job` on whichever backend the queue uses: one builder,
/// written once (`@on`), for either backend's storage type.
macro_rules! register {
    ($monitor:expr, $core:expr, $job:ty, $backoff:expr) => {{
        let (min, max) = $backoff;
        let core = $core.clone();
        let poll = core.queue.poll_interval;
        let wake = core
            .queue
            .wake
            .of(<$job>::NAME)
            .cloned()
            .unwrap_or_default();
        let name = format!("{}-{}", <$job>::NAME, uuid::Uuid::new_v4().simple());
        match core.queue.backend::<$job>() {
            Backend::Sqlite(storage) => {
                register!(@on $monitor, $job, storage, name, core, poll, wake, min, max)
            }
            Backend::Redis(storage) => {
                register!(@on $monitor, $job, storage, name, core, poll, wake, min, max)
            }
        }
    }};
    (@on $monitor:expr, $job:ty, $storage:ident, $name:ident, $core:ident, $poll:ident,
        $wake:ident, $min:ident, $max:ident) => {
        $monitor.register(move |restarts| {
            WorkerBuilder::new(format!("{}-{}", $name, restarts))
                .backend(
                    $storage
                        .clone()
                        .poll_with_strategy(EveryInterval::new($poll, $wake.clone())),
                )
                .data($core.clone())
                .concurrency(CONCURRENCY)
                .retry(retry_policy($min, $max))
                .build(handle::<$job>)
        })
    };
}

pub fn monitor(core: &Core) -> Monitor {
    let monitor = Monitor::new();
    // Storage and database hiccups clear fast; mail servers that refuse may need longer.
    let quick = (Duration::from_millis(200), Duration::from_secs(10));
    let mail = (Duration::from_secs(1), Duration::from_secs(60));
    // The job table: each queued kind, and how long its retries wait.
    let monitor = register!(monitor, core, ValidateFile, quick);
    let monitor = register!(monitor, core, EncryptFile, quick);
    let monitor = register!(monitor, core, SendShareEmail, mail);
    let monitor = register!(monitor, core, RewrapKeys, quick);
    let monitor = scheduled(
        monitor,
        "sweep",
        core,
        core.config.sweep_interval,
        sweep_job,
    );
    scheduled(
        monitor,
        "orphans",
        core,
        core.config.orphan_grace,
        orphans_job,
    )
    .should_restart(|ctx, err| {
        tracing::warn!(worker = ctx.name(), error = %err, "worker stopped; restarting");
        true
    })
    .shutdown_timeout(Duration::from_secs(30))
}

/// Registers a job that runs every `interval` in this process.
fn scheduled<F, Fut>(
    monitor: Monitor,
    name: &'static str,
    core: &Core,
    interval: Duration,
    job: F,
) -> Monitor
where
    F: Fn(Tick, Data<Core>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    let core = core.clone();
    let every = schedule(interval);
    monitor.register(move |restarts| {
        WorkerBuilder::new(format!(
            "{name}-{}-{restarts}",
            uuid::Uuid::new_v4().simple()
        ))
        .backend(CronScheduler::new(every.clone()))
        .data(core.clone())
        .build(job.clone())
    })
}

/// How often the sealer looks for new audit events: the sealed head trails the newest event by
/// about this much. apalis-cron cannot tick faster than once a second, hence a plain loop.
const SEAL_EVERY: Duration = Duration::from_millis(200);

/// Seals pending audit events until `stop` is cancelled; a database lock keeps one sealer at a
/// time across processes.
async fn seal_loop(core: Core, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(SEAL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                if let Err(err) = coffer_core::services::audit::seal(&core).await {
                    tracing::warn!(error = %err, "sealing audit events failed; retrying");
                }
            }
        }
    }
    // One last pass, so that a clean shutdown leaves nothing unsealed.
    let _ = coffer_core::services::audit::seal(&core).await;
}

/// Runs the workers until `shutdown` completes, then lets running jobs finish.
pub async fn run(
    core: Core,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let sealer = tokio::spawn(seal_loop(core.clone(), stop.clone()));
    let listener = tokio::spawn({
        let (core, stop) = (core.clone(), stop.clone());
        async move { core.queue.listen_for_tasks(stop).await }
    });
    let result = run_monitor(core, shutdown).await;
    stop.cancel();
    let _ = tokio::join!(sealer, listener);
    result
}

async fn run_monitor(
    core: Core,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    monitor(&core)
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("workers: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        for secs in [1, 5, 30, 60, 300, 3599, 3600, 7200, 86_400, 1_000_000] {
            let _ = schedule(Duration::from_secs(secs));
        }
    }
}
