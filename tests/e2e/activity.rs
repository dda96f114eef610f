//! A share's access report: every view, refusal and download of one link, read from the audit
//! log, in JSON pages, as CSV, and on its page in the web app; its owner's and any admin's.

use std::time::Duration;

use crate::common::web::Browser;
use crate::common::{TestApp, Topology, User, eventually, pdf, problem, python};
use coffer::Roles;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("report-admin@example.org", "admin password 123");
/// What the recipient's browser calls itself: markup, which every page must show as text.
const AGENT: &str = "Report/1.0 <script>alert(1)</script>";

async fn spawn(topology: Topology) -> (TestApp, User) {
    let vars = [
        ("COFFER_ADMIN_EMAIL", ADMIN.0),
        ("COFFER_ADMIN_PASSWORD", ADMIN.1),
    ];
    let app = TestApp::spawn_with(topology, &vars, Roles::ALL).await;
    let admin = User {
        email: ADMIN.0.to_owned(),
        token: app.sign_in(ADMIN.0, ADMIN.1, false).await,
    };
    (app, admin)
}

/// A link without recipient on a new ready file of `user`'s: (file id, link, share id).
async fn shared_file(app: &TestApp, user: &User, body: Value) -> (String, String, String) {
    app.shared_link(user, "memo.pdf", pdf(b"the memo"), &body)
        .await
}

async fn report(app: &TestApp, user: &User, share: &str, query: &str) -> reqwest::Response {
    app.get(
        &format!("/api/v1/shares/{share}/activity{query}"),
        &user.token,
    )
    .await
}

/// The report's actions once `wanted` are all in it (the log seals events a moment after they
/// are written).
async fn wait_for(app: &TestApp, user: &User, share: &str, wanted: &[&str]) -> Value {
    eventually(
        "the report to hold every event",
        Duration::from_secs(30),
        || async {
            let body: Value = report(app, user, share, "")
                .await
                .json()
                .await
                .expect("json");
            let actions: Vec<&str> = body["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter_map(|e| e["action"].as_str())
                .collect();
            if wanted.iter().all(|w| actions.contains(w)) {
                return Ok(body.clone());
            }
            Err(format!("the report holds {actions:?}"))
        },
    )
    .await
}

/// The recipient opens the page, types a wrong password, then the right one and downloads.
async fn recipient_visits(url: &str) {
    let http = reqwest::Client::builder()
        .user_agent(AGENT)
        .build()
        .expect("client");
    assert_eq!(
        http.get(url).send().await.expect("page").status(),
        StatusCode::OK
    );
    let download = |password: &'static str| {
        http.post(format!("{url}/download"))
            .form(&[("password", password)])
            .send()
    };
    assert_eq!(
        download("not the one").await.expect("post").status(),
        StatusCode::FORBIDDEN
    );
    let right = download("open sesame 42").await.expect("post");
    assert_eq!(right.status(), StatusCode::OK);
    assert_eq!(
        right.bytes().await.expect("body").to_vec(),
        pdf(b"the memo")
    );
}

/// What the recipient's visit leaves in the report, in order.
const VISIT: [&str; 5] = [
    "share.created",
    "share.viewed",
    "share.denied",
    "share.download_started",
    "share.downloaded",
];

/// A service with an admin, and a user's password-protected link that its recipient visited
/// (see [`recipient_visits`]): the service, the admin, the user, the file, the share and the
/// report once it holds the visit.
async fn visited(topology: Topology) -> (TestApp, User, User, String, String, Value) {
    let (app, admin) = spawn(topology).await;
    let ann = app.user().await;
    let (file, url, share) = shared_file(&app, &ann, json!({ "password": "open sesame 42" })).await;
    recipient_visits(&url).await;
    let report = wait_for(&app, &ann, &share, &VISIT).await;
    (app, admin, ann, file, share, report)
}

