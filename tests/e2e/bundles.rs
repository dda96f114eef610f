//! Bundles: one share of several files. The recipient's page lists them; each downloads (and
//! resumes) on its own and counts its own downloads; "Download all" streams them as one ZIP,
//! which Python's `zipfile` and Debian's `unzip` take apart, and which takes one download of
//! every file, all or none.

use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::smtp::SmtpServer;
use crate::common::web::Browser;
use crate::common::{
    TestApp, Topology, User, eventually, pattern, pdf, problem, python, ten_at_once_deliver_one,
};
use coffer::Roles;

/// Ready files of `user`'s, uploaded under `names` (each with its own bytes): (id, bytes).
async fn ready_files(app: &TestApp, user: &User, names: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let seed = u8::try_from(i).expect("few files");
        let bytes = pdf(&pattern(200_000 + i * 70_001, seed));
        let id = app.upload(user, name, bytes.clone()).await;
        files.push((id, bytes));
    }
    for (id, _) in &files {
        assert_eq!(app.wait_until_settled(user, id).await["status"], "ready");
    }
    files
}

/// A bundle of `files` shared by a link without recipient: (share, link).
async fn bundle(app: &TestApp, user: &User, files: &[&str], share: Value) -> (Value, String) {
    let mut body = share;
    body["file_ids"] = json!(files);
    let created = app
        .post_json("/api/v1/shares", &body, Some(&user.token))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let share = created["shares"][0].clone();
    let url = share["url"].as_str().expect("a link").to_owned();
    (share, url)
}

async fn body_of(response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        body.extend_from_slice(&piece.expect("piece"));
    }
    body
}

/// The share's files' complete downloads, once they are as `expected`.
async fn completed(app: &TestApp, user: &User, share: &str, expected: &[i64]) -> Value {
    counts_become(app, user, share, "downloads_completed", expected).await
}

/// The share's files' downloads under way or complete, once they are as `expected`.
async fn used(app: &TestApp, user: &User, share: &str, expected: &[i64]) {
    counts_become(app, user, share, "downloads_used", expected).await;
}

/// The share as its activity report has it, once each file's `count` is as `expected`.
async fn counts_become(
    app: &TestApp,
    user: &User,
    share: &str,
    count: &str,
    expected: &[i64],
) -> Value {
    eventually(
        "the downloads counted",
        std::time::Duration::from_secs(30),
        || async {
            let report = app
                .get_json(
                    &format!("/api/v1/shares/{share}/activity?limit=1"),
                    Some(&user.token),
                )
                .await;
            let counts: Vec<i64> = report["share"]["files"]
                .as_array()
                .expect("files")
                .iter()
                .map(|f| f[count].as_i64().expect("count"))
                .collect();
            if counts == expected {
                return Ok(report["share"].clone());
            }
            Err(format!("{count}: {counts:?}"))
        },
    )
    .await
}

