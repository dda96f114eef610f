//! The binary and the service surface: configuration errors, Swagger UI, health.

use std::process::Command;

use crate::common::{Client, Process, TestApp, Topology};
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
        ("COFFER_SIGNUP", "closed"),
        ("COFFER_SIGNUP", "domains:not a domain"),
        ("COFFER_SHARE_EMAILS_PER_DAY", "many"),
        ("COFFER_AUDIT_CHECKPOINT_INTERVAL", "0s"),
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
    // Share fields on a raw upload are optional: Swagger UI must let a plain upload through.
    let put = paths["/api/v1/files/{file}"]["put"]["parameters"]
        .as_array()
        .expect("parameters");
    for parameter in put {
        let required = parameter["required"].as_bool().unwrap_or(false);
        assert_eq!(required, parameter["name"] == "file", "{parameter}");
    }
    let upload =
        &paths["/api/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"];
    // An array of binaries: Swagger UI shows a picker that takes several files.
    let file = &upload["properties"]["file"];
    assert_eq!(file["type"], "array", "{file}");
    assert_eq!(file["items"]["format"], "binary", "{file}");
    assert_eq!(
        (file["minItems"].as_u64(), file["maxItems"].as_u64()),
        (Some(1), Some(100))
    );
    let raw = &paths["/api/v1/files/{file}"]["put"]["requestBody"]["content"]["application/octet-stream"]
        ["schema"];
    assert_eq!(raw["format"], "binary");
    // Closed sets are enums, so that clients (and Swagger UI) offer only what is accepted.
    let schemas = &spec["components"]["schemas"];
    let enum_of = |schema: &Value| -> Vec<String> {
        // A property with its own description wraps the reference in `allOf`.
        let named = schema["$ref"]
            .as_str()
            .or_else(|| schema["allOf"][0]["$ref"].as_str())
            .and_then(|r| r.rsplit('/').next())
            .map_or(schema, |name| &schemas[name]);
        named["enum"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for account in ["Account", "UserAccount"] {
        let role = &schemas[account]["properties"]["role"];
        assert_eq!(enum_of(role), ["user", "admin"], "{account}.role: {role}");
    }
    let file_status = ["quarantined", "validated", "ready", "rejected", "deleted"];
    let share_state = [
        "pending",
        "emailed",
        "outbox",
        "email_failed",
        "active",
        "revoked",
        "expired",
        "cancelled",
    ];
    for (schema, field, expected) in [
        ("FileMetadata", "status", &file_status[..]),
        ("FileAccepted", "status", &file_status[..]),
        ("ShareInfo", "state", &share_state[..]),
        (
            "KeyVersion",
            "state",
            &["active", "retiring", "retired"][..],
        ),
        ("Rotation", "state", &["running", "finished"][..]),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert_eq!(enum_of(property), expected, "{schema}.{field}: {property}");
    }
    let export = paths["/api/v1/admin/audit/export"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let format = export
        .iter()
        .find(|p| p["name"] == "format")
        .expect("a format parameter");
    assert_eq!(enum_of(&format["schema"]), ["jsonl", "csv"], "{format}");
    // Numbers that must be at least 1 say so, on every way of asking for a share.
    for field in ["expires_in_hours", "max_downloads"] {
        let in_json = &schemas["CreateShares"]["properties"][field];
        assert_eq!(in_json["minimum"], 1.0, "CreateShares.{field}: {in_json}");
        let in_form = &upload["properties"][field];
        assert_eq!(
            in_form["minimum"], 1.0,
            "the upload form's {field}: {in_form}"
        );
        let in_query = put
            .iter()
            .find(|p| p["name"] == field)
            .unwrap_or_else(|| panic!("a {field} parameter"));
        assert_eq!(
            in_query["schema"]["minimum"], 1.0,
            "PUT ?{field}: {in_query}"
        );
    }
    // Bodies that refuse unknown fields say so.
    for body in [
        "CreateShares",
        "Credentials",
        "SignupRequest",
        "UserChange",
        "SettingsChange",
    ] {
        assert_eq!(
            schemas[body]["additionalProperties"], false,
            "{body}: {}",
            schemas[body]
        );
    }
    assert_eq!(
        upload["additionalProperties"], false,
        "the upload form: {upload}"
    );
    // The audit verification's findings name their kind from a closed set.
    let kinds = enum_of(&schemas["AuditFinding"]["properties"]["kind"]);
    assert!(kinds.contains(&"truncated".to_owned()), "{kinds:?}");
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
    crate::common::problem(unknown, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

both_topologies!(
    swagger_ui_and_openapi_document_describe_every_call,
    health_and_readiness
);

/// `/metrics` tells how busy the service is and how many files it holds: on the public listener
/// only for the holder of `COFFER_METRICS_TOKEN`, and freely on the operators' own listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_for_operators_only() {
    let http = reqwest::Client::new();
    let get = |url: String, token: Option<&'static str>| {
        let http = http.clone();
        async move {
            let mut request = http.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.expect("get").status()
        }
    };
    for token in [Some(crate::common::METRICS_TOKEN), None] {
        let data = tempfile::tempdir().expect("tempdir");
        let mut vars = vec![
            (
                "COFFER_DATA_DIR".to_owned(),
                data.path().display().to_string(),
            ),
            ("COFFER_BIND".to_owned(), "127.0.0.1:0".to_owned()),
            ("COFFER_METRICS_BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ];
        if let Some(token) = token {
            vars.push(("COFFER_METRICS_TOKEN".to_owned(), token.to_owned()));
        }
        let service = Process::start("serve", &vars);
        let public = format!("{}/metrics", service.base.clone().expect("listens"));
        let ops = format!("{}/metrics", service.ops.clone().expect("an ops listener"));
        assert_eq!(get(ops, None).await, StatusCode::OK);
        match token {
            Some(token) => {
                assert_eq!(get(public.clone(), None).await, StatusCode::UNAUTHORIZED);
                let wrong = "test-metrics-token-0123456780";
                assert_eq!(
                    get(public.clone(), Some(wrong)).await,
                    StatusCode::UNAUTHORIZED
                );
                assert_eq!(get(public, Some(token)).await, StatusCode::OK);
            }
            None => {
                let any = Some(crate::common::METRICS_TOKEN);
                assert_eq!(get(public, any).await, StatusCode::NOT_FOUND);
            }
        }
    }
}

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
        (
            "COFFER_METRICS_TOKEN".to_owned(),
            crate::common::METRICS_TOKEN.to_owned(),
        ),
    ];
    let service = Process::start("serve", &vars);
    let base = service.base.clone().expect("listens");
    let client = Client::new(&base);
    let http = client.http.clone();
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
    client.scrape().await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let before = series(&client.scrape().await);
    let rss_before = service.rss_kib();
    for round in 1..9 {
        send(round).await;
    }
    let after = series(&client.scrape().await);
    let rss_after = service.rss_kib();
    assert_eq!(before, after, "4,000 more invented requests added series");
    assert!(
        rss_after < rss_before + 4 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

/// The deployment files leak nothing by default: only the API is published, on loopback; every
/// credential of Coffer's comes from a secret file; the image never receives `secrets/`; and
/// the image's non-loopback bind refuses to start without a public URL.
#[test]
fn the_deployment_files_publish_only_the_api_and_hold_no_credentials() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("docker-compose.yml")).expect("compose file"),
    )
    .expect("YAML");
    let services = compose["services"].as_mapping().expect("services");
    for (name, service) in services {
        let name = name.as_str().expect("name");
        let ports: Vec<&str> = service["ports"]
            .as_sequence()
            .map(|p| p.iter().filter_map(serde_yaml::Value::as_str).collect())
            .unwrap_or_default();
        if name == "api" {
            assert_eq!(ports, ["127.0.0.1:8080:8080"], "the API, on loopback only");
        } else {
            assert!(ports.is_empty(), "{name} publishes {ports:?}");
        }
        let Some(environment) = service["environment"].as_mapping() else {
            continue;
        };
        for (key, value) in environment {
            let (key, value) = (
                key.as_str().unwrap_or_default(),
                value.as_str().unwrap_or_default(),
            );
            let credential = ["PASSWORD", "SECRET"].iter().any(|word| key.contains(word));
            if credential {
                assert!(
                    key.ends_with("_FILE"),
                    "{name}: {key} should come from a secret file, not `{value}`"
                );
            }
            assert!(
                !value.contains("://") || !value.contains('@'),
                "{name}: {key} holds credentials"
            );
        }
    }
    let env = &compose["x-coffer-env"];
    for key in [
        "COFFER_DATABASE_URL_FILE",
        "AWS_SECRET_ACCESS_KEY_FILE",
        "COFFER_MASTER_KEYS_FILE",
        "COFFER_ADMIN_PASSWORD_FILE",
    ] {
        assert!(
            env[key]
                .as_str()
                .is_some_and(|v| v.starts_with("/run/secrets/")),
            "{key}"
        );
    }
    assert!(
        env["COFFER_PUBLIC_URL"].as_str().is_some(),
        "links need the public URL"
    );

    let ignored = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignored
            .lines()
            .any(|l| matches!(l.trim(), "secrets" | "secrets/" | "secrets/**")),
        "`COPY . .` must not put the keys into the build stage"
    );
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("COFFER_BIND=0.0.0.0:8080"),
        "the image binds all interfaces"
    );
    let data = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .env("COFFER_DATA_DIR", data.path())
        .env("COFFER_BIND", "0.0.0.0:0")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started on 0.0.0.0 without a public URL"
    );
    assert!(stderr.contains("COFFER_PUBLIC_URL"), "{stderr}");
}
