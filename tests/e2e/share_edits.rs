//! Changing a share after it went out: expiry, download limit and password, each change
//! audited with its old and new values; and a fresh link emailed in place of the old one.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::smtp::SmtpServer;
use crate::common::web::Browser;
use crate::common::{TestApp, Topology, User, pdf, problem};
use coffer::Roles;

/// A link without recipient on a new ready file of `user`'s: (file id, link, share id).
async fn link(app: &TestApp, user: &User, body: Value) -> (String, String, String) {
    app.shared_link(user, "brief.pdf", pdf(b"the brief"), &body)
        .await
}

/// A service with a mail server, a user, and a ready file of theirs shared with `recipient`
/// as `share` asks, the first email received: the service, the server, the user, the file id,
/// the share id and the emailed link.
async fn emailed(
    topology: Topology,
    recipient: &str,
    share: Value,
) -> (TestApp, SmtpServer, User, String, String, String) {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn_with(topology, &[("COFFER_SMTP_URL", &smtp.url)], Roles::ALL).await;
    let ann = app.user().await;
    let deed = ("deed.pdf", pdf(b"the deed"));
    let (file, created, mail) = app.emailed_share(&smtp, &ann, deed, recipient, share).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let link = mail.link();
    (app, smtp, ann, file, id, link)
}

async fn patch(app: &TestApp, user: &User, share: &str, body: Value) -> reqwest::Response {
    app.http
        .patch(app.url(&format!("/api/v1/shares/{share}")))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .expect("patch")
}

async fn changed(app: &TestApp, user: &User, share: &str, body: Value) -> Value {
    let response = patch(app, user, share, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

/// The recipient's download with `password` (or none): its status.
async fn download(app: &TestApp, url: &str, password: &str) -> StatusCode {
    app.http
        .post(format!("{url}/download"))
        .form(&[("password", password)])
        .send()
        .await
        .expect("download")
        .status()
}

/// The details of the share's `share.changed` events, oldest first, read straight from the
/// audit log (sealed or not).
async fn changes(app: &TestApp, share: &str) -> Vec<Value> {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};
    entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq("share.changed"))
        .filter(entity::audit_event::Column::TargetId.eq(share))
        .order_by_asc(entity::audit_event::Column::OccurredAt)
        .all(app.core().db())
        .await
        .expect("audit rows")
        .into_iter()
        .map(|e| e.details)
        .collect()
}

