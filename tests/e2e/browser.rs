//! Coffer in a real browser: headless Chromium (Debian's package) driven by playwright-core. A
//! recipient opens the emailed link, types the password, clicks Download and gets the file; an
//! API user reads Swagger UI under its Content-Security-Policy.

use std::path::PathBuf;
use std::process::Command;

use crate::common::smtp::SmtpServer;
use crate::common::{TestApp, Topology, pattern, pdf};
use reqwest::StatusCode;
use serde_json::json;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Runs `node <script> <args…>` in tests/browser and returns what it printed, failing the test
/// with its output if it failed.
async fn node(script: &'static str, args: Vec<std::ffi::OsString>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(browser_dir())
            .arg(script)
            .args(args)
            .output()
            .expect("node runs")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt: chromium) and playwright-core (npm ci in tests/browser); run by .ci/run"]
async fn a_recipient_downloads_in_a_browser() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn_with(
        Topology::Embedded,
        &[("COFFER_SMTP_URL", &smtp.url)],
        coffer::Roles::ALL,
    )
    .await;
    let ann = app.user().await;
    let bytes = pdf(&pattern(200_000, 11));
    let id = app
        .upload(&ann, "Annual report 2026.pdf", bytes.clone())
        .await;
    assert_eq!(app.wait_until_settled(&ann, &id).await["status"], "ready");
    let body = json!({ "recipients": ["reader@example.org"], "password": "correct horse", "message": "For your eyes only" });
    let created = app
        .post_json(
            &format!("/api/v1/files/{id}/shares"),
            &body,
            Some(&ann.token),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let link = smtp
        .wait_for("reader@example.org", 1)
        .await
        .remove(0)
        .link();

    let artifacts = browser_dir().join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let downloaded = artifacts.join("downloaded.pdf");
    let screenshot = artifacts.join("recipient-page.png");
    let _ = std::fs::remove_file(&downloaded);
    let report = node(
        "recipient.mjs",
        vec![
            link.clone().into(),
            "correct horse".into(),
            downloaded.clone().into(),
            screenshot.clone().into(),
        ],
    )
    .await;
    assert!(
        report.contains("For your eyes only"),
        "the page shows the sender's note: {report}"
    );
    assert!(report.contains("Annual report 2026.pdf"), "{report}");

    assert!(
        std::fs::read(&downloaded).expect("downloaded file") == bytes,
        "byte-identical download"
    );
    let png = std::fs::read(&screenshot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a screenshot was saved");
    assert!(
        app.audit_actions()
            .await
            .iter()
            // Recorded before the response started; its end (share.downloaded) follows it.
            .any(|(a, _, _)| a == "share.download_started")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt: chromium) and playwright-core (npm ci in tests/browser); run by .ci/run"]
async fn swagger_ui_renders_under_its_content_security_policy() {
    let app = TestApp::spawn(Topology::Embedded).await;
    let artifacts = browser_dir().join("artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("swagger-ui.png");
    let printed = node(
        "docs.mjs",
        vec![app.url("/docs").into(), screenshot.clone().into()],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&printed).expect("a JSON report");
    assert_eq!(report["status"], 200);
    let csp = report["csp"].as_str().expect("a policy");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(
        !csp.split(';')
            .any(|d| d.trim().starts_with("script-src") && d.contains("unsafe-inline")),
        "{csp}"
    );
    assert!(report["operations"].as_u64() >= Some(20), "{report}");
    assert_eq!(report["refused"], serde_json::json!([]), "{report}");
    app.stop().await;
}