async fn the_report_lists_each_view_refusal_and_download_from_the_log(topology: Topology) {
    let (app, admin) = spawn(topology).await;
    let ann = app.user().await;
    let (file, url, share) = shared_file(
        &app,
        &ann,
        json!({ "password": "open sesame 42", "max_downloads": 2 }),
    )
    .await;
    // Another link to the same file, opened too: none of it belongs in the first one's report.
    let (_, other_url, other) = shared_file(&app, &ann, json!({})).await;
    assert_eq!(
        app.http
            .get(&other_url)
            .send()
            .await
            .expect("page")
            .status(),
        StatusCode::OK
    );
    recipient_visits(&url).await;

    let body = wait_for(&app, &ann, &share, &VISIT).await;
    let events = body["events"].as_array().expect("events");
    assert_eq!(body["share"]["id"], share.as_str());
    assert_eq!(body["share"]["downloads_used"], 1);
    assert_eq!(body["share"]["downloads_completed"], 1);
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, VISIT, "in the order they happened");
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for event in &events[1..] {
        assert_eq!(event["actor_kind"], "recipient");
        assert_eq!(event["ip"], "127.0.0.1");
        assert_eq!(event["user_agent"], AGENT);
    }
    assert_eq!(events[0]["actor_kind"], "user");
    assert_eq!(events[2]["outcome"], "denied");
    assert_eq!(events[2]["details"]["reason"], "wrong password");
    assert_eq!(events[3]["details"]["file_id"], file.as_str());
    assert_eq!(events[4]["details"]["completed"], true);
    assert_eq!(events[4]["details"]["bytes"], pdf(b"the memo").len());
    assert!(
        !body.to_string().contains(&other),
        "the other link's events stay out"
    );

    // The entries are the log's own: the admin's query of the chain holds the same hashes.
    let log: Value = app
        .get(
            &format!("/api/v1/admin/audit?target_id={share}"),
            &admin.token,
        )
        .await
        .json()
        .await
        .expect("json");
    for event in events {
        let in_log = log["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["seq"] == event["seq"])
            .expect("in the log");
        assert_eq!(in_log["hash"], event["hash"]);
        assert_eq!(in_log["action"], event["action"]);
    }

    // An admin reads any share's report; another user learns nothing of it.
    let as_admin: Value = report(&app, &admin, &share, "")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(as_admin["events"], body["events"]);
    let bob = app.user().await;
    problem(report(&app, &bob, &share, "").await, StatusCode::NOT_FOUND).await;
    problem(
        report(&app, &ann, "not-a-share", "").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        report(&app, &ann, &share, "?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    app.stop().await;
}

async fn the_report_pages_and_exports_as_csv(topology: Topology) {
    let (app, _, ann, _, share, whole) = visited(topology).await;

    // Pages of two, following the cursor: the same events, each once.
    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page: Value = report(&app, &ann, &share, &query)
            .await
            .json()
            .await
            .expect("json");
        paged.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_cursor"].as_i64() {
            Some(next) => query = format!("?limit=2&after_seq={next}"),
            None => break,
        }
    }
    assert_eq!(&paged, whole["events"].as_array().expect("events"));

    let csv = report(&app, &ann, &share, "?format=csv").await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    assert_eq!(
        csv.headers()["content-disposition"],
        format!("attachment; filename=\"share-{share}-activity.csv\"").as_str()
    );
    let text = csv.text().await.expect("csv");
    // Python's csv module reads it back: a row per event, the same actions and addresses.
    let rows: Value = serde_json::from_str(&python(
        "import csv, io, json, sys; print(json.dumps(list(csv.DictReader(io.StringIO(sys.argv[1])))))",
        &[&text],
    ))
    .expect("json");
    let rows = rows.as_array().expect("rows");
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(actions, VISIT);
    assert_eq!(rows[1]["ip"], "127.0.0.1");
    assert_eq!(rows[1]["user_agent"], AGENT);
    let details: Value = serde_json::from_str(rows[2]["details"].as_str().expect("details"))
        .expect("details are JSON");
    assert_eq!(details["reason"], "wrong password");
    assert_eq!(rows[4]["hash"], whole["events"][4]["hash"]);
    app.stop().await;
}

async fn the_web_app_shows_the_report_with_hostile_text_inert(topology: Topology) {
    let (app, admin, ann, file, share, _) = visited(topology).await;

    let mut browser = Browser::with_session(&app, &ann.token);
    let details = browser.get(&format!("/app/files/{file}")).await;
    assert!(
        details
            .body
            .contains(&format!("/app/shares/{share}/activity"))
    );
    let page = browser.get(&format!("/app/shares/{share}/activity")).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [
        "Link created",
        "Download page opened",
        "Refused: wrong password",
        "Download of memo.pdf started",
        "Downloaded memo.pdf, complete",
        "127.0.0.1",
        // minijinja escapes the slash too.
        "Report&#x2f;1.0 &lt;script&gt;alert(1)&lt;&#x2f;script&gt;",
    ] {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }
    assert!(!page.body.contains("<script>alert"));
    let csv = browser
        .get(&format!("/app/shares/{share}/activity/export"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("seq,occurred_at,action,"));
    assert_eq!(csv.body.lines().count(), 1 + VISIT.len());

    // An admin's view of another's share names the file without linking to a page they
    // cannot open; another user gets "not found".
    let mut as_admin = Browser::with_session(&app, &admin.token);
    let page = as_admin.get(&format!("/app/shares/{share}/activity")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Refused: wrong password"));
    assert!(!page.body.contains(&format!("/app/files/{file}\"")));
    let bob = app.user().await;
    let mut theirs = Browser::with_session(&app, &bob.token);
    let refused = theirs.get(&format!("/app/shares/{share}/activity")).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

both_topologies!(
    the_report_lists_each_view_refusal_and_download_from_the_log,
    the_report_pages_and_exports_as_csv,
    the_web_app_shows_the_report_with_hostile_text_inert,
);