async fn owners_change_expiry_limit_and_password_with_each_change_audited(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let secret = "open sesame 42";
    let (_, url, share) = link(
        &app,
        &ann,
        json!({ "max_downloads": 1, "password": secret, "expires_in_hours": 48 }),
    )
    .await;
    assert_eq!(download(&app, &url, secret).await, StatusCode::OK);
    app.wait_for_completed_downloads(&ann, &share, 1).await;
    assert_eq!(download(&app, &url, secret).await, StatusCode::GONE);

    // A higher limit opens a used-up link again; the downloads made still count.
    let view = changed(&app, &ann, &share, json!({ "max_downloads": 5 })).await;
    assert_eq!(
        (
            view["max_downloads"].as_i64(),
            view["downloads_used"].as_i64()
        ),
        (Some(5), Some(1))
    );
    assert_eq!(download(&app, &url, secret).await, StatusCode::OK);

    // The password removed, then a new one: the old stops working.
    let view = changed(&app, &ann, &share, json!({ "password": null })).await;
    assert_eq!(view["password"], false);
    assert_eq!(download(&app, &url, "").await, StatusCode::OK);
    changed(
        &app,
        &ann,
        &share,
        json!({ "password": "a new passphrase" }),
    )
    .await;
    assert_eq!(download(&app, &url, secret).await, StatusCode::FORBIDDEN);

    // Shortened to an hour from now; then no limit at all.
    let before = Utc::now();
    let view = changed(&app, &ann, &share, json!({ "expires_in_hours": 1 })).await;
    let expires: DateTime<Utc> = view["expires_at"]
        .as_str()
        .expect("time")
        .parse()
        .expect("rfc3339");
    let hour = chrono::Duration::hours(1);
    assert!(
        expires >= before + hour && expires <= Utc::now() + hour,
        "{expires}"
    );
    let view = changed(&app, &ann, &share, json!({ "max_downloads": null })).await;
    assert!(view["max_downloads"].is_null());
    assert_eq!(
        download(&app, &url, "a new passphrase").await,
        StatusCode::OK
    );

    // Each change is one event with the old and new values; a password only as a yes or no.
    let audited = changes(&app, &share).await;
    assert_eq!(audited.len(), 5, "{audited:?}");
    assert_eq!(audited[0]["max_downloads"], json!({ "old": 1, "new": 5 }));
    assert_eq!(audited[1]["password"], json!({ "old": true, "new": false }));
    assert_eq!(audited[2]["password"], json!({ "old": false, "new": true }));
    assert_eq!(
        audited[3]["expires_at"]["new"]
            .as_str()
            .map(|t| t.parse::<DateTime<Utc>>().ok()),
        Some(Some(expires))
    );
    assert_eq!(
        audited[4]["max_downloads"],
        json!({ "old": 5, "new": null })
    );
    let all = serde_json::to_string(&audited).expect("json");
    assert!(!all.contains("passphrase") && !all.contains(secret));

    // Refused, changing nothing.
    for (body, status) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "expires_in_hours": 1, "expires_at": Utc::now() }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "expires_at": "2020-01-01T00:00:00Z" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "expires_in_hours": 24 * 365 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "max_downloads": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "password": "short" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "expires_at": null }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({ "colour": "blue" }), StatusCode::BAD_REQUEST),
    ] {
        problem(patch(&app, &ann, &share, body.clone()).await, status).await;
    }
    assert_eq!(changes(&app, &share).await.len(), 5);

    // Someone else's share is not found; an ended one is not brought back.
    let bob = app.user().await;
    problem(
        patch(&app, &bob, &share, json!({ "max_downloads": 9 })).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let revoked = app
        .http
        .delete(app.url(&format!("/api/v1/shares/{share}")))
        .bearer_auth(&ann.token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    problem(
        patch(&app, &ann, &share, json!({ "expires_in_hours": 24 })).await,
        StatusCode::CONFLICT,
    )
    .await;
    app.stop().await;
}

async fn a_link_sent_again_replaces_the_old_one(topology: Topology) {
    let (app, smtp, ann, _, share, first) = emailed(topology, "dora@example.org", json!({})).await;
    assert_eq!(
        app.http.get(&first).send().await.expect("page").status(),
        StatusCode::OK
    );

    let resent = app
        .post_json(
            &format!("/api/v1/shares/{share}/resend"),
            &json!({}),
            Some(&ann.token),
        )
        .await;
    assert_eq!(resent.status(), StatusCode::ACCEPTED);
    let mails = smtp.wait_for("dora@example.org", 2).await;
    let second = mails[1].link();
    assert_ne!(first, second);
    // The old link opens nothing from the moment the new one was asked for.
    assert_eq!(
        app.http.get(&first).send().await.expect("page").status(),
        StatusCode::NOT_FOUND
    );
    let fresh = app
        .http
        .get(format!("{second}/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(fresh.status(), StatusCode::OK);
    assert_eq!(
        fresh.bytes().await.expect("body").to_vec(),
        pdf(b"the deed")
    );
    let audited = changes(&app, &share).await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["link"], "reissued");
    assert_eq!(audited[0]["recipient"], "dora@example.org");

    // A link without recipient has nobody to email.
    let (_, _, no_recipient) = link(&app, &ann, json!({})).await;
    problem(
        app.post_json(
            &format!("/api/v1/shares/{no_recipient}/resend"),
            &json!({}),
            Some(&ann.token),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    app.stop().await;
}

async fn the_web_app_changes_and_resends_a_link(topology: Topology) {
    let (app, smtp, ann, file, share, first) = emailed(
        topology,
        "erin@example.org",
        json!({ "password": "open sesame 42" }),
    )
    .await;

    let mut browser = Browser::with_session(&app, &ann.token);
    let details = browser.get(&format!("/app/files/{file}")).await;
    assert!(details.body.contains(&format!("/app/shares/{share}/edit")));
    let form = browser.get(&format!("/app/shares/{share}/edit")).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Remove the password"));
    let csrf = form.csrf();

    // A bad limit comes back on the form, changing nothing.
    let refused = browser
        .post(
            &format!("/app/shares/{share}/edit"),
            &[
                ("csrf", &csrf),
                ("max_downloads", "many"),
                ("expires_in_hours", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("whole number"));
    let saved = browser
        .post(
            &format!("/app/shares/{share}/edit"),
            &[
                ("csrf", &csrf),
                ("max_downloads", "2"),
                ("expires_in_hours", "24"),
                ("remove_password", "yes"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    assert_eq!(saved.location(), format!("/app/files/{file}"));
    let view: Value = app
        .get_json(&format!("/api/v1/files/{file}/shares"), Some(&ann.token))
        .await;
    let view = &view["shares"][0];
    assert_eq!(
        (view["max_downloads"].as_i64(), view["password"].as_bool()),
        (Some(2), Some(false))
    );
    assert_eq!(download(&app, &first, "").await, StatusCode::OK);

    let resent = browser
        .post(&format!("/app/shares/{share}/resend"), &[("csrf", &csrf)])
        .await;
    assert_eq!(resent.status, StatusCode::SEE_OTHER);
    let second = smtp.wait_for("erin@example.org", 2).await[1].link();
    assert_ne!(first, second);
    assert_eq!(download(&app, &first, "").await, StatusCode::NOT_FOUND);
    assert_eq!(download(&app, &second, "").await, StatusCode::OK);
    app.stop().await;
}

both_topologies!(
    owners_change_expiry_limit_and_password_with_each_change_audited,
    a_link_sent_again_replaces_the_old_one,
    the_web_app_changes_and_resends_a_link,
);
