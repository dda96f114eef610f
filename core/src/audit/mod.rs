//! Audit events, written in the same transaction as the action they record, each with a MAC
//! under the audit key. Sealing the chain (sequence numbers and hashes) is a separate step.

mod action;
pub mod encoding;
mod repeats;

pub use action::Action;
pub use repeats::RECORDED_PER_WINDOW;
use repeats::{Repeat, Repeats};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SubsecRound as _, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait as _};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use entity::audit_event;

use crate::crypto::KeyStore;

/// Where a request came from.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Anonymous,
    User(Uuid),
    Admin(Uuid),
    Recipient(Uuid),
    System,
}

impl Actor {
    fn parts(self) -> (&'static str, Option<String>) {
        match self {
            Self::Anonymous => ("anonymous", None),
            Self::User(id) => ("user", Some(id.to_string())),
            Self::Admin(id) => ("admin", Some(id.to_string())),
            Self::Recipient(share) => ("recipient", Some(share.to_string())),
            Self::System => ("system", None),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    action: Action,
    actor: Actor,
    target: Option<(&'static str, String)>,
    outcome: Outcome,
    details: Value,
    meta: RequestMeta,
}

impl Event {
    pub fn new(action: Action, actor: Actor) -> Self {
        Self {
            action,
            actor,
            target: None,
            outcome: Outcome::Success,
            details: json!({}),
            meta: RequestMeta::default(),
        }
    }

    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.target = Some((kind, id.to_string()));
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn from(mut self, meta: &RequestMeta) -> Self {
        self.meta = meta.clone();
        self
    }

    /// Inserts the event through `conn` — pass the action's transaction — with its MAC under
    /// `audit`'s key. An event that belongs to no transaction of its own goes through
    /// [`AuditWriter::record`] instead.
    pub async fn record(
        self,
        conn: &impl ConnectionTrait,
        audit: &AuditWriter,
    ) -> Result<(), sea_orm::DbErr> {
        audit_event::Entity::insert(audit.row(self)?)
            .exec(conn)
            .await?;
        Ok(())
    }

    /// The row of this event, unauthenticated (see [`AuditWriter::row`]).
    fn into_model(self) -> audit_event::Model {
        let (actor_kind, actor_id) = self.actor.parts();
        let (target_kind, target_id) = match self.target {
            Some((kind, id)) => (Some(kind.to_owned()), Some(id)),
            None => (None, None),
        };
        audit_event::Model {
            id: Uuid::now_v7(),
            // Both databases keep microseconds: the MAC covers what is stored.
            occurred_at: Utc::now().trunc_subsecs(6),
            actor_kind: actor_kind.to_owned(),
            actor_id,
            ip: self.meta.ip,
            user_agent: self
                .meta
                .user_agent
                .map(|ua| ua.chars().take(512).collect()),
            action: self.action.as_str().to_owned(),
            target_kind,
            target_id,
            outcome: self.outcome.as_str().to_owned(),
            details: self.details,
            seq: None,
            hash: None,
            mac_version: None,
            mac: None,
        }
    }
}

/// The row of `event`, authenticated under the newest audit key of `keys`.
fn authenticated_row(
    keys: &KeyStore,
    event: Event,
) -> Result<audit_event::ActiveModel, sea_orm::DbErr> {
    let ring = keys.ring();
    let key = ring.newest_audit_key().ok_or_else(|| {
        sea_orm::DbErr::Custom("the keyring holds no audit key: no event can be written".into())
    })?;
    let mut model = event.into_model();
    encoding::authenticate(&mut model, key);
    Ok(model.into())
}

/// Events waiting for the writer, each with the request that waits for its commit.
type Pending = (
    audit_event::ActiveModel,
    oneshot::Sender<Result<(), sea_orm::DbErr>>,
);

/// Most events one insert takes (13 columns each: far below every database's parameter limit).
const MOST_PER_INSERT: usize = 256;

/// Records events that are the whole of their action (a download, a view, a refusal): every
/// request still waits until its event is committed, but the events of requests that arrive
/// together are committed together, in one insert. Under load that is one commit (one WAL
/// write, one fsync on PostgreSQL) for many downloads instead of one each.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    queue: mpsc::UnboundedSender<Pending>,
    repeats: Arc<Repeats>,
    keys: Arc<KeyStore>,
}

impl AuditWriter {
    /// Starts the writer on the current runtime; it stops when the last handle is dropped.
    /// `repeat_window` is the window of [`AuditWriter::record_repeatable`].
    pub fn start(
        db: DatabaseConnection,
        gate: crate::db::WriteGate,
        keys: Arc<KeyStore>,
        repeat_window: Duration,
    ) -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<Pending>();
        let repeats = Arc::new(Repeats::new(repeat_window));
        let closing = repeats.clone();
        let signing = keys.clone();
        tokio::spawn(async move {
            let insert = |rows: Vec<audit_event::ActiveModel>| {
                let (db, gate) = (&db, &gate);
                async move {
                    let entered = gate.enter().await;
                    let result = audit_event::Entity::insert_many(rows).exec(db).await;
                    drop(entered);
                    result
                }
            };
            let mut closes = tokio::time::interval(closing.window / 2);
            closes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut batch = Vec::new();
            loop {
                tokio::select! {
                    received = incoming.recv_many(&mut batch, MOST_PER_INSERT) => {
                        if received == 0 {
                            break;
                        }
                        let (rows, waiting): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                        let result = insert(rows).await;
                        for request in waiting {
                            let _ = request.send(match &result {
                                Ok(_) => Ok(()),
                                Err(err) => Err(copy_of(err)),
                            });
                        }
                    }
                    _ = closes.tick() => {
                        let rows = closing.close(Some(Utc::now()), &signing);
                        if !rows.is_empty() && let Err(err) = insert(rows).await {
                            tracing::warn!(error = %err, "could not record repeated audit events");
                        }
                    }
                }
            }
            // The last handle is gone: what the open windows counted is recorded now.
            let rows = closing.close(None, &signing);
            if !rows.is_empty()
                && let Err(err) = insert(rows).await
            {
                tracing::warn!(error = %err, "could not record repeated audit events");
            }
        });
        Self {
            queue,
            repeats,
            keys,
        }
    }

    /// The row of `event`, with its MAC under the newest audit key.
    pub fn row(&self, event: Event) -> Result<audit_event::ActiveModel, sea_orm::DbErr> {
        authenticated_row(&self.keys, event)
    }

    /// Records `event` on its own; returns once it is committed.
    pub async fn record(&self, event: Event) -> Result<(), sea_orm::DbErr> {
        self.insert(self.row(event)?).await
    }

    async fn insert(&self, row: audit_event::ActiveModel) -> Result<(), sea_orm::DbErr> {
        let (done, committed) = oneshot::channel();
        let stopped = || sea_orm::DbErr::Custom("the audit writer has stopped".into());
        self.queue.send((row, done)).map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }

    /// Records an event that anyone on the internet can cause as often as they like (a view of
    /// a link, a hit on a dead one, a failed sign-in). The first [`RECORDED_PER_WINDOW`] of each
    /// `key` in a window are recorded one by one, as [`AuditWriter::record`] would; the rest are
    /// counted, and recorded as one event of the same action when the window closes, with
    /// `details.repeated` (how many), `details.from` and `details.to` (their first and last
    /// time), and the last one's actor, target and address.
    pub async fn record_repeatable(&self, key: String, event: Event) -> Result<(), sea_orm::DbErr> {
        match self.repeats.count(key, event, Utc::now(), &self.keys)? {
            Repeat::Record(event, closed) => {
                if let Some(row) = closed {
                    self.insert(row).await?;
                }
                self.record(*event).await
            }
            Repeat::Counted(Some(row)) => self.insert(row).await,
            Repeat::Counted(None) => Ok(()),
        }
    }
}

/// The same failure for every request of a batch, of the same kind (an unreachable database
/// must stay a 503 for each of them).
fn copy_of(err: &sea_orm::DbErr) -> sea_orm::DbErr {
    use sea_orm::DbErr;
    match err {
        DbErr::ConnectionAcquire(e) => DbErr::ConnectionAcquire(*e),
        DbErr::Conn(e) => DbErr::Conn(e.clone()),
        DbErr::Exec(e) => DbErr::Exec(e.clone()),
        DbErr::Query(e) => DbErr::Query(e.clone()),
        other => DbErr::Custom(other.to_string()),
    }
}

/// The audit trail's own trouble, each kind apart.
#[derive(Debug, Default)]
pub struct Alarms {
    /// A pending event that may not be sealed.
    pub sealing: Alarm,
    /// A chain behind its newest checkpoint, or a checkpoint that could not be written.
    pub checkpoints: Alarm,
    /// When this process last looked whether a checkpoint is due without having sealed.
    looked: Mutex<Option<std::time::Instant>>,
}

impl Alarms {
    /// Whether `every` has passed since this returned true last (true the first time).
    pub fn look_due(&self, every: Duration) -> bool {
        let mut looked = self
            .looked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if looked.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        *looked = Some(now);
        true
    }
}

/// A problem that is logged as an error when it first appears or changes, not at every pass.
#[derive(Debug, Default)]
pub struct Alarm(Mutex<Option<String>>);

impl Alarm {
    pub fn raise(&self, problem: String) {
        let mut current = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_deref() != Some(problem.as_str()) {
            tracing::error!(problem = %problem, "audit log");
            *current = Some(problem);
        }
    }

    pub fn clear(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    pub fn current(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
