//! Admin pages: the audit log (filters, export, chain verification), master keys (rotation with
//! live progress) and accounts (role, enable and disable). Other users get a 403 page.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use coffer_core::services::accounts::{self, Account};
use coffer_core::services::audit::{self, ExportFormat, Verification};
use coffer_core::services::keys;
use coffer_core::services::users::Role;
use coffer_core::{Core, ServiceError};
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::web::Path;
use poem::{Body, Request, Response};

use super::account::sentence;
use super::page::{self, Fields, when};
use super::session::SignedIn;
use super::{INVALID, core};
use crate::auth::meta;

const AUDIT_PAGE: u64 = 50;
const USERS_PAGE: u64 = 50;

/// The signed-in admin of a page view, or the 403 page.
async fn admin_view(req: &Request, core: &Core) -> poem::Result<SignedIn> {
    let me = SignedIn::from_view(req, core).await?;
    if me.is_admin() {
        Ok(me)
    } else {
        Err(page::forbidden(&me))
    }
}

/// An admin's form post (CSRF checked first), or the 403 page.
async fn admin_form(req: &Request, body: Body) -> poem::Result<(&Core, SignedIn, Fields)> {
    let (core, me, fields) = SignedIn::post(req, body).await?;
    if me.is_admin() {
        Ok((core, me, fields))
    } else {
        Err(page::forbidden(&me))
    }
}

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
        let parse = |text: &Option<String>, label: &str| match text {
            None => Ok(None),
            Some(t) => time(t).map(Some).ok_or_else(|| {
                format!("{label} is not a time: write it like 2026-03-01T09:30 (UTC).")
            }),
        };
        Ok((
            parse(&self.since, "“Since”")?,
            parse(&self.until, "“Until”")?,
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

fn event_context(e: &entity::audit_event::Model) -> Value {
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
            let (events, next) = audit::query(&core.db, &query)
                .await
                .map_err(|e| page::service_error(Some(me), ServiceError::from(e)))?;
            let events: Vec<Value> = events.iter().map(event_context).collect();
            (StatusCode::OK, events, next, None)
        }
    };
    let export = |format: &str| {
        format!(
            "/app/admin/audit/export?{}",
            filters.query(&["since", "until"], &[("format", format.to_owned())])
        )
    };
    let verification = verification.map(|v| {
        context! {
            ok => v.ok, checked => v.checked, head_seq => v.head_seq,
            head_hash => v.head_hash, first_bad_seq => v.first_bad_seq,
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
    let verification = audit::verify(&core.db)
        .await
        .map_err(|e| page::service_error(Some(&me), ServiceError::from(e)))?;
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
            "That did not work",
            text,
        ))
    };
    let format = match fields.given("format") {
        None => ExportFormat::JsonLines,
        Some(name) => {
            ExportFormat::parse(name).ok_or_else(|| bad("The format must be jsonl or csv."))?
        }
    };
    let (since, until) = Filters::from(&fields).times().map_err(|text| bad(&text))?;
    let body = audit::export_for(
        core,
        me.session.user.actor(),
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

async fn keys_page(
    core: &Core,
    me: &SignedIn,
    status: StatusCode,
    error: Option<&str>,
) -> poem::Result<Response> {
    let fail = |e| page::service_error(Some(me), e);
    let versions = keys::versions(core).await.map_err(fail)?;
    let rotation = keys::progress(core).await.map_err(fail)?;
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            context! {
                version => v.version, state => &v.state, created => when(v.created_at),
                wrapped_keys => v.wrapped_keys,
            }
        })
        .collect();
    let running = rotation.as_ref().is_some_and(|r| r.state == "running");
    let rotation = rotation.map(|r| {
        let percent = if r.total > 0 {
            (r.done.min(r.total) * 100 / r.total).clamp(0, 100)
        } else {
            100
        };
        context! {
            from => r.from, to => r.to, done => r.done, total => r.total, state => &r.state,
            percent => percent, started => when(r.started_at), finished => r.finished_at.map(when),
        }
    });
    Ok(page::view(
        Some(me),
        status,
        "app/keys.html",
        context! { versions => versions, rotation => rotation, refresh => running, error => error },
    ))
}

