//! Several files in one upload form: one file each, and with recipients one share of all of
//! them, emailed once every file is ready (a file rejected meanwhile is left out, and named as
//! rejected in the owner's view). A form refused part-way keeps none of its files.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use sea_orm::{EntityTrait as _, PaginatorTrait as _};
use serde_json::Value;

use crate::common::smtp::SmtpServer;
use crate::common::web::Browser;
use crate::common::{TestApp, Topology, User, pattern, pdf, problem};
use coffer::Roles;

/// An executable, under a name that claims otherwise: validation rejects it.
fn executable() -> Vec<u8> {
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend(pattern(4096, 3));
    exe
}

fn with_files(mut form: Form, files: &[(&str, Vec<u8>)]) -> Form {
    for (name, bytes) in files {
        form = form.part(
            "file",
            Part::bytes(bytes.clone()).file_name(name.to_string()),
        );
    }
    form
}

async fn post_form(app: &TestApp, user: &User, form: Form) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/files"))
        .bearer_auth(&user.token)
        .multipart(form)
        .send()
        .await
        .expect("upload")
}

/// Files, shares and objects: what a refused form must not have added to.
async fn kept(app: &TestApp) -> (u64, u64, usize) {
    let db = app.core().db();
    (
        entity::file::Entity::find().count(db).await.expect("files"),
        entity::share::Entity::find()
            .count(db)
            .await
            .expect("shares"),
        app.objects("").await.len(),
    )
}

async fn one_form_of_several_files_makes_one_share_of_all(topology: Topology) {
    let smtp = SmtpServer::start();
    let vars = [("COFFER_SMTP_URL", smtp.url.as_str())];
    // The workers wait until the upload is in: none of its files is checked yet.
    let mut app = TestApp::spawn_with(topology, &vars, Roles::API).await;
    let ann = app.user().await;
    let minutes = pdf(&pattern(300_000, 1));
    let budget = pdf(&pattern(200_000, 2));
    let form = Form::new()
        .text("recipients", "rita@example.org, sam@example.org")
        .text("message", "Both, as promised");
    let form = with_files(
        form,
        &[
            ("minutes.pdf", minutes.clone()),
            ("invoice.pdf", executable()),
            ("budget.pdf", budget.clone()),
        ],
    );
    let response = post_form(&app, &ann, form).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    let files = accepted["files"].as_array().expect("files");
    let names: Vec<&str> = files.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["minutes.pdf", "invoice.pdf", "budget.pdf"]);
    assert!(files.iter().all(|f| f["status"] == "quarantined"));
    let ids: Vec<String> = files
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect();
    // The answer's own fields are its first file's.
    assert_eq!(accepted["id"], files[0]["id"]);
    assert_eq!(accepted["name"], "minutes.pdf");
    // One share per recipient, each of all three files in the order sent.
    let shares = accepted["shares"].as_array().expect("shares");
    assert_eq!(shares.len(), 2, "{accepted}");
    for share in shares {
        assert_eq!(share["state"], "pending");
        let of: Vec<&str> = share["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["file_id"].as_str())
            .collect();
        assert_eq!(of, ids.iter().map(String::as_str).collect::<Vec<_>>());
    }

    app.start_workers().await;
    let mail = smtp.wait_for("rita@example.org", 1).await.remove(0);
    for id in [&ids[0], &ids[2]] {
        assert_eq!(app.file(&ann, id).await["status"], "ready", "emailed early");
    }
    let invoice = app.wait_until_settled(&ann, &ids[1]).await;
    assert_eq!(invoice["status"], "rejected");
    assert!(
        invoice["reject_reason"]
            .as_str()
            .is_some_and(|r| r.contains("executable")),
        "{invoice}"
    );
    // One email for the upload, listing the files that may go, the rejected one left out.
    assert!(mail.header("Subject").ends_with("shared 2 files with you"));
    let text = mail.part("text/plain");
    assert!(text.contains("Both, as promised"), "{text}");
    assert!(
        text.contains("- minutes.pdf (") && text.contains("- budget.pdf ("),
        "{text}"
    );
    assert!(!text.contains("invoice.pdf"), "{text}");
    assert_eq!(smtp.wait_for("sam@example.org", 1).await.len(), 1);
    // The owner's view of the share still names the rejected file, as rejected.
    let mut owner = Browser::with_session(&app, &ann.token);
    let page = owner.get(&format!("/app/files/{}", ids[1])).await;
    assert!(
        page.body.contains("invoice.pdf") && page.body.contains("rejected"),
        "{}",
        page.body
    );
    // The recipient's "Download all" is the two that were accepted.
    let all = app
        .http
        .get(format!("{}/zip", mail.link()))
        .send()
        .await
        .expect("zip");
    assert_eq!(all.status(), StatusCode::OK);
    let zip = all.bytes().await.expect("body").to_vec();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("all.zip");
    std::fs::write(&path, &zip).expect("write");
    let listing = crate::common::python(
        "import sys, zipfile; print(','.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        &[&path.to_string_lossy()],
    );
    assert_eq!(listing.trim(), "minutes.pdf,budget.pdf");

    // Several files without recipients are just files: no share.
    let form = with_files(
        Form::new(),
        &[
            ("one.txt", b"first".to_vec()),
            ("two.txt", b"second".to_vec()),
        ],
    );
    let response = post_form(&app, &ann, form).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    assert_eq!(accepted["files"].as_array().map(Vec::len), Some(2));
    assert!(accepted.get("shares").is_none(), "{accepted}");
    // A one-file upload's answer lists its file too.
    let response = post_form(
        &app,
        &ann,
        with_files(Form::new(), &[("three.txt", b"third".to_vec())]),
    )
    .await;
    let accepted: Value = response.json().await.expect("json");
    assert_eq!(accepted["files"][0]["id"], accepted["id"]);
    app.stop().await;
}

