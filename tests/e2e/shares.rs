//! Sharing: links emailed to each recipient through a real SMTP server, the recipient's page
//! and download, and every way a link stops working.

use std::time::Duration;

use crate::common::smtp::SmtpServer;
use crate::common::{TestApp, Topology, User, eventually, pattern, pdf, problem};
use coffer::Roles;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn spawn_with_smtp(topology: Topology, smtp: &SmtpServer, roles: Roles) -> TestApp {
    TestApp::spawn_with(topology, &[("COFFER_SMTP_URL", &smtp.url)], roles).await
}

async fn share(app: &TestApp, user: &User, file: &str, body: Value) -> reqwest::Response {
    app.post_json(
        &format!("/api/v1/files/{file}/shares"),
        &body,
        Some(&user.token),
    )
    .await
}

/// A link without recipient on `file`, shared with `body`: its URL and its share id.
async fn link(app: &TestApp, user: &User, file: &str, body: Value) -> (String, String) {
    let created: Value = share(app, user, file, body)
        .await
        .json()
        .await
        .expect("json");
    let share = &created["shares"][0];
    let url = share["url"]
        .as_str()
        .expect("a link without recipient is returned");
    (url.to_owned(), share["id"].as_str().expect("id").to_owned())
}

async fn shares_of(app: &TestApp, user: &User, file: &str) -> Vec<Value> {
    let list: Value = app
        .get(&format!("/api/v1/files/{file}/shares"), &user.token)
        .await
        .json()
        .await
        .expect("json");
    list["shares"].as_array().expect("shares").clone()
}

/// Polls the file's (only) share until it reaches `state`, within a deadline.
async fn wait_for_state(app: &TestApp, user: &User, file: &str, state: &str) -> Value {
    eventually(
        &format!("the share reaching {state}"),
        Duration::from_secs(30),
        || async {
            let shares = shares_of(app, user, file).await;
            if shares[0]["state"] == state {
                return Ok(shares[0].clone());
            }
            Err(format!("share never reached {state}: {shares:?}"))
        },
    )
    .await
}

/// A ready file of the user's.
async fn ready_file(app: &TestApp, user: &User, name: &str, bytes: Vec<u8>) -> String {
    let id = app.upload(user, name, bytes).await;
    assert_eq!(app.wait_until_settled(user, &id).await["status"], "ready");
    id
}

async fn page(app: &TestApp, url: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = app.http.get(url).send().await.expect("request");
    (
        response.status(),
        response.headers().clone(),
        response.text().await.expect("html"),
    )
}