async fn a_bundle_lists_its_files_and_each_downloads_and_resumes_on_its_own(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let names = ["report.pdf", "<b>bold<i>.pdf", "annex.pdf"];
    let files = ready_files(&app, &ann, &names).await;
    let ids: Vec<&str> = files.iter().map(|(id, _)| id.as_str()).collect();
    let (share, url) = bundle(&app, &ann, &ids, json!({ "max_downloads": 1 })).await;
    let listed: Vec<&str> = share["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["file_id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, ids, "in the order given");
    assert_eq!(share["file_id"], ids[0]);
    let share_id = share["id"].as_str().expect("id").to_owned();

    // The page lists each file, its name escaped, with a download of its own and one of all.
    let page = app.http.get(&url).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("<h1>3 files</h1>"), "{html}");
    assert!(html.contains("&lt;b&gt;bold&lt;i&gt;.pdf") && !html.contains("<b>bold"));
    for id in &ids {
        assert!(html.contains(&format!("/files/{id}\"")), "{html}");
    }
    assert!(html.contains("Download all (3 files, as one ZIP)"));

    // Each file downloads on its own, and counts its own downloads.
    let first = app
        .http
        .get(format!("{url}/files/{}", ids[0]))
        .send()
        .await
        .expect("file");
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["accept-ranges"], "bytes");
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(body_of(first).await, files[0].1);
    completed(&app, &ann, &share_id, &[1, 0, 0]).await;
    let again = app.http.get(format!("{url}/files/{}", ids[0])).send().await;
    assert_eq!(again.expect("again").status(), StatusCode::GONE);
    // …but its download, once complete, resumes for free while the link lives.
    let resumed = app
        .http
        .get(format!("{url}/files/{}", ids[0]))
        .header("Range", "bytes=1000-")
        .header("If-Range", &etag)
        .send()
        .await
        .expect("resumed");
    assert_eq!(resumed.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body_of(resumed).await, files[0].1[1000..]);

    // "Download all" needs a download of every file: the first has none left, so none is taken.
    let all = app
        .http
        .get(format!("{url}/zip"))
        .send()
        .await
        .expect("zip");
    assert_eq!(all.status(), StatusCode::GONE);
    let second = app
        .http
        .post(format!("{url}/files/{}", ids[1]))
        .form(&[("password", "")]);
    let second = second.send().await.expect("second");
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(body_of(second).await, files[1].1);

    // A file the link does not share is no file of it.
    let (other, _) = ready_files(&app, &ann, &["other.pdf"]).await.remove(0);
    for path in [format!("files/{other}"), "files/not-an-id".to_owned()] {
        let response = app.http.get(format!("{url}/{path}")).send().await;
        assert_eq!(response.expect("other").status(), StatusCode::NOT_FOUND);
    }

    // The owner sees each file's downloads, and the share's as those of the file with fewest.
    let seen = completed(&app, &ann, &share_id, &[1, 1, 0]).await;
    assert_eq!(seen["downloads_completed"], 0);
    let third = app.http.get(format!("{url}/files/{}", ids[2])).send().await;
    assert_eq!(body_of(third.expect("third")).await, files[2].1);
    let seen = completed(&app, &ann, &share_id, &[1, 1, 1]).await;
    assert_eq!(seen["downloads_completed"], 1);
    // Nothing left to download: the link is used up.
    let page = app.http.get(&url).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::GONE);
    // Each file's shares list the bundle.
    let of_annex = app
        .get_json(
            &format!("/api/v1/files/{}/shares", ids[2]),
            Some(&ann.token),
        )
        .await;
    assert_eq!(of_annex["shares"][0]["id"], share_id.as_str());
    app.stop().await;
}

async fn a_bundle_request_names_files_of_the_callers_own(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let bob = app.user().await;
    let files = ready_files(&app, &ann, &["a.pdf", "b.pdf"]).await;
    let (a, b) = (files[0].0.as_str(), files[1].0.as_str());
    let theirs = ready_files(&app, &bob, &["c.pdf"]).await.remove(0).0;
    let create = async |body: Value| {
        app.post_json("/api/v1/shares", &body, Some(&ann.token))
            .await
    };
    for body in [json!({}), json!({ "file_ids": [] })] {
        let refused = problem(create(body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            refused["detail"]
                .as_str()
                .expect("detail")
                .contains("file_ids")
        );
    }
    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let refused = create(json!({ "file_ids": too_many })).await;
    let refused = problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        refused["detail"]
            .as_str()
            .expect("detail")
            .contains("100 files")
    );
    // Another user's file, or none at all, is not found: no share is made of the others.
    for stranger in [theirs.clone(), uuid::Uuid::new_v4().to_string()] {
        let refused = create(json!({ "file_ids": [a, stranger] })).await;
        problem(refused, StatusCode::NOT_FOUND).await;
    }
    let of_a = app
        .get_json(&format!("/api/v1/files/{a}/shares"), Some(&ann.token))
        .await;
    assert_eq!(of_a["shares"], json!([]));
    // `file_ids` belongs to the bundle route; a file named twice is shared once.
    let here = app
        .post_json(
            &format!("/api/v1/files/{a}/shares"),
            &json!({ "file_ids": [a, b] }),
            Some(&ann.token),
        )
        .await;
    problem(here, StatusCode::UNPROCESSABLE_ENTITY).await;
    let (share, _) = bundle(&app, &ann, &[a, b, a], json!({})).await;
    assert_eq!(share["files"].as_array().expect("files").len(), 2);
    app.stop().await;
}

