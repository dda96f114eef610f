//! Download receipts: a share that asks for them emails its owner when a recipient completes a
//! download (who, which file, when, from where) — at once, or in at most one email a day for an
//! owner who prefers it. A download that stops short sends none.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::{Value, json};

use crate::common::smtp::{Mail, SmtpServer};
use crate::common::web::Browser;
use crate::common::{TestApp, Topology, User, eventually, pattern, pdf};
use coffer::Roles;

const RITA: &str = "rita@example.org";

async fn spawn(topology: Topology, smtp: &SmtpServer) -> TestApp {
    // The sweep, which sends a daily owner's email, runs every second.
    let vars = [
        ("COFFER_SMTP_URL", smtp.url.as_str()),
        ("COFFER_SWEEP_INTERVAL_SECS", "1"),
    ];
    TestApp::spawn_with(topology, &vars, Roles::ALL).await
}

/// A ready file of `user`'s shared with `RITA` as `share` asks: the share and the link.
async fn shared(
    app: &TestApp,
    smtp: &SmtpServer,
    user: &User,
    bytes: Vec<u8>,
    share: Value,
) -> (Value, String) {
    let report = ("report.pdf", bytes);
    let (_, created, mail) = app.emailed_share(smtp, user, report, RITA, share).await;
    (created, mail.link())
}

/// The receipts `user` has been emailed, once there are `count`.
async fn receipts(smtp: &SmtpServer, user: &User, count: usize) -> Vec<Mail> {
    eventually("receipts emailed", Duration::from_secs(30), || async {
        let receipts: Vec<Mail> = smtp
            .mails()
            .into_iter()
            .filter(|m| m.to.contains(&user.email))
            .filter(|m| m.header("Subject").contains("download"))
            .collect();
        if receipts.len() >= count {
            return Ok(receipts);
        }
        Err(format!("{} of {count} receipts", receipts.len()))
    })
    .await
}

async fn download(link: &str, agent: &str) -> Vec<u8> {
    let response = reqwest::Client::new()
        .get(format!("{link}/download"))
        .header("user-agent", agent)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.expect("body").to_vec()
}

/// The share's `share.downloaded` events so far (sealed or not), once there are `count`.
async fn ended(app: &TestApp, share: &str, count: usize) {
    eventually(
        "downloads' ends recorded",
        Duration::from_secs(30),
        || async {
            let ended = entity::audit_event::Entity::find()
                .filter(entity::audit_event::Column::TargetId.eq(share))
                .filter(entity::audit_event::Column::Action.eq("share.downloaded"))
                .all(app.core().db())
                .await
                .expect("audit rows")
                .len();
            if ended >= count {
                return Ok(());
            }
            Err(format!("{ended} of {count}"))
        },
    )
    .await;
}

async fn an_owner_is_told_of_each_complete_download(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = spawn(topology, &smtp).await;
    let ann = app.user().await;
    // Bigger than what loopback buffers hold, so that the server sees the cut.
    let bytes = pdf(&pattern(24 << 20, 5));
    let (share, link) = shared(
        &app,
        &smtp,
        &ann,
        bytes.clone(),
        json!({ "receipts": true }),
    )
    .await;
    assert_eq!(share["receipts"], true);
    let id = share["id"].as_str().expect("id");

    // A download cut short tells the owner nothing.
    let mut cut = reqwest::Client::new()
        .get(format!("{link}/download"))
        .send()
        .await
        .expect("download");
    let mut received = 0;
    while received < 1 << 20 {
        received += cut.chunk().await.expect("chunk").expect("more").len();
    }
    drop(cut);
    ended(&app, id, 1).await;

    assert_eq!(download(&link, "receipt-test/1.0 (bell)").await, bytes);
    let receipt = receipts(&smtp, &ann, 1).await.remove(0);
    assert_eq!(
        receipt.header("Subject"),
        "rita@example.org downloaded “report.pdf”"
    );
    let text = receipt.part("text/plain");
    for part in [
        "rita@example.org downloaded “report.pdf” to the end",
        "From: 127.0.0.1 (receipt-test/1.0 (bell))",
        "/app/preferences",
    ] {
        assert!(text.contains(part), "{part} in:\n{text}");
    }
    // One receipt: the complete download's, none for the cut one.
    ended(&app, id, 2).await;
    assert_eq!(receipts(&smtp, &ann, 1).await.len(), 1);
    app.stop().await;
}

