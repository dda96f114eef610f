//! The tamper-evident audit log: the chain over its events (sealed one writer at a time, with
//! signed checkpoints kept in the blob store), its verification, and the admin's query and
//! export. Sealing only ever touches unsealed rows; nothing in Coffer updates or deletes a
//! sealed one.

mod checkpoint;
mod keys;
mod seal;
mod sqlite_pages;
mod verify;

use chrono::SecondsFormat;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _,
};

use entity::audit_event;

use crate::principal::Operator;
use crate::{Core, ServiceResult};

pub use crate::audit::encoding::{GENESIS, canonical_v1, chain_hash};
pub use checkpoint::{Checkpoint, public_keys};
pub use keys::check_audit_keys;
pub use seal::seal;
pub use verify::{Finding, Verification, verify};

/// Filters of the admin audit query; every one optional.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Sealed events after this sequence number (the cursor).
    pub after_seq: Option<i64>,
    pub limit: u64,
}

/// A sealed event as an admin reads it.
#[derive(Debug, Clone)]
pub struct EventView {
    pub seq: i64,
    pub id: uuid::Uuid,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub details: serde_json::Value,
    /// The chain hash, hex.
    pub hash: String,
}

impl From<audit_event::Model> for EventView {
    fn from(m: audit_event::Model) -> Self {
        Self {
            seq: m.seq.unwrap_or_default(),
            id: m.id,
            occurred_at: m.occurred_at,
            actor_kind: m.actor_kind,
            actor_id: m.actor_id,
            ip: m.ip,
            user_agent: m.user_agent,
            action: m.action,
            target_kind: m.target_kind,
            target_id: m.target_id,
            outcome: m.outcome,
            details: m.details,
            hash: m.hash.map(hex::encode).unwrap_or_default(),
        }
    }
}

/// One page of the admin's query.
#[derive(Debug, Clone)]
pub struct Page {
    /// Sealed events, oldest first.
    pub events: Vec<EventView>,
    /// The `after_seq` of the next page; `None` on the last one.
    pub next: Option<i64>,
}

/// Sealed events matching `query`, in chain order (in time order with a time filter: see
/// [`select`]), and the cursor of the next page.
pub async fn query(core: &Core, by: Operator<'_>, query: &Query) -> ServiceResult<Page> {
    by.require_audit_reader()?;
    let (rows, next) = rows(&core.db, query).await?;
    Ok(Page {
        events: rows.into_iter().map(EventView::from).collect(),
        next,
    })
}

/// [`query`]'s rows. Paging by sequence number stays correct while events are appended: new
/// ones only ever come after. With a time filter, pages follow time instead (see [`select`]);
/// the cursor is still an event's sequence number, and that event's time is looked up here.
async fn rows(
    db: &impl ConnectionTrait,
    query: &Query,
) -> Result<(Vec<audit_event::Model>, Option<i64>), sea_orm::DbErr> {
    let cursor_at = match query.after_seq {
        Some(after) if query.is_timed() => {
            audit_event::Entity::find()
                .filter(audit_event::Column::Seq.eq(after))
                .select_only()
                .column(audit_event::Column::OccurredAt)
                .into_tuple::<chrono::DateTime<chrono::Utc>>()
                .one(db)
                .await?
        }
        _ => None,
    };
    let mut rows = select(query, cursor_at).all(db).await?;
    let next = if rows.len() as u64 > query.limit {
        rows.truncate(query.limit as usize);
        rows.last().and_then(|r| r.seq)
    } else {
        None
    };
    Ok((rows, next))
}

impl Query {
    /// Whether the query names a time range.
    pub fn is_timed(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }
}

/// The one statement behind a page of [`query`] (one row more than the page, to know whether
/// another follows); public so that the benchmark harness can show its plan.
///
/// Without a time filter, events come in chain order. With one, they come in time order (ties
/// in chain order), read along the index on `(occurred_at, seq)`: the chain's order follows
/// time only roughly (an event is sealed after its transaction commits), so "the first events
/// since last week, in chain order" would make the database walk the chain from its start, 20
/// million rows at BENCHMARKS.md's scale, before the first one matches. `cursor_at` is the
/// time of the cursor's event (`after_seq`) when the query is timed.
pub fn select(
    query: &Query,
    cursor_at: Option<chrono::DateTime<chrono::Utc>>,
) -> sea_orm::Select<audit_event::Entity> {
    use audit_event::Column;
    let mut select = audit_event::Entity::find().filter(Column::Seq.is_not_null());
    if let Some(action) = &query.action {
        select = select.filter(Column::Action.eq(action.as_str()));
    }
    if let Some(actor) = &query.actor_id {
        select = select.filter(Column::ActorId.eq(actor.as_str()));
    }
    if let Some(target) = &query.target_id {
        select = select.filter(Column::TargetId.eq(target.as_str()));
    }
    if let Some(since) = query.since {
        select = select.filter(Column::OccurredAt.gte(since));
    }
    if let Some(until) = query.until {
        select = select.filter(Column::OccurredAt.lt(until));
    }
    match (query.after_seq, cursor_at) {
        (Some(after), Some(at)) if query.is_timed() => {
            select = select.filter(Column::OccurredAt.gte(at)).filter(
                sea_orm::Condition::any()
                    .add(Column::OccurredAt.gt(at))
                    .add(Column::Seq.gt(after)),
            );
        }
        (Some(after), _) => select = select.filter(Column::Seq.gt(after)),
        (None, _) => {}
    }
    if query.is_timed() {
        select = select.order_by_asc(Column::OccurredAt);
    }
    select.order_by_asc(Column::Seq).limit(query.limit + 1)
}

