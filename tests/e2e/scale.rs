//! Scaling out: several `coffer api` and `coffer worker` processes on one database, queue and
//! object store, and what operators watch them by: metrics and request ids in the logs.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::smtp::SmtpServer;
use crate::common::{
    Client, Environment, Process, TestApp, Topology, eventually, metric, pattern, pdf,
};
use reqwest::StatusCode;
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";
const ADMIN: (&str, &str) = ("ops@example.org", "operator password 42");

async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let response = http.get(url).bearer_auth(token).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.json().await.expect("json")
}

/// The sum of one metric over several processes' `/metrics`.
async fn metric_sum(bases: &[String], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for base in bases {
        let text = Client::new(base).scrape().await;
        sum += metric(&text, name, labels).unwrap_or(0.0);
    }
    sum
}

struct Upload {
    id: String,
    token: String,
    bytes: Vec<u8>,
}

/// Two APIs and two workers on one database, queue and object store: every file becomes ready
/// once, every email goes out once, any API serves any file, and the audit chain holds.
async fn two_apis_and_two_workers_do_each_thing_once(topology: Topology) {
    let smtp = SmtpServer::start();
    let env = Environment::new(
        topology,
        &[
            ("COFFER_SMTP_URL", &smtp.url),
            ("COFFER_ADMIN_EMAIL", ADMIN.0),
            ("COFFER_ADMIN_PASSWORD", ADMIN.1),
            ("COFFER_METRICS_BIND", "127.0.0.1:0"),
        ],
    )
    .await;
    // The first API migrates the database; the others start on a migrated one.
    let api1 = Process::start("api", &env.vars);
    let api2 = Process::start("api", &env.vars);
    let apis = [api1.base.clone(), api2.base.clone()].map(|b| b.expect("the API listens"));
    let mut worker_vars = env.vars.clone();
    worker_vars.push(("COFFER_PUBLIC_URL".into(), apis[0].clone()));
    let workers = [
        Process::start("worker", &worker_vars),
        Process::start("worker", &worker_vars),
    ];
    let worker_ops: Vec<String> = workers
        .iter()
        .map(|w| w.ops.clone().expect("the worker serves metrics"))
        .collect();
    let http = reqwest::Client::new();
    let clients = apis.clone().map(Client::new);

    // Accounts made through one API sign in through the other.
    clients[0]
        .sign_in("alice@example.org", PASSWORD, true)
        .await;
    clients[1].sign_in("bob@example.org", PASSWORD, true).await;
    for address in ["alice@example.org", "bob@example.org"] {
        env.verify_email(address).await;
    }
    let tokens = [
        clients[1]
            .sign_in("alice@example.org", PASSWORD, false)
            .await,
        clients[0].sign_in("bob@example.org", PASSWORD, false).await,
    ];

    // Uploads through both APIs at once, each shared with two recipients.
    const FILES: usize = 16;
    let uploads = (0..FILES).map(|i| {
        let (http, base, token) = (http.clone(), apis[i % 2].clone(), tokens[i % 2].clone());
        async move {
            let bytes = pdf(&pattern(150_000 + i * 1_000, i as u8));
            let response = http
                .put(format!(
                    "{base}/api/v1/files/f{i}.pdf?recipients=r{i}-a@example.net,r{i}-b@example.net&expires_in_hours=24"
                ))
                .bearer_auth(&token)
                .body(bytes.clone())
                .send()
                .await
                .expect("upload");
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let body: Value = response.json().await.expect("json");
            let id = body["id"].as_str().expect("id").to_owned();
            Upload { id, token, bytes }
        }
    });
    let uploads: Vec<Upload> = futures::future::join_all(uploads).await;
    for (i, upload) in uploads.iter().enumerate() {
        clients[(i + 1) % 2]
            .wait_ready(&upload.token, &upload.id)
            .await;
    }

    // Every share emailed, and nothing left in any queue.
    eventually("every share emailed", Duration::from_secs(120), || async {
        let mut emailed = 0;
        for (i, upload) in uploads.iter().enumerate() {
            let url = format!("{}/api/v1/files/{}/shares", apis[i % 2], upload.id);
            let shares = get_json(&http, &url, &upload.token).await;
            let shares = shares["shares"].as_array().expect("shares").clone();
            emailed += shares.iter().filter(|s| s["state"] == "emailed").count();
        }
        let waiting = metric_sum(&worker_ops, "coffer_queue_depth", &[]).await;
        if emailed == 2 * FILES && waiting == 0.0 {
            Ok(())
        } else {
            Err(format!("{emailed} shares emailed, {waiting} tasks queued"))
        }
    })
    .await;
    let mails = smtp.mails();
    let mut per_recipient: HashMap<String, Vec<String>> = HashMap::new();
    for mail in &mails {
        for to in &mail.to {
            per_recipient
                .entry(to.clone())
                .or_default()
                .push(mail.link());
        }
    }
    assert_eq!(mails.len(), 2 * FILES, "one email per recipient");
    assert_eq!(per_recipient.len(), 2 * FILES);
    assert!(per_recipient.values().all(|links| links.len() == 1));

    // What the database and the object store hold: one validation, one encryption and one blob
    // per file, no quarantine left, one `share.emailed` per share.
    let core = coffer::coffer_core::Core::build(env.config(), false)
        .await
        .expect("core");
    let events = {
        use sea_orm::EntityTrait as _;
        entity::audit_event::Entity::find()
            .all(core.db())
            .await
            .expect("audit rows")
    };
    let count = |action: &str, target: &str| {
        events
            .iter()
            .filter(|e| e.action == action && e.target_id.as_deref() == Some(target))
            .count()
    };
    for upload in &uploads {
        assert_eq!(count("file.validated", &upload.id), 1, "{}", upload.id);
        assert_eq!(count("file.encrypted", &upload.id), 1, "{}", upload.id);
        let blobs = core
            .storage
            .list(&format!("blobs/{}", upload.id))
            .await
            .expect("list");
        assert_eq!(blobs.len(), 1, "one blob for {}: {blobs:?}", upload.id);
    }
    assert!(
        core.storage
            .list("quarantine")
            .await
            .expect("list")
            .is_empty()
    );
    let emailed_events = events
        .iter()
        .filter(|e| e.action == "share.emailed")
        .count();
    assert_eq!(emailed_events, 2 * FILES);

    // Any API serves any file, to its owner and through recipients' links.
    for (i, upload) in uploads.iter().enumerate() {
        for base in &apis {
            let body = http
                .get(format!("{base}/api/v1/files/{}/content", upload.id))
                .bearer_auth(&upload.token)
                .send()
                .await
                .expect("download");
            assert_eq!(body.status(), StatusCode::OK);
            assert!(body.bytes().await.expect("body")[..] == upload.bytes[..]);
        }
        for (which, base) in [("a", &apis[1]), ("b", &apis[0])] {
            let link = &per_recipient[&format!("r{i}-{which}@example.net")][0];
            let path = link.split_once("/s/").expect("a share link").1;
            let body = http
                .get(format!("{base}/s/{path}/download"))
                .send()
                .await
                .expect("recipient download");
            assert_eq!(body.status(), StatusCode::OK);
            assert!(body.bytes().await.expect("body")[..] == upload.bytes[..]);
        }
    }
    let total: usize = uploads.iter().map(|u| u.bytes.len()).sum();
    let total = total as f64;
    let uploaded = metric_sum(&apis, "coffer_uploaded_bytes_total", &[]).await;
    assert_eq!(uploaded, total);
    let by_owner = [("via", "owner")];
    let downloaded = metric_sum(&apis, "coffer_downloaded_bytes_total", &by_owner).await;
    assert_eq!(downloaded, 2.0 * total);
    let by_share = [("via", "share")];
    let downloaded = metric_sum(&apis, "coffer_downloaded_bytes_total", &by_share).await;
    assert_eq!(downloaded, 2.0 * total);
    let encrypted = [("job", "encrypt"), ("outcome", "succeeded")];
    let encrypted = metric_sum(&worker_ops, "coffer_jobs_finished_total", &encrypted).await;
    assert!(encrypted >= FILES as f64, "{encrypted} encrypt jobs");

    // The audit chain, sealed by both workers in turn, verifies through either API.
    let admin = clients[1].sign_in(ADMIN.0, ADMIN.1, false).await;
    eventually("every event sealed", Duration::from_secs(60), || async {
        let stored = {
            use sea_orm::{EntityTrait as _, PaginatorTrait as _};
            entity::audit_event::Entity::find()
                .count(core.db())
                .await
                .expect("count")
        };
        let url = format!("{}/api/v1/admin/audit/verify", apis[1]);
        let report = get_json(&http, &url, &admin).await;
        assert_eq!(report["ok"], true, "{report}");
        if report["checked"].as_u64() == Some(stored) {
            assert!(report["first_bad_seq"].is_null());
            Ok(())
        } else {
            Err(format!("not every event was sealed: {report}"))
        }
    })
    .await;

    drop(workers);
    drop((api1, api2));
    env.cleanup().await;
}

