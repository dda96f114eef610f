//! The audit log for admins: filters, paging, exports and verifying the chain.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use coffer_core::Core;
use coffer_core::principal::Operator;
use coffer_core::services::audit::{self, ExportFormat, Verification};
use coffer_core::text::t;
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::{Body, Request, Response};

use super::admin::{admin_form, admin_view};
use super::page::{self, Fields};
use super::session::SignedIn;
use super::{INVALID, core};
use crate::auth::meta;

const AUDIT_PAGE: u64 = 50;

/// A time typed in a filter: RFC 3339, or a browser's `datetime-local` / date value read as UTC.
fn time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
}

/// Since and until, each optional.
type Period = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The audit filters as typed, and as parsed (or the message for the one that is wrong).
struct Filters {
    action: Option<String>,
    actor_id: Option<String>,
    target_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl Filters {
    fn from(fields: &Fields) -> Self {
        let get = |name| fields.given(name).map(str::to_owned);
        Self {
            action: get("action"),
            actor_id: get("actor_id"),
            target_id: get("target_id"),
            since: get("since"),
            until: get("until"),
        }
    }

    fn times(&self) -> Result<Period, String> {
        // `error` is the message id of the refusal.
        let parse = |text: &Option<String>, error: &str| match text {
            None => Ok(None),
            Some(text) => time(text).map(Some).ok_or_else(|| t(error)),
        };
        Ok((
            parse(&self.since, "audit-error-since")?,
            parse(&self.until, "audit-error-until")?,
        ))
    }

    /// A query string of the filters (for paging and the export links) plus `extra`.
    fn query(&self, names: &[&str], extra: &[(&str, String)]) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("action", &self.action),
            ("actor_id", &self.actor_id),
            ("target_id", &self.target_id),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(value) = value
                && names.contains(&name)
            {
                out.append_pair(name, value);
            }
        }
        for (name, value) in extra {
            out.append_pair(name, value);
        }
        out.finish()
    }

    fn context(&self) -> Value {
        context! {
            action => &self.action, actor_id => &self.actor_id, target_id => &self.target_id,
            since => &self.since, until => &self.until,
        }
    }
}

const ALL_FILTERS: &[&str] = &["action", "actor_id", "target_id", "since", "until"];

fn event_context(e: &audit::EventView) -> Value {
    context! {
        seq => e.seq,
        when => e.occurred_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        actor_kind => &e.actor_kind,
        actor_id => &e.actor_id,
        action => &e.action,
        target_kind => &e.target_kind,
        target_id => &e.target_id,
        outcome => &e.outcome,
        ip => &e.ip,
        details => e.details.to_string(),
    }
}

/// The audit page: filtered events, paging, export links, and a verification's result.
async fn audit_page(
    core: &Core,
    me: &SignedIn,
    fields: &Fields,
    verification: Option<Verification>,
) -> poem::Result<Response> {
    let filters = Filters::from(fields);
    let after_seq = fields
        .given("after_seq")
        .and_then(|s| s.parse::<i64>().ok());
    let (status, events, next, error) = match filters.times() {
        Err(text) => (INVALID, Vec::new(), None, Some(text)),
        Ok((since, until)) => {
            let query = audit::Query {
                action: filters.action.clone(),
                actor_id: filters.actor_id.clone(),
                target_id: filters.target_id.clone(),
                since,
                until,
                after_seq,
                limit: AUDIT_PAGE,
            };
            let found = audit::query(core, Operator::Admin(&me.session.user), &query)
                .await
                .map_err(|e| page::service_error(Some(me), e))?;
            let events: Vec<Value> = found.events.iter().map(event_context).collect();
            (StatusCode::OK, events, found.next, None)
        }
    };
    let export = |format: &str| {
        format!(
            "/app/admin/audit/export?{}",
            filters.query(&["since", "until"], &[("format", format.to_owned())])
        )
    };
    let verification = verification.map(|v| {
        let findings: Vec<_> = v
            .findings
            .iter()
            .map(|f| context! { kind => f.kind(), detail => f.describe() })
            .collect();
        let checkpoint = v.checkpoint.map(|c| {
            context! {
                seq => c.seq, hash => c.hash, key_version => c.key_version,
                at => c.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            }
        });
        context! {
            ok => v.ok, checked => v.checked, head_seq => v.head_seq,
            head_hash => v.head_hash, first_bad_seq => v.first_bad_seq,
            checkpoint => checkpoint, findings => findings,
        }
    });
    Ok(page::view(
        Some(me),
        status,
        "app/audit.html",
        context! {
            filters => filters.context(),
            events => events,
            error => error,
            paged => after_seq.is_some(),
            first_page => format!("/app/admin/audit?{}", filters.query(ALL_FILTERS, &[])),
            next => next.map(|seq| format!(
                "/app/admin/audit?{}",
                filters.query(ALL_FILTERS, &[("after_seq", seq.to_string())])
            )),
            export_jsonl => export("jsonl"),
            export_csv => export("csv"),
            verification => verification,
        },
    ))
}

#[poem::handler]
pub async fn audit_log(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = admin_view(req, core).await?;
    audit_page(core, &me, &Fields::query(req), None).await
}

/// `POST /app/admin/audit/verify`: walks the chain and shows the result above the same filters.
#[poem::handler]
pub async fn verify(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, fields) = admin_form(req, body).await?;
    let verification = audit::verify(core, Operator::Admin(&me.session.user))
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    audit_page(core, &me, &fields, Some(verification)).await
}

/// The export, streamed and audited as `GET /api/v1/admin/audit/export` does it.
#[poem::handler]
pub async fn export_log(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = admin_view(req, core).await?;
    let fields = Fields::query(req);
    let bad = |text: &str| {
        page::fail(page::message(
            Some(&me),
            StatusCode::BAD_REQUEST,
            &t("error-failed-heading"),
            text,
        ))
    };
    let format = match fields.given("format") {
        None => ExportFormat::JsonLines,
        Some(name) => ExportFormat::parse(name).ok_or_else(|| bad(&t("audit-error-format")))?,
    };
    let (since, until) = Filters::from(&fields).times().map_err(|text| bad(&text))?;
    let body = audit::export_for(
        core,
        Operator::Admin(&me.session.user),
        format,
        since,
        until,
        &meta(req),
    )
    .await
    .map_err(|e| page::service_error(Some(&me), e))?;
    let ext = format.extension();
    let kind = match format {
        ExportFormat::JsonLines => "application/x-ndjson",
        ExportFormat::Csv => "text/csv; charset=utf-8",
    };
    let name = format!("coffer-audit-{}.{ext}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    Ok(Response::builder()
        .content_type(kind)
        .header(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from_bytes_stream(body)))
}
