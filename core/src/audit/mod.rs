//! Audit events, written in the same transaction as the action they record, each with a MAC
//! under the audit key. Sealing the chain (sequence numbers and hashes) is a separate step.

mod action;
pub mod encoding;
pub(crate) mod link;
mod repeats;
mod writer;

pub use action::Action;
pub use repeats::RECORDED_PER_WINDOW;
pub use writer::{AuditWriter, Change};

use std::sync::Mutex;
use std::time::Duration;

use chrono::{SubsecRound as _, Utc};
use sea_orm::{ConnectionTrait, EntityTrait as _};
use serde_json::{Value, json};
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
    /// A user (or an admin) acting through a personal API token: recorded as the user, with
    /// the token named in the event's details (`token`).
    Token {
        user: Uuid,
        admin: bool,
        token: Uuid,
    },
    Recipient(Uuid),
    System,
}

impl Actor {
    fn parts(self) -> (&'static str, Option<String>) {
        match self {
            Self::Anonymous => ("anonymous", None),
            Self::User(id) => ("user", Some(id.to_string())),
            Self::Admin(id)
            | Self::Token {
                user: id,
                admin: true,
                ..
            } => ("admin", Some(id.to_string())),
            Self::Token { user, .. } => ("user", Some(user.to_string())),
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
    fn into_model(mut self) -> audit_event::Model {
        let (actor_kind, actor_id) = self.actor.parts();
        if let Actor::Token { token, .. } = self.actor
            && let Value::Object(details) = &mut self.details
        {
            details.insert("token".to_owned(), Value::String(token.to_string()));
        }
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