async fn a_form_refused_after_some_files_keeps_none_of_them(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let before = kept(&app).await;
    let two = || {
        [
            ("first.txt", b"first file".to_vec()),
            ("second.txt", b"second file".to_vec()),
        ]
    };
    // A bad field after two files were sealed.
    let form = with_files(Form::new(), &two()).text("max_downloads", "many");
    let refused = problem(
        post_form(&app, &ann, form).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("max_downloads")),
        "{refused}"
    );
    // An empty file among others: named.
    let mut files = two().to_vec();
    files.insert(1, ("empty.txt", Vec::new()));
    let refused = problem(
        post_form(&app, &ann, with_files(Form::new(), &files)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("“empty.txt”: the file is empty")),
        "{refused}"
    );
    // One file more than a share may hold.
    let many: Vec<(String, Vec<u8>)> = (0..=100)
        .map(|i| (format!("note-{i}.txt"), format!("note {i}").into_bytes()))
        .collect();
    let many: Vec<(&str, Vec<u8>)> = many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let refused = problem(
        post_form(&app, &ann, with_files(Form::new(), &many)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("at most 100 files")),
        "{refused}"
    );
    // Recipients refused after the files: no share, no file.
    let form = with_files(Form::new(), &two()).text("recipients", "not an address");
    problem(
        post_form(&app, &ann, form).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(kept(&app).await, before);
    assert!(app.objects("quarantine").await.is_empty());
    app.stop().await;
}

async fn the_upload_page_takes_several_files(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let mut browser = Browser::with_session(&app, &ann.token);
    let form = browser.get("/app/upload").await;
    assert!(
        form.body.contains("type=\"file\" multiple required"),
        "{}",
        form.body
    );
    let csrf = form.csrf();
    let post = |files: &[(&str, Vec<u8>)], recipients: &str| {
        with_files(
            Form::new()
                .text("csrf", csrf.clone())
                .text("recipients", recipients.to_owned()),
            files,
        )
    };
    let files = [
        ("minutes.pdf", pdf(b"minutes")),
        ("<budget>.pdf", pdf(b"budget")),
    ];
    // A refused form shows what went wrong and keeps none of its files.
    let before = kept(&app).await;
    let refused = browser
        .post_multipart(
            "/app/files",
            post(&[files[0].clone(), ("empty.pdf", Vec::new())], ""),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("“empty.pdf”: the file is empty"),
        "{}",
        refused.body
    );
    assert_eq!(kept(&app).await, before);
    let done = browser
        .post_multipart("/app/files", post(&files, "rita@example.org"))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/app/files?uploaded=2&shared=1");
    let list = browser.get(done.location()).await;
    assert!(
        list.body.contains("2 files uploaded.")
            && list.body.contains("goes out once they are ready"),
        "{}",
        list.body
    );
    assert!(list.body.contains("&lt;budget&gt;.pdf"), "{}", list.body);
    // Without recipients: the same, without a share.
    let done = browser.post_multipart("/app/files", post(&files, "")).await;
    assert_eq!(done.location(), "/app/files?uploaded=2");
    // One file: its page, as before.
    let done = browser
        .post_multipart("/app/files", post(&files[..1], ""))
        .await;
    assert!(
        done.location().starts_with("/app/files/"),
        "{}",
        done.location()
    );
    app.stop().await;
}

both_topologies!(
    one_form_of_several_files_makes_one_share_of_all,
    a_form_refused_after_some_files_keeps_none_of_them,
    the_upload_page_takes_several_files,
);
