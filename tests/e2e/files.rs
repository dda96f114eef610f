//! Uploading, the pipeline to `ready` or `rejected`, downloads with ranges, listing, deleting.

use crate::common::{TestApp, Topology, pattern, pdf, problem};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const CHUNK: usize = 64 * 1024;

async fn raw_put_reaches_ready_and_downloads_identical(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let bytes = pdf(&pattern(3 * CHUNK + 123, 7));

    let response = app
        .put_file(&user, "Quarterly report.pdf", bytes.clone())
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("json");
    assert_eq!(accepted["status"], "quarantined");
    assert_eq!(accepted["name"], "Quarterly report.pdf");
    assert_eq!(accepted["size"], bytes.len());
    let id = accepted["id"].as_str().expect("id");

    let file = app.wait_until_settled(&user, id).await;
    assert_eq!(file["status"], "ready", "{file}");
    assert_eq!(file["content_type"], "application/pdf");
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert!(file["ready_at"].as_str().is_some());

    let download = app.download(&user, id).await;
    assert_eq!(download.status(), StatusCode::OK);
    let headers = download.headers().clone();
    assert_eq!(
        headers["content-type"], "application/octet-stream",
        "a download, never rendered"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"Quarterly report.pdf\"; filename*=UTF-8''Quarterly%20report%2Epdf"
    );
    let body = download.bytes().await.expect("body");
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        file["sha256"].as_str().expect("sha")
    );
    assert!(body == bytes);

    let actions: Vec<String> = app
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    for action in [
        "file.uploaded",
        "file.validated",
        "file.encrypted",
        "file.downloaded",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    // The quarantine copy is gone; only the sealed blob remains.
    app.quarantine_emptied("").await;
    assert_eq!(app.objects("blobs").await.len(), 1);
    app.stop().await;
}

async fn multipart_upload_works_the_same(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let bytes = b"name,amount\nalice,10\nbob,20\n".to_vec();
    let response = app.post_file(&user, "ledger.csv", bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let file = app.wait_until_settled(&user, &id).await;
    assert_eq!(file["status"], "ready", "{file}");
    assert_eq!(file["content_type"], "text/plain");
    assert_eq!(
        app.download(&user, &id)
            .await
            .bytes()
            .await
            .expect("body")
            .to_vec(),
        bytes
    );
    app.stop().await;
}

async fn ranges_return_exact_bytes(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let bytes = pdf(&pattern(5 * CHUNK, 3));
    let len = bytes.len();
    let id = app.upload(&user, "big.pdf", bytes.clone()).await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");

    let cases = [
        ("bytes=0-9".to_owned(), 0, 9),
        (
            format!("bytes={}-{}", CHUNK - 5, CHUNK + 5),
            CHUNK - 5,
            CHUNK + 5,
        ),
        (
            format!("bytes={}-{}", CHUNK, 3 * CHUNK - 1),
            CHUNK,
            3 * CHUNK - 1,
        ),
        (format!("bytes={}-", len - 100), len - 100, len - 1),
        (format!("bytes=-{}", 70_000), len - 70_000, len - 1),
        (format!("bytes=10-{}", len + 1000), 10, len - 1),
    ];
    for (header, start, end) in cases {
        let response = app
            .http
            .get(app.url(&format!("/api/v1/files/{id}/content")))
            .bearer_auth(&user.token)
            .header("Range", &header)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{header}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {start}-{end}/{len}").as_str()
        );
        assert_eq!(
            response.headers()["content-length"],
            (end - start + 1).to_string().as_str()
        );
        let body = response.bytes().await.expect("body");
        assert!(body[..] == bytes[start..=end], "{header}");
    }

    // Resuming: the whole download names its content's tag; a range asked for under that tag
    // is served, one under another tag (the content changed) gets the whole file.
    let whole = app.download(&user, &id).await;
    let etag = whole.headers()["etag"].to_str().expect("ascii").to_owned();
    let sha256 = app.get(&format!("/api/v1/files/{id}"), &user.token).await;
    let sha256 = sha256.json::<Value>().await.expect("json")["sha256"].clone();
    assert_eq!(etag, format!("\"{}\"", sha256.as_str().expect("sha256")));
    for (if_range, status) in [
        (etag.as_str(), StatusCode::PARTIAL_CONTENT),
        ("\"0000\"", StatusCode::OK),
        ("Thu, 03 Dec 2026 10:00:00 GMT", StatusCode::OK),
    ] {
        let response = app
            .http
            .get(app.url(&format!("/api/v1/files/{id}/content")))
            .bearer_auth(&user.token)
            .header("Range", "bytes=100-")
            .header("If-Range", if_range)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), status, "If-Range: {if_range}");
        assert_eq!(response.headers()["etag"], etag.as_str());
        let body = response.bytes().await.expect("body");
        let from = if status == StatusCode::OK { 0 } else { 100 };
        assert!(body[..] == bytes[from..], "If-Range: {if_range}");
    }

    let unsatisfiable = app
        .http
        .get(app.url(&format!("/api/v1/files/{id}/content")))
        .bearer_auth(&user.token)
        .header("Range", format!("bytes={len}-"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        unsatisfiable.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    problem(unsatisfiable, StatusCode::RANGE_NOT_SATISFIABLE).await;
    app.stop().await;
}

async fn spoofed_and_disallowed_types_are_rejected_with_reasons(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend(pattern(4096, 1));
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("invoice.pdf", exe, "executable"),
        (
            "photo.png",
            pdf(b"not a picture"),
            "ends in .png but the content is application/pdf",
        ),
        (
            "page.html",
            b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec(),
            "not accepted",
        ),
    ];
    for (name, bytes, reason) in cases {
        let id = app.upload(&user, name, bytes).await;
        let file = app.wait_until_settled(&user, &id).await;
        assert_eq!(file["status"], "rejected", "{name}: {file}");
        let why = file["reject_reason"].as_str().expect("reason");
        assert!(why.contains(reason), "{name}: {why}");
        problem(app.download(&user, &id).await, StatusCode::CONFLICT).await;
    }
    // The rejection is committed before its job deletes the object: the last one may still be
    // going when its status is read.
    crate::common::eventually(
        "rejected uploads leave no objects",
        std::time::Duration::from_secs(30),
        || async {
            let left = app.objects("").await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    let rejected = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, o)| a == "file.rejected" && o == "denied")
        .count();
    assert_eq!(rejected, 3);
    app.stop().await;
}