async fn a_bundle_is_emailed_once_every_file_is_ready_and_lists_them(topology: Topology) {
    let smtp = SmtpServer::start();
    let vars = [("COFFER_SMTP_URL", smtp.url.as_str())];
    // The workers are held back until the bundle is made: its files are all still unchecked.
    let mut app = TestApp::spawn_with(topology, &vars, Roles::API).await;
    let ann = app.user().await;
    // One will be rejected (an executable named .pdf): it is left out, and the others go out
    // once they are ready.
    let first = app
        .upload(&ann, "minutes.pdf", pdf(&pattern(300_000, 1)))
        .await;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend(pattern(4096, 3));
    let rejected = app.upload(&ann, "invoice.pdf", exe).await;
    let second = app
        .upload(&ann, "budget.pdf", pdf(&pattern(400_000, 2)))
        .await;
    let body = json!({
        "file_ids": [first, rejected, second],
        "recipients": ["rita@example.org"],
    });
    let created = app
        .post_json("/api/v1/shares", &body, Some(&ann.token))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    app.start_workers().await;
    let mail = smtp.wait_for("rita@example.org", 1).await.remove(0);
    for id in [&first, &second] {
        assert_eq!(app.file(&ann, id).await["status"], "ready", "emailed early");
    }
    assert!(mail.header("Subject").ends_with("shared 2 files with you"));
    let text = mail.part("text/plain");
    assert!(
        text.contains("- minutes.pdf (") && text.contains("- budget.pdf ("),
        "{text}"
    );
    assert!(!text.contains("invoice.pdf"), "{text}");
    assert_eq!(app.file(&ann, &rejected).await["status"], "rejected");
    let page = app.http.get(mail.link()).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(html.contains("minutes.pdf") && html.contains("budget.pdf"));
    assert!(!html.contains("invoice.pdf"), "{html}");
    // The link itself downloads them all, as one ZIP.
    let all = app
        .http
        .get(format!("{}/download", mail.link()))
        .send()
        .await;
    let all = all.expect("all");
    assert_eq!(all.status(), StatusCode::OK);
    assert_eq!(all.headers()["content-type"], "application/zip");
    assert!(body_of(all).await.starts_with(b"PK\x03\x04"));
    app.stop().await;
}