/// The stored hash of event `seq`, hex (to check an anchor kept outside Coffer).
pub async fn hash_at(core: &Core, by: Operator<'_>, seq: i64) -> ServiceResult<Option<String>> {
    by.require_audit_reader()?;
    Ok(stored_hash(&core.db, seq).await?)
}

async fn stored_hash(
    db: &impl ConnectionTrait,
    seq: i64,
) -> Result<Option<String>, sea_orm::DbErr> {
    Ok(audit_event::Entity::find()
        .filter(audit_event::Column::Seq.eq(seq))
        .one(db)
        .await?
        .and_then(|e| e.hash)
        .map(hex::encode))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    JsonLines,
    Csv,
}

const CSV_HEADER: &str = "seq,id,occurred_at,actor_kind,actor_id,ip,user_agent,action,target_kind,target_id,outcome,details,hash,mac_version,mac\n";

/// A CSV cell: quoted when needed, and defused when a spreadsheet would read it as a formula.
fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// A CSV line of `cells`, each made safe by [`csv_cell`].
pub(crate) fn csv_line(cells: &[String]) -> String {
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn export_line(event: &audit_event::Model, format: ExportFormat) -> String {
    let hash = event.hash.as_deref().map(hex::encode).unwrap_or_default();
    let time = event
        .occurred_at
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    match format {
        ExportFormat::JsonLines => {
            let mut line = serde_json::json!({
                "seq": event.seq, "id": event.id, "occurred_at": time, "actor_kind": event.actor_kind,
                "actor_id": event.actor_id, "ip": event.ip, "user_agent": event.user_agent,
                "action": event.action, "target_kind": event.target_kind, "target_id": event.target_id,
                "outcome": event.outcome, "details": event.details, "hash": hash,
                "mac_version": event.mac_version, "mac": event.mac.as_deref().map(hex::encode),
            })
            .to_string();
            line.push('\n');
            line
        }
        ExportFormat::Csv => {
            let cells = [
                event.seq.map(|s| s.to_string()).unwrap_or_default(),
                event.id.to_string(),
                time,
                event.actor_kind.clone(),
                event.actor_id.clone().unwrap_or_default(),
                event.ip.clone().unwrap_or_default(),
                event.user_agent.clone().unwrap_or_default(),
                event.action.clone(),
                event.target_kind.clone().unwrap_or_default(),
                event.target_id.clone().unwrap_or_default(),
                event.outcome.clone(),
                event.details.to_string(),
                hash,
                event.mac_version.map(|v| v.to_string()).unwrap_or_default(),
                event.mac.as_deref().map(hex::encode).unwrap_or_default(),
            ];
            csv_line(&cells)
        }
    }
}

/// Streams sealed events (optionally within `[since, until)`) page by page: memory stays flat
/// however long the log is.
pub fn export(
    db: sea_orm::DatabaseConnection,
    format: ExportFormat,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>> {
    use futures::StreamExt as _;
    let header = match format {
        ExportFormat::Csv => Some(bytes::Bytes::from_static(CSV_HEADER.as_bytes())),
        ExportFormat::JsonLines => None,
    };
    let pages = futures::stream::try_unfold(Some(0i64), move |cursor| {
        let db = db.clone();
        async move {
            let Some(after) = cursor else {
                return Ok(None);
            };
            let q = Query {
                since,
                until,
                after_seq: Some(after),
                limit: 1000,
                ..Query::default()
            };
            let (rows, next) = rows(&db, &q).await.map_err(std::io::Error::other)?;
            if rows.is_empty() {
                return Ok(None);
            }
            let chunk: String = rows.iter().map(|e| export_line(e, format)).collect();
            Ok(Some((bytes::Bytes::from(chunk), next)))
        }
    });
    futures::stream::iter(header.map(Ok)).chain(pages).boxed()
}

impl ExportFormat {
    /// `jsonl` or `csv`, as clients name them.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "jsonl" => Some(Self::JsonLines),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Csv => "csv",
        }
    }
}

/// An admin's export: recorded in the log itself (`audit.exported`) before the first byte
/// goes out, then streamed as [`export`] does.
pub async fn export_for(
    core: &Core,
    by: Operator<'_>,
    format: ExportFormat,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    meta: &crate::audit::RequestMeta,
) -> crate::ServiceResult<futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>>
{
    by.require_audit_reader()?;
    crate::audit::Event::new(crate::audit::Action::AuditExported, by.actor())
        .details(
            serde_json::json!({ "format": format.extension(), "since": since, "until": until }),
        )
        .from(meta)
        .record(&core.db, &core.audit)
        .await?;
    Ok(export(core.db.clone(), format, since, until))
}

#[cfg(test)]
mod export_tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "'-1");
    }
}