/// JSON logs, and one request id from the upload's response through every job it caused.
async fn a_request_id_follows_an_upload_into_its_jobs(topology: Topology) {
    let logs = tempfile::tempdir().expect("log dir");
    let env = Environment::new(
        topology,
        &[("COFFER_LOG_FORMAT", "json"), ("COFFER_LOG", "info")],
    )
    .await;
    let api_log = logs.path().join("api.log");
    let worker_log = logs.path().join("worker.log");
    let api = Process::start_logging_to("api", &env.vars, &api_log);
    let base = api.base.clone().expect("the API listens");
    let mut worker_vars = env.vars.clone();
    worker_vars.push(("COFFER_PUBLIC_URL".into(), base.clone()));
    let worker = Process::start_logging_to("worker", &worker_vars, &worker_log);
    let client = Client::new(&base);
    let http = client.http.clone();
    let token = client.sign_in("trace@example.org", PASSWORD, true).await;
    env.verify_email("trace@example.org").await;

    let request_id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let upload = http
        .put(format!(
            "{base}/api/v1/files/traced.pdf?recipients=reader@example.net"
        ))
        .bearer_auth(&token)
        .header("X-Request-Id", &request_id)
        .body(pdf(b"traced"))
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), StatusCode::ACCEPTED);
    assert_eq!(
        upload.headers()["x-request-id"].to_str().ok(),
        Some(request_id.as_str()),
        "a plain id from the client is kept"
    );
    let id = upload.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let own = http
        .get(format!("{base}/healthz"))
        .header("X-Request-Id", "bad id\twith tab")
        .send()
        .await
        .expect("healthz");
    let made = own.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(made.len(), 32, "a hostile id is replaced: {made}");
    client.wait_ready(&token, &id).await;

    // Each job the upload caused logs its success under the upload's request id.
    let lines = |path: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .expect("log")
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    };
    let done = |line: &Value, job: &str| {
        line["fields"]["message"] == "job succeeded"
            && line["span"]["job"] == job
            && line["span"]["request_id"] == request_id.as_str()
    };
    eventually("every job logged", Duration::from_secs(60), || async {
        let worker_lines = lines(&worker_log);
        let jobs = ["validate", "encrypt", "notify"];
        let missing: Vec<_> = jobs
            .iter()
            .filter(|job| !worker_lines.iter().any(|l| done(l, job)))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no log line under {request_id} for {missing:?}"))
        }
    })
    .await;
    let api_lines = lines(&api_log);
    assert!(
        api_lines.iter().any(|l| {
            l["fields"]["message"] == "request answered"
                && l["span"]["request_id"] == request_id.as_str()
                && l["fields"]["route"] == "/api/v1/files/:param0"
                && l["fields"]["status"] == 202
        }),
        "the API logs the request with its route and status"
    );
    // Neither log holds the session token or the password.
    for path in [&api_log, &worker_log] {
        let text = std::fs::read_to_string(path).expect("log");
        assert!(!text.contains(&token), "a token in {}", path.display());
        assert!(!text.contains(PASSWORD), "a password in {}", path.display());
    }
    drop(worker);
    drop(api);
    env.cleanup().await;
}

