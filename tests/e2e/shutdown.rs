//! Stopping on SIGTERM: in-flight work finishes (or is handed back), nothing is left
//! half-written, and the process exits cleanly.

use std::process::ExitStatus;
use std::time::Duration;

use crate::common::{Client, Environment, Process, Topology, eventually, metric, pattern};
use reqwest::StatusCode;

fn sigterm(process: &Process) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn wait_exit(process: &mut Process) -> ExitStatus {
    let child = &mut process.child;
    eventually("the exit after SIGTERM", Duration::from_secs(60), || {
        let exited = child.try_wait().expect("wait");
        async move { exited.ok_or_else(|| "still running".to_owned()) }
    })
    .await
}

fn zip_of(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.extend(pattern(len, seed));
    bytes
}

/// SIGTERM: new connections are refused at once, a download in flight completes, and the
/// process exits cleanly.
async fn sigterm_drains_in_flight_downloads(topology: Topology) {
    let env = Environment::new(topology, &[]).await;
    let mut service = Process::start("serve", &env.vars);
    let base = service.base.clone().expect("the API listens");
    let client = Client::new(&base);
    let http = client.http.clone();
    let token = client
        .sign_in("term@example.org", "correct horse battery", true)
        .await;
    let bytes = zip_of(48 * 1024 * 1024, 12);
    let id = client.upload_ready(&token, "big.zip", bytes.clone()).await;

    let download = http
        .get(format!("{base}/api/v1/files/{id}/content"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    let mut stream = download.bytes_stream();
    let mut received = futures::StreamExt::next(&mut stream)
        .await
        .expect("first piece")
        .expect("bytes")
        .to_vec();
    sigterm(&service);
    while let Some(piece) = futures::StreamExt::next(&mut stream).await {
        received.extend_from_slice(&piece.expect("the download in flight completes"));
    }
    assert!(
        received == bytes,
        "the in-flight download is complete and identical"
    );

    let code = wait_exit(&mut service).await;
    assert!(code.success(), "clean exit: {code:?}");
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "no new connections after shutdown"
    );
    env.cleanup().await;
}

/// SIGTERM to a worker while it encrypts a large file: the worker exits cleanly, and the file
/// ends ready with exactly one blob and no quarantine object, whether the job finished during
/// the shutdown or was handed back and run by the next worker.
async fn sigterm_lets_a_worker_finish_or_hand_back_its_job(topology: Topology) {
    let env = Environment::new(
        topology,
        &[
            ("COFFER_METRICS_BIND", "127.0.0.1:0"),
            ("COFFER_SWEEP_INTERVAL_SECS", "1"),
            ("COFFER_SWEEP_STUCK_AFTER_SECS", "2"),
        ],
    )
    .await;
    let api = Process::start("api", &env.vars);
    let base = api.base.clone().expect("the API listens");
    let mut worker = Process::start("worker", &env.vars);
    let ops = worker.ops.clone().expect("the worker serves metrics");
    let client = Client::new(&base);
    let http = client.http.clone();
    let token = client
        .sign_in("stop@example.org", "correct horse battery", true)
        .await;

    let bytes = zip_of(96 * 1024 * 1024, 7);
    let id = client.put_upload(&token, "large.zip", bytes.clone()).await;

    // Stop the worker as soon as its encryption has started.
    let ops = Client::new(&ops);
    eventually("encryption starting", Duration::from_secs(60), || async {
        let text = ops.scrape().await;
        match metric(&text, "coffer_jobs_started_total", &[("job", "encrypt")]) {
            Some(started) if started >= 1.0 => Ok(()),
            other => Err(format!("{other:?} encrypt jobs started")),
        }
    })
    .await;
    sigterm(&worker);
    let code = wait_exit(&mut worker).await;
    assert!(code.success(), "clean exit: {code:?}");

    let _next = Process::start("worker", &env.vars);
    client.wait_ready(&token, &id).await;
    let core = coffer::coffer_core::Core::build(env.config(), false)
        .await
        .expect("core");
    let blobs = core
        .storage
        .list(&format!("blobs/{id}"))
        .await
        .expect("list");
    assert_eq!(blobs.len(), 1, "one blob, nothing half-written: {blobs:?}");
    let quarantine = core.storage.list("quarantine").await.expect("list");
    assert!(quarantine.is_empty(), "{quarantine:?}");
    let download = http
        .get(format!("{base}/api/v1/files/{id}/content"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert!(download.bytes().await.expect("body")[..] == bytes[..]);
    drop(api);
    env.cleanup().await;
}

both_topologies!(
    sigterm_drains_in_flight_downloads,
    sigterm_lets_a_worker_finish_or_hand_back_its_job,
);
