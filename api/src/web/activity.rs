//! A share's access report in the web app: who opened the link, what was refused, what was
//! downloaded, from where; and the whole report as CSV.

use chrono::{DateTime, Utc};
use coffer_core::services::shares::{self, Entry};
use coffer_core::text::{Arg, size, t, t_with};
use minijinja::{Value, context};
use poem::http::StatusCode;
use poem::web::Path;
use poem::{Body, Request, Response};

use super::core;
use super::files::share_context;
use super::page::{self, Fields, when};
use super::session::SignedIn;

/// Events per page.
const ACTIVITY_PAGE: u64 = 50;

/// A detail of `entry` as text, if it has it.
fn detail<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry.details.get(name).and_then(|v| v.as_str())
}

/// What an event means, in a sentence (an action this page does not know is shown as its word).
fn sentence(entry: &Entry, file_name: &str) -> String {
    let time = |name| {
        detail(entry, name)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| when(t.with_timezone(&Utc)))
            .unwrap_or_default()
    };
    match entry.action.as_str() {
        "share.created" => t("activity-created"),
        "share.emailed" => t("activity-emailed"),
        "share.written_to_outbox" => t("activity-outbox"),
        "share.email_failed" => t("activity-email-failed"),
        "share.revoked" => t("activity-revoked"),
        "share.viewed" => match entry.details.get("repeated").and_then(|n| n.as_i64()) {
            Some(count) => t_with(
                "activity-viewed-repeated",
                [
                    ("count", Arg::from(count)),
                    ("from", Arg::from(time("from"))),
                    ("to", Arg::from(time("to"))),
                ],
            ),
            None => t("activity-viewed"),
        },
        "share.denied" => t_with(
            "activity-denied",
            [("reason", Arg::from(detail(entry, "reason").unwrap_or("")))],
        ),
        "share.download_started" => t_with(
            "activity-download-started",
            [("file", Arg::from(file_name))],
        ),
        "share.downloaded" => {
            let bytes = entry.details.get("bytes").and_then(|b| b.as_u64());
            match (
                entry.details.get("completed").and_then(|c| c.as_bool()),
                bytes,
            ) {
                (Some(false), Some(bytes)) => t_with(
                    "activity-download-stopped",
                    [
                        ("file", Arg::from(file_name)),
                        ("size", Arg::from(size(bytes))),
                    ],
                ),
                // Complete (events from before completion was recorded were counted at the start).
                _ => t_with("activity-downloaded", [("file", Arg::from(file_name))]),
            }
        }
        other => other.to_owned(),
    }
}

/// `GET /app/shares/{id}/activity`: the share's access report, a page at a time, oldest first.
/// Its owner's, or any share's for an admin.
#[poem::handler]
pub async fn activity(req: &Request, Path(id): Path<String>) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let share_id = page::parse_id(&me, &id, "share")?;
    let after = Fields::query(req)
        .given("after")
        .and_then(|a| a.parse::<i64>().ok());
    let report = shares::activity(core, &me.session.user, share_id, after, ACTIVITY_PAGE)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    let events: Vec<Value> = report
        .events
        .iter()
        .map(|e| {
            context! {
                seq => e.seq,
                when => when(e.occurred_at),
                what => sentence(e, &report.file_name),
                action => &e.action,
                outcome => &e.outcome,
                actor_kind => &e.actor_kind,
                ip => &e.ip,
                user_agent => &e.user_agent,
            }
        })
        .collect();
    let base = format!("/app/shares/{share_id}/activity");
    Ok(page::view(
        Some(&me),
        StatusCode::OK,
        "app/activity.html",
        context! {
            share => share_context(&report.share),
            file_id => report.share.file_id.to_string(),
            file_name => report.file_name,
            owner => report.owner_id == me.session.user.id,
            events => events,
            paged => after.is_some(),
            first_page => &base,
            next => report.next.map(|n| format!("{base}?after={n}")),
            export => format!("{base}/export"),
        },
    ))
}

/// `GET /app/shares/{id}/activity/export`: the whole report as a CSV attachment.
#[poem::handler]
pub async fn export(req: &Request, Path(id): Path<String>) -> poem::Result<Response> {
    let core = core(req)?;
    let me = SignedIn::from_view(req, core).await?;
    let share_id = page::parse_id(&me, &id, "share")?;
    let body = shares::export_csv(core, &me.session.user, share_id)
        .await
        .map_err(|e| page::service_error(Some(&me), e))?;
    Ok(Response::builder()
        .content_type("text/csv; charset=utf-8")
        .header(
            "Content-Disposition",
            format!("attachment; filename=\"share-{share_id}-activity.csv\""),
        )
        .body(Body::from_bytes_stream(body)))
}
