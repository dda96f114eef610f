//! The binary and the service surface: configuration errors, Swagger UI, health.

mod common;

use std::process::Command;

use common::{Process, TestApp, Topology};
use reqwest::StatusCode;
use serde_json::Value;

#[test]
fn a_bad_configuration_value_stops_start_up_with_one_line() {
    let data = tempfile::tempdir().expect("tempdir");
    for (var, value) in [
        ("COFFER_BIND", "not-an-address"),
        ("COFFER_MAX_UPLOAD_BYTES", "lots"),
        ("COFFER_DATABASE_URL", "mysql://nope"),
        ("COFFER_MASTER_KEYS", "1:tooshort"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .env("COFFER_DATA_DIR", data.path())
            .env("COFFER_BIND", "127.0.0.1:0")
            .env(var, value)
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{var} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stderr
            .lines()
            .rfind(|l| l.starts_with("coffer:"))
            .unwrap_or_default();
        assert!(line.contains(var), "{var}: {stderr}");
        assert!(
            !stderr.contains(value) || var != "COFFER_MASTER_KEYS",
            "key material echoed: {stderr}"
        );
    }
}

#[test]
fn a_log_written_to_a_file_is_plain_text() {
    let data = tempfile::tempdir().expect("tempdir");
    let log = data.path().join("serve.log");
    let vars = [
        (
            "COFFER_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        ("COFFER_BIND".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    // A first start generates the keyring and warns to back it up.
    let service = Process::start_logging_to("serve", &vars, &log);
    drop(service);
    let text = std::fs::read_to_string(&log).expect("the log");
    let warning = text
        .lines()
        .find(|l| l.contains("back it up"))
        .unwrap_or_else(|| panic!("the keyring warning in: {text}"));
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(
        !text.contains('\x1b'),
        "terminal colour codes in a log file: {text}"
    );
}

async fn swagger_ui_and_openapi_document_describe_every_call(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let ui = app
        .http
        .get(app.url("/docs"))
        .send()
        .await
        .expect("request");
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.expect("html").contains("swagger"));

    let spec: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let paths = spec["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/v1/auth/signup", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/files", "post"),
        ("/api/v1/files", "get"),
        ("/api/v1/files/{file}", "put"),
        ("/api/v1/files/{file}", "get"),
        ("/api/v1/files/{file}", "delete"),
        ("/api/v1/files/{id}/content", "get"),
        ("/api/v1/files/{id}/shares", "post"),
        ("/api/v1/files/{id}/shares", "get"),
        ("/api/v1/shares/{id}", "delete"),
        ("/s/{token}", "get"),
        ("/s/{token}/download", "get"),
        ("/s/{token}/download", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let servers = spec
        .get("servers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    assert_eq!(
        servers, 0,
        "no server entry: Try it out calls the host the browser used"
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let upload =
        &paths["/api/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"];
    assert_eq!(
        upload["properties"]["file"]["format"], "binary",
        "Swagger UI shows a file picker"
    );
    let raw = &paths["/api/v1/files/{file}"]["put"]["requestBody"]["content"]["application/octet-stream"]
        ["schema"];
    assert_eq!(raw["format"], "binary");
    app.stop().await;
}

async fn health_and_readiness(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), StatusCode::OK);
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");
    for part in ["database", "queue", "storage"] {
        assert_eq!(ready[part], "ok", "{part}");
    }
    let unknown = app
        .http
        .get(app.url("/nope"))
        .send()
        .await
        .expect("request");
    common::problem(unknown, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

both_topologies!(
    swagger_ui_and_openapi_document_describe_every_call,
    health_and_readiness
);

/// Every label of every metric comes from a fixed set: a client inventing methods and paths
/// adds no series to /metrics and no memory to the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_paths_add_no_metric_series() {
    let data = tempfile::tempdir().expect("tempdir");
    let vars = [
        (
            "COFFER_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        ("COFFER_BIND".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    let service = Process::start("serve", &vars);
    let base = service.base.clone().expect("listens");
    let http = reqwest::Client::new();
    let send = |round: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            for i in 0..500 {
                let n = round * 500 + i;
                let method = reqwest::Method::from_bytes(format!("M{n}X").as_bytes())
                    .expect("a token is a method");
                let path = match n % 3 {
                    0 => format!("/nope/{n}"),
                    1 => format!("/api/v1/files/{n}/x{n}"),
                    _ => format!("/s/{n}"),
                };
                http.request(method, format!("{base}{path}"))
                    .send()
                    .await
                    .expect("answered");
            }
        }
    };
    send(0).await;
    // The first scrape's own request is counted from the second scrape on.
    common::scrape(&http, &base).await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let before = series(&common::scrape(&http, &base).await);
    let rss_before = service.rss_kib();
    for round in 1..9 {
        send(round).await;
    }
    let after = series(&common::scrape(&http, &base).await);
    let rss_after = service.rss_kib();
    assert_eq!(before, after, "4,000 more invented requests added series");
    assert!(
        rss_after < rss_before + 4 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