async fn each_recipient_gets_their_own_link_and_downloads_the_file(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = spawn_with_smtp(topology, &smtp, Roles::ALL).await;
    let ann = app.user().await;
    let bytes = pdf(&pattern(150_000, 8));
    let file = ready_file(&app, &ann, "contract.pdf", bytes.clone()).await;

    let created = share(
        &app,
        &ann,
        &file,
        json!({
            "recipients": ["bob@example.org", "carol@example.org"],
            "expires_in_hours": 48,
            "message": "Here is the signed contract.",
        }),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let shares = created["shares"].as_array().expect("shares");
    assert_eq!(shares.len(), 2);
    assert!(
        shares.iter().all(|s| s["url"].is_null()),
        "recipients' links are never returned to the owner"
    );

    let bob = smtp.wait_for("bob@example.org", 1).await.remove(0);
    let carol = smtp.wait_for("carol@example.org", 1).await.remove(0);
    let (bob_link, carol_link) = (bob.link(), carol.link());
    assert_ne!(bob_link, carol_link, "each recipient has their own token");
    assert!(bob_link.starts_with(&app.base), "{bob_link}");
    assert!(bob.header("Subject").contains("contract.pdf"));
    assert!(bob.header("From").contains("coffer@localhost"));
    // Large providers refuse mail without a Message-ID; replies go to the sharer.
    let id = bob.header("Message-ID");
    assert!(id.starts_with('<') && id.ends_with("@localhost>"), "{id}");
    assert_ne!(id, carol.header("Message-ID"));
    assert_eq!(bob.header("Reply-To"), ann.email);
    let text = bob.part("text/plain");
    for needle in [
        ann.email.as_str(),
        "contract.pdf",
        "Here is the signed contract.",
        "Expires",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let token = bob_link.rsplit('/').next().expect("token");
    assert!(
        bob.part("text/html").contains(token),
        "the HTML part links to the same page"
    );
    assert!(
        !String::from_utf8_lossy(&bob.raw).contains("%PDF"),
        "no file content in the email"
    );

    let (status, headers, html) = page(&app, &bob_link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("contract.pdf") && html.contains(&ann.email));
    assert!(
        !html.contains("type=\"password\""),
        "no password field without a password"
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("default-src 'none'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");

    let download = app
        .http
        .get(format!("{bob_link}/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .expect("cd")
            .starts_with("attachment;")
    );
    assert!(download.bytes().await.expect("body")[..] == bytes[..]);

    let listed = shares_of(&app, &ann, &file).await;
    let bob_share = listed
        .iter()
        .find(|s| s["recipient"] == "bob@example.org")
        .expect("bob's share");
    assert_eq!(bob_share["state"], "emailed");
    assert_eq!(bob_share["downloads_used"], 1);
    let bob_id = bob_share["id"].as_str().expect("id");
    let actions = app.audit_actions().await;
    for action in [
        "share.created",
        "share.emailed",
        "share.viewed",
        // Durable before the response started (share.downloaded follows the transfer's end).
        "share.download_started",
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, t, _)| a == action && t.as_deref() == Some(bob_id)),
            "{action} for bob's share"
        );
    }
    app.stop().await;
}

async fn links_asked_for_with_the_upload_go_out_only_once_ready(topology: Topology) {
    let smtp = SmtpServer::start();
    let mut app = spawn_with_smtp(topology, &smtp, Roles::API).await;
    let ann = app.user().await;
    let bytes = b"minutes of the meeting".to_vec();
    let response = app
        .http
        .put(app.url("/api/v1/files/minutes.txt?recipients=dan@example.org,erin@example.org&expires_in_hours=24&max_downloads=2"))
        .bearer_auth(&ann.token)
        .body(bytes.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    assert_eq!(accepted["shares"].as_array().expect("shares").len(), 2);
    let id = accepted["id"].as_str().expect("id").to_owned();

    // Held in quarantine: nothing may be sent yet.
    assert_eq!(app.file(&ann, &id).await["status"], "quarantined");
    assert!(smtp.mails().is_empty());
    assert!(
        shares_of(&app, &ann, &id)
            .await
            .iter()
            .all(|s| s["state"] == "pending")
    );

    app.start_workers().await;
    let mail = smtp.wait_for("dan@example.org", 1).await.remove(0);
    let file = app.file(&ann, &id).await;
    assert_eq!(file["status"], "ready");
    let ready_at =
        chrono::DateTime::parse_from_rfc3339(file["ready_at"].as_str().expect("ready_at"))
            .expect("time");
    assert!(mail.header("Date").len() > 5);
    let _ = ready_at; // the mail is only sent by the job that runs after the file is ready
    let body = app
        .http
        .get(format!("{}/download", mail.link()))
        .send()
        .await
        .expect("download");
    assert_eq!(body.bytes().await.expect("body").to_vec(), bytes);

    // The same through a multipart upload with share fields.
    let form = reqwest::multipart::Form::new()
        .text("recipients", "fay@example.org")
        .text("message", "multipart share")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"second file".to_vec()).file_name("second.txt"),
        );
    let response = app
        .http
        .post(app.url("/api/v1/files"))
        .bearer_auth(&ann.token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let fay = smtp.wait_for("fay@example.org", 1).await.remove(0);
    assert!(fay.part("text/plain").contains("multipart share"));
    app.stop().await;
}

async fn a_spoofed_upload_with_recipients_sends_no_email(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = spawn_with_smtp(topology, &smtp, Roles::ALL).await;
    let ann = app.user().await;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend(pattern(2048, 3));
    let response = app
        .http
        .put(app.url("/api/v1/files/invoice.pdf?recipients=gus@example.org"))
        .bearer_auth(&ann.token)
        .body(exe)
        .send()
        .await
        .expect("upload");
    let id = response.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        app.wait_until_settled(&ann, &id).await["status"],
        "rejected"
    );
    let shares = shares_of(&app, &ann, &id).await;
    assert_eq!(shares[0]["state"], "cancelled");
    assert!(
        shares[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("executable")),
        "{shares:?}"
    );
    // `cancelled` is final, and the email job sends only pending shares (`send_email` checks
    // under its claim), so what has not gone out by now never will: no waiting proves it.
    assert!(
        smtp.mails().is_empty(),
        "no share email (the owner's verification is not one)"
    );
    problem(
        share(
            &app,
            &ann,
            &id,
            json!({ "recipients": ["gus@example.org"] }),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    app.stop().await;
}

async fn expired_revoked_and_unknown_links_are_refused(topology: Topology) {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    let smtp = SmtpServer::start();
    let app = spawn_with_smtp(topology, &smtp, Roles::ALL).await;
    let ann = app.user().await;
    let file = ready_file(&app, &ann, "notes.txt", b"some notes".to_vec()).await;
    assert_eq!(
        share(
            &app,
            &ann,
            &file,
            json!({ "recipients": ["hal@example.org", "ida@example.org"] })
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    let hal = smtp.wait_for("hal@example.org", 1).await.remove(0).link();
    let ida = smtp.wait_for("ida@example.org", 1).await.remove(0).link();
    let shares = shares_of(&app, &ann, &file).await;
    let hal_id = shares
        .iter()
        .find(|s| s["recipient"] == "hal@example.org")
        .expect("hal")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let ida_id = shares
        .iter()
        .find(|s| s["recipient"] == "ida@example.org")
        .expect("ida")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Expiry, with the clock moved by rewriting the expiry rather than by waiting.
    entity::share::Entity::update_many()
        .col_expr(
            entity::share::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
        )
        .filter(entity::share::Column::Id.eq(uuid::Uuid::parse_str(&hal_id).expect("uuid")))
        .exec(app.core().db())
        .await
        .expect("expire");
    let (status, _, html) = page(&app, &hal).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(
        html.contains("expired") && !html.contains("notes.txt"),
        "an expired link shows nothing of the file"
    );
    assert_eq!(
        app.http
            .get(format!("{hal}/download"))
            .send()
            .await
            .expect("download")
            .status(),
        StatusCode::GONE
    );
    coffer::coffer_core::services::shares::expire(app.core())
        .await
        .expect("sweep");
    let row = entity::share::Entity::find_by_id(uuid::Uuid::parse_str(&hal_id).expect("uuid"))
        .one(app.core().db())
        .await
        .expect("q")
        .expect("row");
    assert_eq!(row.state, entity::ShareState::Expired);

    // Revocation takes effect at once; the other recipient's link is unaffected until revoked.
    assert_eq!(page(&app, &ida).await.0, StatusCode::OK);
    let revoke = app
        .http
        .delete(app.url(&format!("/api/v1/shares/{ida_id}")))
        .bearer_auth(&ann.token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    let (status, _, html) = page(&app, &ida).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("withdrawn"));
    let listed = shares_of(&app, &ann, &file).await;
    assert!(
        listed
            .iter()
            .any(|s| s["id"] == ida_id.as_str() && s["state"] == "revoked")
    );

    // Unknown and malformed tokens.
    let unknown = format!("{}/s/{}", app.base, "A".repeat(43));
    assert_eq!(page(&app, &unknown).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        page(&app, &format!("{}/s/short", app.base)).await.0,
        StatusCode::NOT_FOUND
    );
    // Another user cannot revoke or list someone else's shares.
    let eve = app.user().await;
    problem(
        app.http
            .delete(app.url(&format!("/api/v1/shares/{hal_id}")))
            .bearer_auth(&eve.token)
            .send()
            .await
            .expect("r"),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get(&format!("/api/v1/files/{file}/shares"), &eve.token)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let denied: Vec<_> = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, o)| a == "share.denied" && o == "denied")
        .collect();
    // Expired page, expired download, revoked page (unknown tokens have no share to blame).
    assert_eq!(denied.len(), 3, "{denied:?}");
    assert!(
        app.audit_actions()
            .await
            .iter()
            .any(|(a, t, _)| a == "share.revoked" && t.as_deref() == Some(ida_id.as_str()))
    );
    app.stop().await;
}

async fn max_downloads_holds_under_concurrent_downloads(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let bytes = pdf(&pattern(300_000, 6));
    let file = ready_file(&app, &ann, "limited.pdf", bytes.clone()).await;
    let (url, _) = link(&app, &ann, &file, json!({ "max_downloads": 3 })).await;

    let attempts = (0..12).map(|_| {
        let http = app.http.clone();
        let url = format!("{url}/download");
        async move {
            let response = http.get(url).send().await.expect("download");
            let status = response.status();
            (status, response.bytes().await.expect("body"))
        }
    });
    let results = futures::future::join_all(attempts).await;
    let ok: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!(
        ok.len(),
        3,
        "{:?}",
        results.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
    assert!(ok.iter().all(|(_, body)| body[..] == bytes[..]));
    // Refused: used up (410), or 409 while a download under way might still give its place back.
    assert!(
        results
            .iter()
            .filter(|(s, _)| *s != StatusCode::OK)
            .all(|(s, _)| *s == StatusCode::GONE || *s == StatusCode::CONFLICT)
    );
    assert_eq!(shares_of(&app, &ann, &file).await[0]["downloads_used"], 3);
    app.stop().await;
}

async fn passwords_are_checked_and_rate_limited(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let bytes = b"privileged and confidential".to_vec();
    let file = ready_file(&app, &ann, "memo.txt", bytes.clone()).await;
    let (url, _) = link(&app, &ann, &file, json!({ "password": "open sesame 42" })).await;

    let (status, _, html) = page(&app, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("type=\"password\""));
    let no_password = app
        .http
        .get(format!("{url}/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(no_password.status(), StatusCode::FORBIDDEN);
    let post = |password: &'static str| {
        let http = app.http.clone();
        let url = format!("{url}/download");
        async move {
            http.post(url)
                .form(&[("password", password)])
                .send()
                .await
                .expect("post")
        }
    };
    let right = post("open sesame 42").await;
    assert_eq!(right.status(), StatusCode::OK);
    assert_eq!(right.bytes().await.expect("body").to_vec(), bytes);

    for _ in 0..5 {
        let wrong = post("guess guess").await;
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        assert!(wrong.text().await.expect("html").contains("not right"));
    }
    let limited = post("open sesame 42").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&wait));
    let denied = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "share.denied")
        .count();
    assert!(denied >= 6, "{denied}");
    app.stop().await;
}

async fn a_refusing_smtp_server_is_retried_until_it_accepts(topology: Topology) {
    let smtp = SmtpServer::start_with(2, false);
    let app = spawn_with_smtp(topology, &smtp, Roles::ALL).await;
    let ann = app.user().await;
    let file = ready_file(&app, &ann, "retry.txt", b"try again".to_vec()).await;
    assert_eq!(
        share(
            &app,
            &ann,
            &file,
            json!({ "recipients": ["jo@example.org"] })
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    let mail = smtp.wait_for("jo@example.org", 1).await.remove(0);
    assert_eq!(smtp.attempts(), 3, "two refusals, then delivery");
    assert_eq!(
        app.http
            .get(format!("{}/download", mail.link()))
            .send()
            .await
            .expect("d")
            .status(),
        StatusCode::OK
    );
    wait_for_state(&app, &ann, &file, "emailed").await;
    app.stop().await;
}

async fn a_permanently_refused_email_is_reported(topology: Topology) {
    let smtp = SmtpServer::start_with(0, true);
    let app = spawn_with_smtp(topology, &smtp, Roles::ALL).await;
    let ann = app.user().await;
    let file = ready_file(&app, &ann, "bounce.txt", b"nobody home".to_vec()).await;
    assert_eq!(
        share(
            &app,
            &ann,
            &file,
            json!({ "recipients": ["ghost@example.org"] })
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    let failed = wait_for_state(&app, &ann, &file, "email_failed").await;
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("550")),
        "{failed}"
    );
    assert!(
        app.audit_actions()
            .await
            .iter()
            .any(|(a, _, o)| a == "share.email_failed" && o == "failure")
    );
    app.stop().await;
}

async fn hostile_names_and_messages_are_inert(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = spawn_with_smtp(topology, &smtp, Roles::ALL).await;
    let ann = app.user().await;
    let name = "\"><img src=x onerror=alert(1)>.txt";
    let message = "<script>alert('owned')</script> & \"quotes\"";
    let file = ready_file(&app, &ann, name, b"harmless".to_vec()).await;
    let created = share(
        &app,
        &ann,
        &file,
        json!({ "recipients": ["kim@example.org"], "message": message }),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let mail = smtp.wait_for("kim@example.org", 1).await.remove(0);
    let html = mail.part("text/html");
    assert!(
        !html.contains("<script>") && !html.contains("<img src=x"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;") && html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(
        mail.header("Subject").contains(name),
        "the subject carries the name as text"
    );

    let (status, _, page_html) = page(&app, &mail.link()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page_html.contains("<img src=x")
            && page_html.contains("&lt;img src=x onerror=alert(1)&gt;")
    );

    // Header injection through a recipient address is refused outright.
    let injected = share(
        &app,
        &ann,
        &file,
        json!({ "recipients": ["kim@example.org\r\nBcc: eve@example.org"] }),
    )
    .await;
    problem(injected, StatusCode::UNPROCESSABLE_ENTITY).await;
    app.stop().await;
}

/// The email job delivered several times at once (a share created just as its file became
/// ready is enqueued twice): one email goes out, and its link works.
async fn duplicate_email_jobs_send_one_working_link(topology: Topology) {
    use coffer::coffer_core::jobs::notify::send_email;
    let smtp = SmtpServer::start();
    let app = spawn_with_smtp(topology, &smtp, Roles::ALL).await;
    let ann = app.user().await;
    let file = ready_file(&app, &ann, "once.pdf", pdf(b"once")).await;
    let created = share(
        &app,
        &ann,
        &file,
        json!({ "recipients": ["once@example.org"], "expires_in_hours": 1 }),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.expect("json");
    let id: uuid::Uuid = body["shares"][0]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("share id");
    // Two more deliveries, racing the worker's own.
    let core = app.core();
    let (a, b) = tokio::join!(send_email(core, id, 1), send_email(core, id, 1));
    assert!(a.is_ok() && b.is_ok());
    wait_for_state(&app, &ann, &file, "emailed").await;
    eventually("the worker's delivery", Duration::from_secs(30), || async {
        let text = coffer::coffer_core::services::health::metrics(app.core()).await;
        let done = crate::common::metric(&text, "coffer_jobs_finished_total", &[("job", "notify")]);
        if done >= Some(1.0) {
            Ok(())
        } else {
            Err("the worker's delivery never ran".to_owned())
        }
    })
    .await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one email");
    let (status, _, _) = page(&app, &mails[0].link()).await;
    assert_eq!(status, StatusCode::OK, "its link works");
    app.stop().await;
}

async fn share_requests_are_validated(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let file = ready_file(&app, &ann, "v.txt", b"validate me".to_vec()).await;
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let far = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    for body in [
        json!({ "recipients": ["not-an-address"] }),
        json!({ "expires_at": past }),
        json!({ "expires_at": far }),
        json!({ "expires_in_hours": 100000 }),
        json!({ "expires_in_hours": -1 }),
        json!({ "max_downloads": 0 }),
        json!({ "max_downloads": -4 }),
        json!({ "password": "short" }),
    ] {
        problem(
            share(&app, &ann, &file, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    problem(
        share(&app, &ann, &file, json!({ "surprise": true })).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        share(&app, &ann, &uuid::Uuid::new_v4().to_string(), json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        shares_of(&app, &ann, &file).await.is_empty(),
        "refused requests create nothing"
    );
    app.stop().await;
}

/// Without a mail server the email waits in the outbox: readable by Coffer's user only, the
/// share saying `outbox` (nobody was emailed), and the copy removed once its link opens
/// nothing: at once when revoked or used up, by the sweep when expired. Everything the
/// embedded topology creates in its data dir is private (0700 directories, 0600 files).
async fn without_smtp_mail_waits_in_the_outbox_while_its_link_works(topology: Topology) {
    let app =
        TestApp::spawn_with(topology, &[("COFFER_SWEEP_INTERVAL_SECS", "1")], Roles::ALL).await;
    let ann = app.user().await;
    let outbox = app.env.data.path().join("outbox");
    let mut shared = Vec::new();
    for (name, limit) in [
        ("revoked.txt", None),
        ("used.txt", Some(1)),
        ("expires.txt", None),
    ] {
        let file = ready_file(&app, &ann, name, b"to the outbox".to_vec()).await;
        let mut body = json!({ "recipients": ["lee@example.org"] });
        if let Some(limit) = limit {
            body["max_downloads"] = json!(limit);
        }
        assert_eq!(
            share(&app, &ann, &file, body).await.status(),
            StatusCode::CREATED
        );
        let share = wait_for_state(&app, &ann, &file, "outbox").await;
        let id = share["id"].as_str().expect("id").to_owned();
        let eml = outbox.join(format!("{id}.eml"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&eml)
                .expect("the outbox copy")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", eml.display());
        }
        let mail = crate::common::smtp::Mail {
            to: vec![],
            raw: std::fs::read(&eml).expect("eml"),
        };
        assert!(mail.part("text/plain").contains(name));
        shared.push((id, eml, mail.link()));
    }
    let actions: Vec<String> = app.audit_actions().await.into_iter().map(|a| a.0).collect();
    assert!(
        actions
            .iter()
            .filter(|a| *a == "share.written_to_outbox")
            .count()
            == 3,
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| a == "share.emailed"), "{actions:?}");

    let revoked = app
        .http
        .delete(app.url(&format!("/api/v1/shares/{}", shared[0].0)))
        .bearer_auth(&ann.token)
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_success());
    assert!(!shared[0].1.exists(), "a revoked link's copy is removed");
    let used = app
        .http
        .get(format!("{}/download", shared[1].2))
        .send()
        .await
        .expect("download");
    assert_eq!(used.status(), StatusCode::OK);
    used.bytes().await.expect("body");
    // Once the download is recorded complete, which follows the end of its transfer.
    eventually(
        "a used-up link's copy removed",
        Duration::from_secs(30),
        || async {
            if shared[1].1.exists() {
                return Err("the used-up link's copy is still in the outbox".to_owned());
            }
            Ok(())
        },
    )
    .await;
    // An expired link's copy is the sweep's to remove.
    {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, sea_query::Expr};
        entity::share::Entity::update_many()
            .col_expr(
                entity::share::Column::ExpiresAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::minutes(1)),
            )
            .filter(
                entity::share::Column::Id.eq(uuid::Uuid::parse_str(&shared[2].0).expect("uuid")),
            )
            .exec(app.core().db())
            .await
            .expect("expire");
    }
    eventually(
        "the expired link's copy removed",
        Duration::from_secs(30),
        || async {
            if shared[2].1.exists() {
                Err("the expired link's copy stayed".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;

    #[cfg(unix)]
    if topology == Topology::Embedded {
        use std::os::unix::fs::PermissionsExt as _;
        let mut open = Vec::new();
        let mut dirs = vec![app.env.data.path().to_owned()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("dir") {
                let entry = entry.expect("entry");
                let mode = entry.metadata().expect("meta").permissions().mode();
                if mode & 0o077 != 0 {
                    open.push(format!("{:o} {}", mode & 0o777, entry.path().display()));
                }
                if entry.file_type().expect("type").is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        assert!(open.is_empty(), "readable by others: {open:?}");
    }
    app.stop().await;
}

/// HEAD delivers no bytes, so it is no download: neither a recipient's link nor an owner's
/// file counts or audits one for it (curl -I used to use up a one-download link).
async fn a_head_request_is_not_a_download(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let bytes = pdf(&pattern(70_000, 9));
    let file = ready_file(&app, &ann, "once.pdf", bytes.clone()).await;
    let (url, share) = link(&app, &ann, &file, json!({ "max_downloads": 1 })).await;

    for _ in 0..3 {
        let head = app
            .http
            .head(format!("{url}/download"))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            head.headers()["content-length"],
            bytes.len().to_string().as_str()
        );
        let owner_head = app
            .http
            .head(app.url(&format!("/api/v1/files/{file}/content")))
            .bearer_auth(&ann.token)
            .send()
            .await
            .expect("head");
        assert_eq!(owner_head.status(), StatusCode::OK);
    }
    assert_eq!(shares_of(&app, &ann, &file).await[0]["downloads_used"], 0);

    let get = app
        .http
        .get(format!("{url}/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(get.status(), StatusCode::OK);
    assert!(get.bytes().await.expect("body")[..] == bytes[..]);
    app.wait_for_completed_downloads(&ann, &share, 1).await;
    let again = app
        .http
        .head(format!("{url}/download"))
        .send()
        .await
        .expect("head");
    assert_eq!(again.status(), StatusCode::GONE, "used up by the one GET");
    // The end of the download is recorded once its transfer has ended.
    let actions = eventually(
        "the download's end recorded",
        Duration::from_secs(30),
        || async {
            let actions: Vec<String> = app.audit_actions().await.into_iter().map(|a| a.0).collect();
            if actions.iter().any(|a| a == "share.downloaded") {
                return Ok(actions);
            }
            Err(format!("no share.downloaded in {actions:?}"))
        },
    )
    .await;
    let count = |name: &str| actions.iter().filter(|a| *a == name).count();
    assert_eq!(count("share.download_started"), 1, "{actions:?}");
    assert_eq!(count("share.downloaded"), 1, "{actions:?}");
    assert_eq!(count("file.downloaded"), 0, "{actions:?}");
    app.stop().await;
}

/// The audit rows of `action` on `share`: (how many stand for one request, how many requests
/// the summaries among them count).
async fn audited(app: &TestApp, action: &str, share: &str) -> (usize, u64) {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    let rows = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq(action))
        .filter(entity::audit_event::Column::TargetId.eq(share))
        .all(app.core().db())
        .await
        .expect("audit rows");
    let single = rows
        .iter()
        .filter(|r| r.details.get("repeated").is_none())
        .count();
    let repeated = rows
        .iter()
        .filter_map(|r| r.details.get("repeated").and_then(Value::as_u64))
        .sum();
    (single, repeated)
}

/// Polls until the summaries of `action` on `share` count `repeated` requests.
async fn wait_for_repeated(app: &TestApp, action: &str, share: &str, repeated: u64) -> usize {
    eventually(
        &format!("{action} repeats recorded"),
        Duration::from_secs(30),
        || async {
            let (single, counted) = audited(app, action, share).await;
            if counted >= repeated {
                assert_eq!(counted, repeated, "{action}");
                return Ok(single);
            }
            Err(format!(
                "{action}: {counted} of {repeated} repeats recorded"
            ))
        },
    )
    .await
}

/// Anyone holding a link can load it, or a dead one, as often as they like: the first views
/// and refusals of each link are audited one by one, the rest as one counted event per window.
async fn anonymous_traffic_adds_a_bounded_number_of_audit_rows(topology: Topology) {
    let settings = [("COFFER_AUDIT_REPEAT_WINDOW", "2s")];
    let app = TestApp::spawn_with(topology, &settings, Roles::ALL).await;
    let ann = app.user().await;
    let file = ready_file(&app, &ann, "popular.txt", b"read me".to_vec()).await;
    let (url, id) = link(&app, &ann, &file, json!({})).await;

    const HITS: usize = 60;
    let first = coffer::coffer_core::audit::RECORDED_PER_WINDOW as usize;
    for _ in 0..HITS {
        assert_eq!(page(&app, &url).await.0, StatusCode::OK);
    }
    let single = wait_for_repeated(&app, "share.viewed", &id, (HITS - first) as u64).await;
    assert_eq!(single, first, "the first views of the window, one by one");

    let revoked = app
        .http
        .delete(app.url(&format!("/api/v1/shares/{id}")))
        .bearer_auth(&ann.token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    for _ in 0..HITS {
        assert_eq!(page(&app, &url).await.0, StatusCode::GONE);
    }
    let single = wait_for_repeated(&app, "share.denied", &id, (HITS - first) as u64).await;
    assert_eq!(
        single, first,
        "the first refusals of the window, one by one"
    );
    app.stop().await;
}

/// An account emails links to at most `COFFER_SHARE_EMAILS_PER_DAY` recipients a day, on
/// every path that emails (a share of a file, an upload with recipients); a request that would
/// pass the budget takes none of it, creates nothing and is audited. Links without recipients
/// are not emails and are not counted.
async fn share_emails_are_limited_per_account_and_day(topology: Topology) {
    let app = TestApp::spawn_with(
        topology,
        &[("COFFER_SHARE_EMAILS_PER_DAY", "3")],
        Roles::ALL,
    )
    .await;
    let user = app.user().await;
    let other = app.user().await;
    let file = ready_file(&app, &user, "limited.txt", b"limited".to_vec()).await;
    let recipients = |names: &[&str]| json!({ "recipients": names.iter().map(|n| format!("{n}@example.org")).collect::<Vec<_>>() });
    assert_eq!(
        share(&app, &user, &file, recipients(&["a", "b"]))
            .await
            .status(),
        StatusCode::CREATED
    );
    let refused = share(&app, &user, &file, recipients(&["c", "d"])).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(wait > 23 * 3600 && wait <= 24 * 3600, "{wait}");
    let body: Value = refused.json().await.expect("problem");
    assert_eq!(body["type"], "urn:coffer:problem:limit-reached", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("at most 3 recipients a day"),
        "{body}"
    );
    assert_eq!(
        shares_of(&app, &user, &file).await.len(),
        2,
        "nothing was created"
    );

    // An upload asking for recipients past the budget is refused and leaves no file.
    let upload = app
        .http
        .put(app.url("/api/v1/files/more.txt?recipients=e@example.org,f@example.org"))
        .bearer_auth(&user.token)
        .body(b"more".to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), StatusCode::TOO_MANY_REQUESTS);
    let files: Value = app
        .get("/api/v1/files", &user.token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(files["files"].as_array().expect("files").len(), 1);

    // What is left of the budget still goes out; links without recipients are not counted;
    // another account has a budget of its own.
    assert_eq!(
        share(&app, &user, &file, recipients(&["g"])).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        share(&app, &user, &file, recipients(&["h"])).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    link(&app, &user, &file, json!({})).await;
    let theirs = ready_file(&app, &other, "theirs.txt", b"theirs".to_vec()).await;
    assert_eq!(
        share(&app, &other, &theirs, recipients(&["a", "b", "c"]))
            .await
            .status(),
        StatusCode::CREATED
    );
    let limited = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(action, _, outcome)| action == "auth.rate_limited" && outcome == "denied")
        .count();
    assert_eq!(limited, 3);
    app.stop().await;
}

both_topologies!(
    share_emails_are_limited_per_account_and_day,
    anonymous_traffic_adds_a_bounded_number_of_audit_rows,
    a_head_request_is_not_a_download,
    each_recipient_gets_their_own_link_and_downloads_the_file,
    links_asked_for_with_the_upload_go_out_only_once_ready,
    a_spoofed_upload_with_recipients_sends_no_email,
    expired_revoked_and_unknown_links_are_refused,
    max_downloads_holds_under_concurrent_downloads,
    passwords_are_checked_and_rate_limited,
    a_refusing_smtp_server_is_retried_until_it_accepts,
    a_permanently_refused_email_is_reported,
    hostile_names_and_messages_are_inert,
    share_requests_are_validated,
    duplicate_email_jobs_send_one_working_link,
    without_smtp_mail_waits_in_the_outbox_while_its_link_works,
);