#[poem::handler]
pub async fn key_versions(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = admin_view(req, core).await?;
    keys_page(core, &me, StatusCode::OK, None).await
}

#[poem::handler]
pub async fn rotate(req: &Request, body: Body) -> poem::Result<Response> {
    let (core, me, _) = admin_form(req, body).await?;
    match keys::rotate(core, me.session.user.actor(), &meta(req)).await {
        Ok(_) => Ok(page::redirect("/app/admin/keys")),
        Err(ServiceError::Conflict(detail)) => {
            keys_page(core, &me, StatusCode::CONFLICT, Some(&sentence(&detail))).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}

fn account_context(a: &Account, me: &SignedIn) -> Value {
    context! {
        id => a.id.to_string(), email => &a.email, role => a.role.as_str(),
        disabled => a.disabled, created => when(a.created_at), is_me => a.id == me.session.user.id,
    }
}

async fn users_page(
    core: &Core,
    me: &SignedIn,
    cursor: Option<&str>,
    status: StatusCode,
    error: Option<&str>,
) -> poem::Result<Response> {
    let (rows, next) = accounts::list(core, cursor, USERS_PAGE)
        .await
        .map_err(|e| page::service_error(Some(me), e))?;
    let rows: Vec<Value> = rows.iter().map(|a| account_context(a, me)).collect();
    let page_link = |c: &str| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("cursor", c)
            .finish();
        format!("/app/admin/users?{query}")
    };
    Ok(page::view(
        Some(me),
        status,
        "app/users.html",
        context! {
            users => rows,
            cursor => cursor,
            paged => cursor.is_some(),
            next => next.as_deref().map(page_link),
            error => error,
        },
    ))
}

#[poem::handler]
pub async fn users(req: &Request) -> poem::Result<Response> {
    let core = core(req)?;
    let me = admin_view(req, core).await?;
    let query = Fields::query(req);
    users_page(core, &me, query.given("cursor"), StatusCode::OK, None).await
}

/// `POST /app/admin/users/{id}`: `role` and/or `disabled` (`true` or `false`), as the API's
/// `PATCH` takes them; back to the same page of the list.
#[poem::handler]
pub async fn change_user(
    req: &Request,
    Path(id): Path<String>,
    body: Body,
) -> poem::Result<Response> {
    let (core, me, fields) = admin_form(req, body).await?;
    let id = page::parse_id(&me, &id, "user")?;
    let cursor = fields.given("cursor");
    let role = match fields.given("role") {
        None => None,
        Some(raw) => match Role::parse(raw) {
            Some(role) => Some(role),
            None => {
                return users_page(
                    core,
                    &me,
                    cursor,
                    INVALID,
                    Some("The role must be user or admin."),
                )
                .await;
            }
        },
    };
    let disabled = match fields.given("disabled") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            let text = "Choose to enable or to disable the account.";
            return users_page(core, &me, cursor, INVALID, Some(text)).await;
        }
    };
    let change = accounts::Change { role, disabled };
    match accounts::change(core, &me.session.user, id, change, &meta(req)).await {
        Ok(_) => Ok(page::redirect(&match cursor {
            Some(c) => format!(
                "/app/admin/users?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("cursor", c)
                    .finish()
            ),
            None => "/app/admin/users".to_owned(),
        })),
        Err(ServiceError::Conflict(detail)) => {
            let text = sentence(&detail);
            users_page(core, &me, cursor, StatusCode::CONFLICT, Some(&text)).await
        }
        Err(ServiceError::Invalid(detail)) => {
            let text = sentence(&detail);
            users_page(core, &me, cursor, INVALID, Some(&text)).await
        }
        Err(err) => Err(page::service_error(Some(&me), err)),
    }
}