async fn empty_and_oversized_uploads_leave_nothing_behind(topology: Topology) {
    let app = TestApp::spawn_with(
        topology,
        &[("COFFER_MAX_UPLOAD_BYTES", "200000")],
        coffer::Roles::ALL,
    )
    .await;
    let user = app.user().await;

    let empty = problem(
        app.put_file(&user, "empty.txt", Vec::new()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        empty["detail"]
            .as_str()
            .is_some_and(|d| d.contains("empty"))
    );
    let too_big = problem(
        app.put_file(&user, "big.pdf", pdf(&pattern(200_001, 2)))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(
        too_big["detail"]
            .as_str()
            .is_some_and(|d| d.contains("200000"))
    );
    problem(
        app.post_file(&user, "big.pdf", pdf(&pattern(200_001, 2)))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    // Exactly at the limit is fine.
    let mut at_limit = pdf(&[]);
    at_limit.resize(200_000, b' ');
    app.upload(&user, "edge.pdf", at_limit).await;

    let listed: Value = app
        .get("/api/v1/files", &user.token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["files"].as_array().expect("files").len(), 1);
    let uploads = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "file.uploaded")
        .count();
    assert_eq!(uploads, 1);
    let leftovers: Vec<String> = app
        .objects("")
        .await
        .into_iter()
        .filter(|p| !p.contains(listed["files"][0]["id"].as_str().unwrap_or("-")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    app.stop().await;
}

async fn bad_names_and_forms_are_4xx(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    for name in [
        "../etc/passwd",
        "a\u{202e}fdp.exe",
        &"x".repeat(300),
        "line\nbreak.txt",
    ] {
        problem(
            app.put_file(&user, name, b"hello".to_vec()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // A multipart form with no file part, or an unknown part.
    let no_file = reqwest::multipart::Form::new().text("note", "hello");
    let response = app
        .http
        .post(app.url("/api/v1/files"))
        .bearer_auth(&user.token)
        .multipart(no_file)
        .send()
        .await
        .expect("request");
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let extra = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
        )
        .text("surprise", "x");
    let response = app
        .http
        .post(app.url("/api/v1/files"))
        .bearer_auth(&user.token)
        .multipart(extra)
        .send()
        .await
        .expect("request");
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Not multipart at all.
    let response = app
        .http
        .post(app.url("/api/v1/files"))
        .bearer_auth(&user.token)
        .body("x")
        .send()
        .await
        .expect("request");
    assert!(response.status().is_client_error(), "{}", response.status());
    assert!(
        app.objects("").await.is_empty(),
        "nothing kept from refused uploads"
    );
    app.stop().await;
}

async fn owners_list_newest_first_and_see_only_their_files(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ann = app.user().await;
    let bob = app.user().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.upload(
                &ann,
                &format!("note-{i}.txt"),
                format!("note {i}").into_bytes(),
            )
            .await,
        );
    }
    let bobs = app.upload(&bob, "bob.txt", b"bob".to_vec()).await;

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(
                &format!("/api/v1/files?limit=2&cursor={cursor}"),
                &ann.token,
            )
            .await
            .json()
            .await
            .expect("json");
        seen.extend(
            page["files"]
                .as_array()
                .expect("files")
                .iter()
                .map(|f| f["id"].as_str().expect("id").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every file once");

    problem(
        app.get(&format!("/api/v1/files/{bobs}"), &ann.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(app.download(&ann, &bobs).await, StatusCode::NOT_FOUND).await;
    problem(
        app.http
            .delete(app.url(&format!("/api/v1/files/{bobs}")))
            .bearer_auth(&ann.token)
            .send()
            .await
            .expect("request"),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get("/api/v1/files/not-a-uuid", &ann.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get(
            &format!("/api/v1/files/{}", uuid::Uuid::new_v4()),
            &ann.token,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.get("/api/v1/files?cursor=zzz", &ann.token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        app.get("/api/v1/files?limit=0", &ann.token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        app.get("/api/v1/files?limit=-3", &ann.token).await,
        // Not a whole number of the schema at all: malformed.
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(app.file(&bob, &bobs).await["name"], "bob.txt");
    app.stop().await;
}

async fn not_ready_is_409(topology: Topology) {
    // API only: no worker runs, so the file stays quarantined.
    let app = TestApp::spawn_with(topology, &[], coffer::Roles::API).await;
    let user = app.user().await;
    let id = app.upload(&user, "wait.txt", b"patience".to_vec()).await;
    assert_eq!(app.file(&user, &id).await["status"], "quarantined");
    let body = problem(app.download(&user, &id).await, StatusCode::CONFLICT).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("quarantined"))
    );
    app.stop().await;
}

async fn delete_shreds_the_key_then_the_blob(topology: Topology) {
    use sea_orm::EntityTrait as _;
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let id = app
        .upload(&user, "secret.txt", b"top secret".to_vec())
        .await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    assert_eq!(app.objects("blobs").await.len(), 1);

    let response = app
        .http
        .delete(app.url(&format!("/api/v1/files/{id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    problem(
        app.get(&format!("/api/v1/files/{id}"), &user.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(app.download(&user, &id).await, StatusCode::NOT_FOUND).await;
    let listed: Value = app
        .get("/api/v1/files", &user.token)
        .await
        .json()
        .await
        .expect("json");
    assert!(listed["files"].as_array().expect("files").is_empty());

    let row = entity::file::Entity::find_by_id(uuid::Uuid::parse_str(&id).expect("uuid"))
        .one(app.core().db())
        .await
        .expect("query")
        .expect("row kept for the record");
    assert_eq!(row.status, entity::FileStatus::Deleted);
    assert!(row.dek.is_none() && row.quarantine_key.is_none() && row.blob_id.is_none());
    assert!(app.objects("").await.is_empty());
    assert!(
        app.audit_actions()
            .await
            .iter()
            .any(|(a, t, _)| a == "file.deleted" && t.as_deref() == Some(id.as_str()))
    );
    app.stop().await;
}

both_topologies!(
    raw_put_reaches_ready_and_downloads_identical,
    multipart_upload_works_the_same,
    ranges_return_exact_bytes,
    spoofed_and_disallowed_types_are_rejected_with_reasons,
    empty_and_oversized_uploads_leave_nothing_behind,
    bad_names_and_forms_are_4xx,
    owners_list_newest_first_and_see_only_their_files,
    not_ready_is_409,
    delete_shreds_the_key_then_the_blob,
);
