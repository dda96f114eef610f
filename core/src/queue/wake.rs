//! Waking workers the moment a task is queued, instead of at their next poll: in this process
//! directly, in other processes through a Redis channel.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::Notify;

use super::{Connection, Queue};

/// Waits between attempts to subscribe to other processes' wake-ups.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(200);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(10);

/// The Redis channel on which a process that queued a task tells the workers of every other
/// process; the message is the queue's name.
pub(super) fn wake_channel(namespace: &str) -> String {
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
    pub(super) fn new(queues: &[&'static str]) -> Self {
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

impl Queue {
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
}
