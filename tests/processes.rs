//! `coffer api` and `coffer worker` as separate processes sharing one database and queue.

mod common;

use std::time::{Duration, Instant};

use common::{Environment, Process, Topology, pattern, pdf};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn api_and_worker_processes_share_the_work(topology: Topology) {
    let env = Environment::new(topology, &[]).await;
    let api = Process::start("api", &env.vars);
    let worker = Process::start("worker", &env.vars);
    assert!(worker.base.is_none(), "a worker serves no HTTP");
    let base = api.base.clone().expect("the API listens");
    let http = reqwest::Client::new();

    let creds = json!({ "email": "proc@example.org", "password": "correct horse battery" });
    let signup = http
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&creds)
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), StatusCode::CREATED);
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&creds)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["token"].as_str().expect("token");

    let bytes = pdf(&pattern(300_000, 5));
    let upload = http
        .put(format!("{base}/api/v1/files/shared.pdf"))
        .bearer_auth(token)
        .body(bytes.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), StatusCode::ACCEPTED);
    let id = upload.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let file: Value = http
            .get(format!("{base}/api/v1/files/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if file["status"] == "ready" {
            break;
        }
        assert_ne!(file["status"], "rejected", "{file}");
        assert!(
            Instant::now() < deadline,
            "the worker process never finished the file: {file}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = http
        .get(format!("{base}/api/v1/files/{id}/content"))
        .bearer_auth(token)
        .send()
        .await
        .expect("download");
    assert_eq!(body.status(), StatusCode::OK);
    assert!(body.bytes().await.expect("body")[..] == bytes[..]);

    drop(worker);
    drop(api);
    env.cleanup().await;
}

both_topologies!(api_and_worker_processes_share_the_work);
