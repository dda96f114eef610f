//! Audit events, written in the same transaction as the action they record. Sealing the chain
//! (sequence numbers and hashes) is a separate step.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait as _};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use entity::audit_event;

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
    action: &'static str,
    actor: Actor,
    target: Option<(&'static str, String)>,
    outcome: Outcome,
    details: Value,
    meta: RequestMeta,
}

impl Event {
    pub fn new(action: &'static str, actor: Actor) -> Self {
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

    /// Inserts the event through `conn` — pass the action's transaction. An event that belongs
    /// to no transaction of its own goes through [`AuditWriter::record`] instead.
    pub async fn record(self, conn: &impl ConnectionTrait) -> Result<(), sea_orm::DbErr> {
        audit_event::Entity::insert(self.into_row())
            .exec(conn)
            .await?;
        Ok(())
    }

    fn into_row(self) -> audit_event::ActiveModel {
        let (actor_kind, actor_id) = self.actor.parts();
        let (target_kind, target_id) = match self.target {
            Some((kind, id)) => (Some(kind.to_owned()), Some(id)),
            None => (None, None),
        };
        audit_event::ActiveModel {
            id: Set(Uuid::now_v7()),
            occurred_at: Set(Utc::now()),
            actor_kind: Set(actor_kind.to_owned()),
            actor_id: Set(actor_id),
            ip: Set(self.meta.ip),
            user_agent: Set(self
                .meta
                .user_agent
                .map(|ua| ua.chars().take(512).collect())),
            action: Set(self.action.to_owned()),
            target_kind: Set(target_kind),
            target_id: Set(target_id),
            outcome: Set(self.outcome.as_str().to_owned()),
            details: Set(self.details),
            seq: Set(None),
            hash: Set(None),
        }
    }
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
}

impl AuditWriter {
    /// Starts the writer on the current runtime; it stops when the last handle is dropped.
    pub fn start(db: DatabaseConnection, gate: crate::db::WriteGate) -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while incoming.recv_many(&mut batch, MOST_PER_INSERT).await > 0 {
                let (rows, waiting): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let entered = gate.enter().await;
                let result = audit_event::Entity::insert_many(rows).exec(&db).await;
                drop(entered);
                for request in waiting {
                    let _ = request.send(match &result {
                        Ok(_) => Ok(()),
                        Err(err) => Err(copy_of(err)),
                    });
                }
            }
        });
        Self { queue }
    }

    /// Records `event` on its own; returns once it is committed.
    pub async fn record(&self, event: Event) -> Result<(), sea_orm::DbErr> {
        let (done, committed) = oneshot::channel();
        let stopped = || sea_orm::DbErr::Custom("the audit writer has stopped".into());
        self.queue
            .send((event.into_row(), done))
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
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