async fn the_web_app_shares_the_files_ticked_as_one_bundle(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let files = ready_files(&app, &ann, &["first.pdf", "<second>.pdf", "third.pdf"]).await;
    let mut browser = Browser::with_session(&app, &ann.token);
    let list = browser.get("/app/files").await;
    assert_eq!(list.status, StatusCode::OK);
    for (id, _) in &files {
        assert!(
            list.body
                .contains(&format!("type=\"checkbox\" name=\"file\" value=\"{id}\"")),
            "{}",
            list.body
        );
    }
    assert!(list.body.contains("Share selected"));
    // The list's form asks for the form of the files ticked (a GET, as the browser sends it).
    let (first, third) = (files[0].0.as_str(), files[2].0.as_str());
    let form = browser
        .get(&format!(
            "/app/shares/new?file={third}&file={first}&file=nonsense"
        ))
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body.contains("Share 2 files together"),
        "{}",
        form.body
    );
    let third_at = form.body.find("third.pdf").expect("third listed");
    let first_at = form.body.find("first.pdf").expect("first listed");
    assert!(third_at < first_at, "in the order ticked");
    // Nothing ticked: back to the list.
    let none = browser.get("/app/shares/new").await;
    assert_eq!(none.status, StatusCode::SEE_OTHER);
    assert_eq!(none.location(), "/app/files");

    let made = browser
        .post(
            "/app/shares",
            &[
                ("csrf", &form.csrf()),
                ("file", third),
                ("file", first),
                ("recipients", ""),
                ("expires_in_hours", "24"),
                ("max_downloads", "3"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let link = made
        .body
        .replace("&#x2f;", "/")
        .split('"')
        .find(|w| w.contains("/s/"))
        .expect("the link, shown once")
        .to_owned();
    let page = app.http.get(&link).send().await.expect("page");
    let html = page.text().await.expect("html");
    let (third_at, first_at) = (
        html.find("third.pdf").expect("third"),
        html.find("first.pdf").expect("first"),
    );
    assert!(
        third_at < first_at && !html.contains("&lt;second&gt;"),
        "{html}"
    );
    // Each file's page lists the bundle.
    let details = browser.get(&format!("/app/files/{first}")).await;
    assert!(
        details.body.contains("one link to 2 files"),
        "{}",
        details.body
    );
    // Another user's file is not found, and a malformed number keeps what was typed.
    let bob = app.user().await;
    let theirs = ready_files(&app, &bob, &["theirs.pdf"]).await.remove(0).0;
    let refused = browser.get(&format!("/app/shares/new?file={theirs}")).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let csrf = browser.csrf().await;
    let refused = browser
        .post(
            "/app/shares",
            &[
                ("csrf", &csrf),
                ("file", first),
                ("recipients", "rita@example.org"),
                ("max_downloads", "many"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("rita@example.org"),
        "{}",
        refused.body
    );
    app.stop().await;
}

async fn files_are_added_to_a_live_share(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let files = ready_files(&app, &ann, &["first.pdf", "second.pdf", "third.pdf"]).await;
    let (a, b, c) = (
        files[0].0.as_str(),
        files[1].0.as_str(),
        files[2].0.as_str(),
    );
    let theirs = ready_files(&app, &app.user().await, &["theirs.pdf"])
        .await
        .remove(0)
        .0;
    let (share, url) = bundle(&app, &ann, &[a], json!({})).await;
    let share_id = share["id"].as_str().expect("id");
    let path = format!("/api/v1/shares/{share_id}");
    let patch = async |body: Value| {
        let mut request = app.http.patch(app.url(&path)).json(&body);
        request = request.bearer_auth(&ann.token);
        request.send().await.expect("patch")
    };

    // A one-file link becomes a bundle; a file it has already is left as it is.
    let changed = patch(json!({ "add_file_ids": [b, a] })).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let changed: Value = changed.json().await.expect("json");
    let now: Vec<&str> = changed["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["file_id"].as_str().expect("id"))
        .collect();
    assert_eq!(now, [a, b]);
    let event = app.newest_event("share.changed").await;
    assert_eq!(event.details["files"], json!({ "old": [a], "new": [a, b] }));
    let second = app.http.get(format!("{url}/files/{b}")).send().await;
    assert_eq!(body_of(second.expect("second")).await, files[1].1);

    // Another's file is not found, and nothing is added; an empty list changes nothing.
    problem(
        patch(json!({ "add_file_ids": [c, theirs] })).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let refused = patch(json!({ "add_file_ids": [] })).await;
    problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;

    // The web app's edit page offers the owner's other files.
    let mut browser = Browser::with_session(&app, &ann.token);
    let form = browser.get(&format!("/app/shares/{share_id}/edit")).await;
    assert!(
        form.body.contains("Add files to this link"),
        "{}",
        form.body
    );
    assert!(form.body.contains(&format!("value=\"{c}\"")));
    assert!(!form.body.contains(&format!(
        "name=\"add_file\" type=\"checkbox\" value=\"{a}\""
    )));
    let saved = browser
        .post(
            &format!("/app/shares/{share_id}/edit"),
            &[("csrf", &form.csrf()), ("add_file", c)],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let page = app.http.get(&url).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("<h1>3 files</h1>") && html.contains("third.pdf"),
        "{html}"
    );
    app.stop().await;
}

async fn a_file_deleted_from_a_bundle_leaves_it_and_the_last_one_ends_the_link(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let files = ready_files(&app, &ann, &["first.pdf", "second.pdf"]).await;
    let (first, second) = (files[0].0.as_str(), files[1].0.as_str());
    let (_, url) = bundle(&app, &ann, &[first, second], json!({})).await;
    let delete = |id: &str| {
        app.http
            .delete(app.url(&format!("/api/v1/files/{id}")))
            .bearer_auth(&ann.token)
            .send()
    };
    assert_eq!(
        delete(first).await.expect("delete").status(),
        StatusCode::NO_CONTENT
    );
    // The page offers the one file left, as a single file's page does.
    let html = app
        .http
        .get(&url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("second.pdf") && !html.contains("first.pdf"),
        "{html}"
    );
    assert!(!html.contains("Download all"), "{html}");
    // …and the link's download is that file itself, which resumes, not a ZIP of one.
    let one = app
        .http
        .get(format!("{url}/download"))
        .send()
        .await
        .expect("download");
    assert_eq!(one.status(), StatusCode::OK);
    assert_eq!(one.headers()["accept-ranges"], "bytes");
    assert_ne!(one.headers()["content-type"], "application/zip");
    assert_eq!(body_of(one).await, files[1].1);
    let gone = app.http.get(format!("{url}/files/{first}")).send().await;
    assert_eq!(gone.expect("deleted file").status(), StatusCode::GONE);
    // The last file deleted ends the link.
    assert_eq!(
        delete(second).await.expect("delete").status(),
        StatusCode::NO_CONTENT
    );
    let ended = app.http.get(&url).send().await.expect("page");
    assert_eq!(ended.status(), StatusCode::GONE);
    app.stop().await;
}

/// Checks that Python's `zipfile` and Debian's `unzip -t` both refuse `zip` as an archive.
fn refused_by_unzip_tools(zip: &[u8]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cut.zip");
    std::fs::write(&path, zip).expect("write");
    let path = path.to_string_lossy();
    let python = python(
        "import sys, zipfile; print(zipfile.is_zipfile(sys.argv[1]))",
        &[&path],
    );
    assert_eq!(python.trim(), "False");
    let unzip = std::process::Command::new("unzip")
        .args(["-t", &path])
        .output()
        .expect("unzip runs");
    assert!(!unzip.status.success(), "unzip -t took it");
}

/// Reads a response to its end: the bytes, and whether it ended cleanly.
async fn read_to_end(response: reqwest::Response) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(piece) => body.extend_from_slice(&piece),
            Err(_) => return (body, false),
        }
    }
    (body, true)
}

async fn a_cut_zip_gives_every_place_back_and_a_damaged_one_is_no_archive(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    // The first file bigger than what loopback buffers hold, so that the server sees the cut.
    let big = pdf(&pattern(24 << 20, 1));
    let small = pdf(&pattern(300_000, 2));
    let mut ids = Vec::new();
    for (name, bytes) in [("big.pdf", &big), ("small.pdf", &small)] {
        let id = app.upload(&ann, name, bytes.clone()).await;
        assert_eq!(app.wait_until_settled(&ann, &id).await["status"], "ready");
        ids.push(id);
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (share, url) = bundle(&app, &ann, &ids, json!({ "max_downloads": 1 })).await;
    let share = share["id"].as_str().expect("id").to_owned();

    // A ZIP the recipient breaks off after a megabyte takes no download of either file.
    let mut cut = app
        .http
        .get(format!("{url}/zip"))
        .send()
        .await
        .expect("zip");
    assert_eq!(cut.status(), StatusCode::OK);
    let mut received = 0;
    while received < 1 << 20 {
        received += cut.chunk().await.expect("chunk").expect("more").len();
    }
    drop(cut);
    used(&app, &ann, &share, &[0, 0]).await;

    // A file found altered part-way through the archive ends it there, before the archive's
    // central directory: no unzip tool takes what arrived for a whole archive, and it takes no
    // download either.
    app.tamper_blob(ids[1], 100).await;
    let damaged = app
        .http
        .get(format!("{url}/zip"))
        .send()
        .await
        .expect("zip");
    assert_eq!(damaged.status(), StatusCode::OK);
    let (body, _) = read_to_end(damaged).await;
    assert!(
        body.len() > big.len() && body.len() < big.len() + small.len(),
        "the first file went out whole, the second short: {} bytes",
        body.len()
    );
    refused_by_unzip_tools(&body);
    used(&app, &ann, &share, &[0, 0]).await;
    let actions = app.audit_actions().await;
    assert!(
        actions.iter().any(|(a, _, _)| a == "file.integrity_failed"),
        "{actions:?}"
    );
    // The first file is still there to download, once.
    let first = app.http.get(format!("{url}/files/{}", ids[0])).send().await;
    let (body, clean) = read_to_end(first.expect("first")).await;
    assert!(clean && body == big);
    app.stop().await;
}

both_topologies!(
    a_bundle_lists_its_files_and_each_downloads_and_resumes_on_its_own,
    a_file_deleted_from_a_bundle_leaves_it_and_the_last_one_ends_the_link,
    files_are_added_to_a_live_share,
    the_web_app_shares_the_files_ticked_as_one_bundle,
    a_bundle_request_names_files_of_the_callers_own,
    a_bundle_is_emailed_once_every_file_is_ready_and_lists_them,
);

/// Checks `zip` with Debian's `unzip -t` and Python's `zipfile`: every entry's CRC, its name
/// and its bytes against `expected`, and that the archive is ZIP64. Answers Python's listing.
fn check_with_unzip_tools(zip: &[u8], expected: &[(&str, &[u8])]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("all.zip");
    std::fs::write(&path, zip).expect("write");
    let path = path.to_str().expect("path");
    let tested = std::process::Command::new("unzip")
        .args(["-t", path])
        .output()
        .expect("unzip (apt: unzip)");
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "unzip -t: {said}");
    assert!(said.contains("No errors detected"), "{said}");
    let listing: Value = serde_json::from_str(&python(
        "import hashlib, json, sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1])\n\
         assert z.testzip() is None\n\
         print(json.dumps([[i.filename, i.file_size, hashlib.sha256(z.read(i)).hexdigest(), i.compress_type] for i in z.infolist()]))",
        &[path],
    ))
    .expect("json");
    let listing = listing.as_array().expect("entries");
    assert_eq!(listing.len(), expected.len(), "{listing:?}");
    for (entry, (name, bytes)) in listing.iter().zip(expected) {
        assert_eq!(entry[0], *name);
        assert_eq!(entry[1], bytes.len());
        assert_eq!(entry[2], hex_sha256(bytes), "{name}");
        assert_eq!(entry[3], 0, "stored");
    }
    // ZIP64: its end-of-central-directory record and locator.
    let end = &zip[zip.len().saturating_sub(200)..];
    assert!(
        end.windows(4).any(|w| w == b"PK\x06\x06"),
        "no ZIP64 end record"
    );
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn download_all_streams_a_zip_that_unzip_tools_take_apart(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    // Uploads refuse `/` and `\` in names already; the ZIP mends what unzip tools mind.
    let names = [
        "report.pdf",
        "a:b*c?.pdf",
        "Report.pdf",
        "CON.pdf",
        ".hidden.pdf",
        "ünïcode ✓.pdf",
    ];
    let files = ready_files(&app, &ann, &names).await;
    let ids: Vec<&str> = files.iter().map(|(id, _)| id.as_str()).collect();
    let (share, url) = bundle(&app, &ann, &ids, json!({ "max_downloads": 2 })).await;
    let share_id = share["id"].as_str().expect("id").to_owned();

    let all = app
        .http
        .post(format!("{url}/zip"))
        .form(&[("password", "")]);
    let all = all.send().await.expect("zip");
    assert_eq!(all.status(), StatusCode::OK);
    assert_eq!(all.headers()["content-type"], "application/zip");
    assert_eq!(all.headers()["accept-ranges"], "none");
    assert!(all.headers().get("content-length").is_none(), "streamed");
    let disposition = all.headers()["content-disposition"].to_str().expect("name");
    assert!(disposition.starts_with("attachment;") && disposition.contains(".zip"));
    let zip = body_of(all).await;
    let safe = [
        "report.pdf",
        "a_b_c_.pdf",
        "Report (2).pdf",
        "_CON.pdf",
        "hidden.pdf",
        "ünïcode ✓.pdf",
    ];
    let expected: Vec<(&str, &[u8])> = safe
        .iter()
        .zip(&files)
        .map(|(name, (_, bytes))| (*name, bytes.as_slice()))
        .collect();
    check_with_unzip_tools(&zip, &expected);
    // One download of every file.
    completed(&app, &ann, &share_id, &[1, 1, 1, 1, 1, 1]).await;
    let event = app.newest_event("share.downloaded").await;
    assert_eq!(event.details["completed"], true);
    assert_eq!(event.details["file_ids"].as_array().expect("ids").len(), 6);
    app.stop().await;
}

async fn ten_parallel_zips_of_a_one_download_bundle_deliver_it_once(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let files = ready_files(&app, &ann, &["one.pdf", "two.pdf"]).await;
    let ids: Vec<&str> = files.iter().map(|(id, _)| id.as_str()).collect();
    let (share, url) = bundle(&app, &ann, &ids, json!({ "max_downloads": 1 })).await;
    let delivered = ten_at_once_deliver_one(&app, &format!("{url}/zip")).await;
    let expected: Vec<(&str, &[u8])> = [("one.pdf", &files[0].1), ("two.pdf", &files[1].1)]
        .map(|(name, bytes)| (name, bytes.as_slice()))
        .to_vec();
    check_with_unzip_tools(&delivered, &expected);
    let share_id = share["id"].as_str().expect("id");
    let seen = completed(&app, &ann, share_id, &[1, 1]).await;
    assert_eq!(seen["downloads_used"], 1);
    // Neither file has a download left on its own either.
    let one = app.http.get(format!("{url}/files/{}", ids[1])).send().await;
    assert_eq!(one.expect("one").status(), StatusCode::GONE);
    app.stop().await;
}

mod with_unzip_tools {
    macro_rules! needs_unzip_tools {
        ($($name:ident),* $(,)?) => {
            mod embedded {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = "needs python3 and unzip (apt: unzip); run by .ci/run"]
                    async fn $name() {
                        super::super::$name($crate::common::Topology::Embedded).await;
                    }
                )*
            }
            mod production {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = "needs python3, unzip (apt: unzip), PostgreSQL, Redis and an S3 server; run by .ci/run"]
                    async fn $name() {
                        super::super::$name($crate::common::Topology::Production).await;
                    }
                )*
            }
        };
    }

    needs_unzip_tools!(
        download_all_streams_a_zip_that_unzip_tools_take_apart,
        a_cut_zip_gives_every_place_back_and_a_damaged_one_is_no_archive,
        ten_parallel_zips_of_a_one_download_bundle_deliver_it_once,
    );
}