async fn a_daily_owner_gets_one_email_for_the_day(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = spawn(topology, &smtp).await;
    let ann = app.user().await;
    let set: Value = app
        .http
        .patch(app.url("/api/v1/me/preferences"))
        .bearer_auth(&ann.token)
        .json(&json!({ "receipts_on_new_shares": true, "receipts_daily": true }))
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(
        set,
        json!({ "receipts_on_new_shares": true, "receipts_daily": true })
    );

    // The share asks for receipts because the preference says so.
    let bytes = pdf(b"the minutes");
    let (share, link) = shared(&app, &smtp, &ann, bytes.clone(), json!({})).await;
    assert_eq!(share["receipts"], true);
    download(&link, "first/1").await;
    download(&link, "second/2").await;

    // Both wait for the day's email (switching to daily started the day); moving the day's
    // start back sends it.
    use entity::{download_receipt as receipt, receipt_preference as preference};
    eventually("two receipts waiting", Duration::from_secs(30), || async {
        let waiting = receipt::Entity::find()
            .filter(receipt::Column::SentAt.is_null())
            .all(app.core().db())
            .await
            .expect("receipts");
        if waiting.len() == 2 {
            return Ok(());
        }
        Err(format!("{} waiting", waiting.len()))
    })
    .await;
    preference::Entity::update_many()
        .col_expr(
            preference::Column::DigestSentAt,
            Expr::value(Utc::now() - chrono::Duration::hours(25)),
        )
        .exec(app.core().db())
        .await
        .expect("a day back");
    let digest = receipts(&smtp, &ann, 1).await;
    assert_eq!(digest.len(), 1, "one email for the day, none per download");
    assert_eq!(
        digest[0].header("Subject"),
        "2 downloads of files you shared"
    );
    let text = digest[0].part("text/plain");
    assert!(
        text.contains("first/1") && text.contains("second/2"),
        "{text}"
    );
    app.stop().await;
}

async fn owners_set_receipts_in_the_web_app_and_per_share(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = spawn(topology, &smtp).await;
    let ann = app.user().await;
    let mut browser = Browser::with_session(&app, &ann.token);
    let page = browser.get("/app/preferences").await;
    assert_eq!(page.status, StatusCode::OK);
    let saved = browser
        .post(
            "/app/preferences",
            &[
                ("csrf", &page.csrf()),
                ("receipts_on_new_shares", "on"),
                ("receipts", "each"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let now = app
        .get_json("/api/v1/me/preferences", Some(&ann.token))
        .await;
    assert_eq!(
        now,
        json!({ "receipts_on_new_shares": true, "receipts_daily": false })
    );

    // The file page's share form has the box ticked as the preference says; unticked, the
    // share asks for none.
    let file = app.upload(&ann, "notes.pdf", pdf(b"notes")).await;
    assert_eq!(app.wait_until_settled(&ann, &file).await["status"], "ready");
    let details = browser.get(&format!("/app/files/{file}")).await;
    assert!(details.body.contains(
        "name=\"receipts\" type=\"checkbox\" value=\"on\" aria-describedby=\"receipts-hint\" checked"
    ));
    let shared = browser
        .post(
            &format!("/app/files/{file}/shares"),
            &[
                ("csrf", &details.csrf()),
                ("recipients", RITA),
                ("expires_in_hours", "24"),
                ("receipts_shown", "yes"),
            ],
        )
        .await;
    assert_eq!(shared.status, StatusCode::SEE_OTHER);
    let listed = app
        .get_json(&format!("/api/v1/files/{file}/shares"), Some(&ann.token))
        .await;
    let share = listed["shares"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(listed["shares"][0]["receipts"], false);

    // Turned on later, the change is audited with its old and new values.
    let changed: Value = app
        .http
        .patch(app.url(&format!("/api/v1/shares/{share}")))
        .bearer_auth(&ann.token)
        .json(&json!({ "receipts": true }))
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    assert_eq!(changed["receipts"], true);
    let event = app.newest_event("share.changed").await;
    assert_eq!(
        event.details["receipts"],
        json!({ "old": false, "new": true })
    );

    app.stop().await;
}

both_topologies!(
    an_owner_is_told_of_each_complete_download,
    a_daily_owner_gets_one_email_for_the_day,
    owners_set_receipts_in_the_web_app_and_per_share,
);