/// `/metrics`: requests by route (never by raw path), jobs, bytes and files.
async fn metrics_count_requests_jobs_bytes_and_files(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let bytes = pdf(&pattern(100_000, 3));
    let id = app.upload(&user, "measured.pdf", bytes.clone()).await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    let download = app.download(&user, &id).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.bytes().await.expect("body").len(), bytes.len());
    let unknown = app
        .http
        .get(app.url("/s/not-a-real-share-token"))
        .send()
        .await
        .expect("page");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // A job is counted once its handler has returned, a moment after the file it made ready
    // is committed: scrape until the last one is in.
    let text = eventually(
        "the encrypt job counted",
        Duration::from_secs(10),
        || async {
            let response = app
                .http
                .get(app.url("/metrics"))
                .bearer_auth(crate::common::METRICS_TOKEN)
                .send()
                .await
                .expect("get");
            assert_eq!(response.status(), StatusCode::OK);
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .is_ok_and(|t| t.starts_with("application/openmetrics-text"))
            );
            let text = response.text().await.expect("text");
            let encrypted = [("job", "encrypt"), ("outcome", "succeeded")];
            match metric(&text, "coffer_jobs_finished_total", &encrypted) {
                Some(_) => Ok(text),
                None => Err("no encrypt job counted yet".to_owned()),
            }
        },
    )
    .await;
    assert!(text.ends_with("# EOF\n"), "a complete exposition");
    let m = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    let put = [
        ("method", "PUT"),
        ("route", "/api/v1/files/:param0"),
        ("status", "202"),
    ];
    assert_eq!(m("coffer_http_requests_total", &put), Some(1.0));
    assert_eq!(
        m("coffer_http_request_duration_seconds_count", &put),
        Some(1.0)
    );
    let page = [("route", "/s/:param0"), ("status", "404")];
    assert_eq!(m("coffer_http_requests_total", &page), Some(1.0));
    assert!(
        !text.contains("not-a-real-share-token"),
        "share tokens never become labels"
    );
    for job in ["validate", "encrypt"] {
        assert!(m("coffer_jobs_started_total", &[("job", job)]) >= Some(1.0));
        let ok = [("job", job), ("outcome", "succeeded")];
        assert!(m("coffer_jobs_finished_total", &ok) >= Some(1.0));
        assert!(m("coffer_job_duration_seconds_count", &ok) >= Some(1.0));
    }
    let size = bytes.len() as f64;
    assert_eq!(m("coffer_uploaded_bytes_total", &[]), Some(size));
    assert_eq!(
        m("coffer_downloaded_bytes_total", &[("via", "owner")]),
        Some(size)
    );
    assert_eq!(m("coffer_files", &[("status", "ready")]), Some(1.0));
    assert_eq!(m("coffer_files", &[("status", "quarantined")]), Some(0.0));
    for queue in ["validate", "encrypt", "notify", "rewrap"] {
        assert_eq!(m("coffer_queue_depth", &[("queue", queue)]), Some(0.0));
    }
    app.stop().await;
}

/// A scrape does not count the files table each time: the file gauges are counted at most every
/// 15 seconds, so a file recorded between two scrapes a moment apart shows only later (here the
/// second scrape still says what the first said, although the table changed).
async fn scrapes_do_not_count_the_files_table_each_time(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let first = app.upload(&user, "one.txt", b"one".to_vec()).await;
    app.wait_until_settled(&user, &first).await;
    let before = app.scrape().await;
    let ready = |text: &str| metric(text, "coffer_files", &[("status", "ready")]);
    assert_eq!(ready(&before), Some(1.0));
    let second = app.upload(&user, "two.txt", b"two".to_vec()).await;
    app.wait_until_settled(&user, &second).await;
    let after = app.scrape().await;
    assert_eq!(ready(&after), Some(1.0), "counted again within 15 s");
    app.stop().await;
}

both_topologies!(
    scrapes_do_not_count_the_files_table_each_time,
    two_apis_and_two_workers_do_each_thing_once,
    a_request_id_follows_an_upload_into_its_jobs,
    metrics_count_requests_jobs_bytes_and_files,
);