/// A recipient in headless Chromium (JavaScript off): confirms their address with the emailed
/// code, downloads one file of the bundle, then all of it as a ZIP, then resumes a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt: chromium), playwright-core (npm ci in tests/browser), python3; run by .ci/run"]
async fn a_recipient_verifies_and_downloads_a_bundle_in_a_browser() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let smtp = SmtpServer::start();
    let vars = [("COFFER_SMTP_URL", smtp.url.as_str())];
    let app = TestApp::spawn_with(Topology::Embedded, &vars, Roles::ALL).await;
    let ann = app.user().await;
    let names = ["Minutes 2026.pdf", "Budget <draft>.pdf"];
    let files = ready_files(&app, &ann, &names).await;
    let body = json!({
        "file_ids": [files[0].0, files[1].0],
        "recipients": ["reader@example.org"],
        "verify_recipient": true,
        "max_downloads": 2,
    });
    let created = app
        .post_json("/api/v1/shares", &body, Some(&ann.token))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let link = smtp
        .wait_for("reader@example.org", 1)
        .await
        .remove(0)
        .link();

    let browser = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let artifacts = browser.join("artifacts").join("bundle");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let mut node = tokio::process::Command::new("node")
        .current_dir(&browser)
        .arg("bundle.mjs")
        .arg(&link)
        .arg(&artifacts)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take().expect("stdin");
    let mut lines = tokio::io::BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let mut report = None;
    let run = async {
        while let Some(line) = lines.next_line().await.expect("read") {
            printed.push(line.clone());
            let Ok(message) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if message["need_code"] == true {
                // The second email to the reader: the link's, then the code's.
                let mail = smtp.wait_for("reader@example.org", 2).await.remove(1);
                let text = mail.part("text/plain");
                let code = text
                    .split_whitespace()
                    .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
                    .unwrap_or_else(|| panic!("no code in:\n{text}"))
                    .to_owned();
                stdin
                    .write_all(format!("{code}\n").as_bytes())
                    .await
                    .expect("write the code");
                stdin.flush().await.expect("flush");
            }
            if message.get("report").is_some() {
                report = Some(message["report"].clone());
            }
        }
    };
    let finished = tokio::time::timeout(std::time::Duration::from_secs(180), run).await;
    assert!(
        finished.is_ok(),
        "the browser run did not finish in time:\n{}",
        printed.join("\n")
    );
    let status = node.wait().await.expect("node ends");
    assert!(
        status.success(),
        "the browser run failed:\n{}",
        printed.join("\n")
    );
    let report = report.unwrap_or_else(|| panic!("no report:\n{}", printed.join("\n")));

    // Before the code, no file was offered.
    let before = report["before_verified"].as_str().expect("text");
    assert!(
        before.contains("Confirm it is you") && !before.contains("Download all"),
        "{before}"
    );
    assert_eq!(report["names"], json!(names));
    // As the browser saves it: `<` and `>` are no file name's on every system.
    assert_eq!(report["one"], "Budget _draft_.pdf");
    assert_eq!(
        std::fs::read(artifacts.join("one.pdf")).expect("one"),
        files[1].1
    );
    assert!(report["all"].as_str().expect("name").ends_with(".zip"));
    let zip = std::fs::read(artifacts.join("all.zip")).expect("zip");
    let expected: Vec<(&str, &[u8])> = vec![
        (names[0], files[0].1.as_slice()),
        ("Budget _draft_.pdf", files[1].1.as_slice()),
    ];
    let listing: Value = serde_json::from_str(&python(
        "import hashlib, json, sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1])\n\
         assert z.testzip() is None\n\
         print(json.dumps([[i.filename, hashlib.sha256(z.read(i)).hexdigest()] for i in z.infolist()]))",
        &[artifacts.join("all.zip").to_str().expect("path")],
    ))
    .expect("json");
    assert!(zip.starts_with(b"PK\x03\x04"));
    for (entry, (name, bytes)) in listing.as_array().expect("entries").iter().zip(&expected) {
        assert_eq!(entry[0], *name);
        assert_eq!(entry[1], hex_sha256(bytes));
    }
    // The resumed part is the rest of the file, served to the verified browser.
    assert_eq!(report["head_status"], 200);
    assert_eq!(report["resumed_status"], 206);
    let size = files[0].1.len();
    assert_eq!(
        report["content_range"],
        format!("bytes 1000-{}/{size}", size - 1).as_str()
    );
    assert_eq!(
        std::fs::read(artifacts.join("resumed.part")).expect("part"),
        files[0].1[1000..]
    );
    app.stop().await;
}
