//! `coffer api` and `coffer worker` as separate processes sharing one database and queue.

mod common;

use std::time::{Duration, Instant};

use common::{Environment, Process, Topology, pattern, pdf, sign_in, upload_ready};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn api_and_worker_processes_share_the_work(topology: Topology) {
    let env = Environment::new(topology, &[]).await;
    let api = Process::start("api", &env.vars);
    let worker = Process::start("worker", &env.vars);
    assert!(worker.base.is_none(), "a worker serves no HTTP");
    let base = api.base.clone().expect("the API listens");
    let http = reqwest::Client::new();

    let token = &sign_in(
        &http,
        &base,
        "proc@example.org",
        "correct horse battery",
        true,
    )
    .await;

    let bytes = pdf(&pattern(300_000, 5));
    let id = upload_ready(&http, &base, token, "shared.pdf", bytes.clone()).await;
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

/// A worker process killed with SIGKILL in the middle of a rotation: another one finishes it,
/// and every key ends under the new version.
async fn a_rotation_survives_a_killed_worker(topology: Topology) {
    let fast_sweep = [
        ("COFFER_SWEEP_STUCK_AFTER_SECS", "1"),
        ("COFFER_SWEEP_INTERVAL_SECS", "1"),
        // Small batches make the rotation long enough to be interrupted every time.
        ("COFFER_REWRAP_BATCH", "100"),
        ("COFFER_ADMIN_EMAIL", "rot@example.org"),
        ("COFFER_ADMIN_PASSWORD", "admin password 123"),
    ];
    let env = Environment::new(topology, &fast_sweep).await;
    let api = Process::start("api", &env.vars);
    let base = api.base.clone().expect("the API listens");
    // Seed many keys directly, through a service handle on the same database.
    let core = coffer::coffer_core::Core::build(env.config(), true)
        .await
        .expect("core");
    common::seed::ready_files(&core, 20_000, 1).await;
    let http = reqwest::Client::new();
    let token = sign_in(&http, &base, "rot@example.org", "admin password 123", false).await;
    let progress = || {
        let http = http.clone();
        let url = format!("{base}/api/v1/admin/keys/rotation");
        let token = token.clone();
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("progress")
                .json::<Value>()
                .await
                .expect("json")
        }
    };

    let started = http
        .post(format!("{base}/api/v1/admin/keys/rotate"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("rotate");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let mut worker = Process::start("worker", &env.vars);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = progress().await;
        if now["done"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker made no progress: {now}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.child.kill().expect("SIGKILL the worker");
    worker.child.wait().expect("reaped");
    let interrupted = progress().await;
    assert_eq!(
        interrupted["state"], "running",
        "killed before the end: {interrupted}"
    );
    assert!(interrupted["done"].as_i64() < interrupted["total"].as_i64());

    let _second = Process::start("worker", &env.vars);
    let finished = loop {
        let now = progress().await;
        if now["state"] == "finished" {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the rotation never finished: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(finished["total"], 20_000);
    let versions: Value = http
        .get(format!("{base}/api/v1/admin/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    let v = |n: i64| {
        versions["versions"]
            .as_array()
            .expect("list")
            .iter()
            .find(|x| x["version"] == n)
            .cloned()
            .expect("version")
    };
    assert_eq!(
        (v(1)["state"].clone(), v(1)["wrapped_keys"].clone()),
        (json!("retired"), json!(0))
    );
    assert_eq!(v(2)["wrapped_keys"], 20_000);
    drop(api);
    env.cleanup().await;
}

/// Many writers, two worker processes sealing at once: the chain comes out valid and gapless.
async fn two_sealing_workers_keep_one_gapless_chain(topology: Topology) {
    let env = Environment::new(topology, &[]).await;
    let api = Process::start("api", &env.vars);
    let _w1 = Process::start("worker", &env.vars);
    let _w2 = Process::start("worker", &env.vars);
    let base = api.base.clone().expect("the API listens");
    let http = reqwest::Client::new();

    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(
            sign_in(
                &http,
                &base,
                &format!("w{i}@example.org"),
                "correct horse battery",
                true,
            )
            .await,
        );
    }
    let uploads = (0..40).map(|i| {
        let (http, base, token) = (http.clone(), base.clone(), tokens[i % tokens.len()].clone());
        async move {
            let response = http
                .put(format!("{base}/api/v1/files/n{i}.txt"))
                .bearer_auth(token)
                .body(format!("note {i}"))
                .send()
                .await
                .expect("upload");
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
    });
    futures::future::join_all(uploads).await;

    let core = coffer::coffer_core::Core::build(env.config(), false)
        .await
        .expect("core");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
        let busy = entity::file::Entity::find()
            .filter(entity::file::Column::Status.is_in(["quarantined", "validated"]))
            .count(&core.db)
            .await
            .expect("count");
        let pending = entity::audit_event::Entity::find()
            .filter(entity::audit_event::Column::Seq.is_null())
            .count(&core.db)
            .await
            .expect("count");
        if busy == 0 && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{busy} files busy, {pending} events unsealed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = {
        use sea_orm::{EntityTrait as _, PaginatorTrait as _};
        entity::audit_event::Entity::find()
            .count(&core.db)
            .await
            .expect("count")
    };
    let report = coffer::coffer_core::services::audit::verify(&core.db)
        .await
        .expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.checked, total,
        "every event sealed exactly once, no gaps"
    );
    assert_eq!(report.head_seq, Some(total as i64));
    drop(api);
    env.cleanup().await;
}

both_topologies!(
    api_and_worker_processes_share_the_work,
    a_rotation_survives_a_killed_worker,
    two_sealing_workers_keep_one_gapless_chain,
);
