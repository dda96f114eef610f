//! Audit events, written in the same transaction as the action they record. Sealing the chain
//! (sequence numbers and hashes) is a separate step.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait as _};
use serde_json::{Value, json};
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

    /// Inserts the event through `conn` — pass the action's transaction.
    pub async fn record(self, conn: &impl ConnectionTrait) -> Result<(), sea_orm::DbErr> {
        let (actor_kind, actor_id) = self.actor.parts();
        let (target_kind, target_id) = match self.target {
            Some((kind, id)) => (Some(kind.to_owned()), Some(id)),
            None => (None, None),
        };
        let row = audit_event::ActiveModel {
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
        };
        audit_event::Entity::insert(row).exec(conn).await?;
        Ok(())
    }
}
