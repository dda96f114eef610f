//! `coffer api` and `coffer worker` as separate processes sharing one database and queue.

use std::time::Duration;

use crate::common::{Client, Environment, Process, Topology, eventually, pattern, pdf};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn api_and_worker_processes_share_the_work(topology: Topology) {
    let env = Environment::new(topology, &[]).await;
    let api = Process::start("api", &env.vars);
    let worker = Process::start("worker", &env.vars);
    assert!(worker.base.is_none(), "a worker serves no HTTP");
    let base = api.base.clone().expect("the API listens");
    let client = Client::new(&base);

    let token = &client
        .sign_in("proc@example.org", "correct horse battery", true)
        .await;

    let bytes = pdf(&pattern(300_000, 5));
    let id = client
        .upload_ready(token, "shared.pdf", bytes.clone())
        .await;
    client.reads_back(token, &id, &bytes).await;

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
    crate::common::seed::ready_files(&core, 20_000, 1).await;
    let client = Client::new(&base);
    let http = client.http.clone();
    let token = client
        .sign_in("rot@example.org", "admin password 123", false)
        .await;
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

    env.add_master_key();
    let started = http
        .post(format!("{base}/api/v1/admin/keys/rotate"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("rotate");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let mut worker = Process::start("worker", &env.vars);
    eventually(
        "the worker's first batch",
        Duration::from_secs(120),
        || async {
            let now = progress().await;
            if now["done"].as_i64().unwrap_or(0) > 0 {
                Ok(())
            } else {
                Err(format!("the worker made no progress: {now}"))
            }
        },
    )
    .await;
    worker.child.kill().expect("SIGKILL the worker");
    worker.child.wait().expect("reaped");
    let interrupted = progress().await;
    assert_eq!(
        interrupted["state"], "running",
        "killed before the end: {interrupted}"
    );
    assert!(interrupted["done"].as_i64() < interrupted["total"].as_i64());

    let _second = Process::start("worker", &env.vars);
    let finished = eventually(
        "the rotation finishing",
        Duration::from_secs(120),
        || async {
            let now = progress().await;
            if now["state"] == "finished" {
                Ok(now)
            } else {
                Err(format!("the rotation never finished: {now}"))
            }
        },
    )
    .await;
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
    let client = Client::new(&base);
    let http = client.http.clone();

    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(
            client
                .sign_in(&format!("w{i}@example.org"), "correct horse battery", true)
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
    eventually(
        "every file and event settled",
        Duration::from_secs(60),
        || async {
            use sea_orm::{
                ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
            };
            let busy = entity::file::Entity::find()
                .filter(entity::file::Column::Status.is_in(["quarantined", "validated"]))
                .count(core.db())
                .await
                .expect("count");
            let pending = entity::audit_event::Entity::find()
                .filter(entity::audit_event::Column::Seq.is_null())
                .count(core.db())
                .await
                .expect("count");
            if busy == 0 && pending == 0 {
                Ok(())
            } else {
                Err(format!("{busy} files busy, {pending} events unsealed"))
            }
        },
    )
    .await;
    let total = {
        use sea_orm::{EntityTrait as _, PaginatorTrait as _};
        entity::audit_event::Entity::find()
            .count(core.db())
            .await
            .expect("count")
    };
    let report = coffer::coffer_core::services::audit::verify(
        &core,
        coffer::coffer_core::principal::Operator::Console,
    )
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

fn key_line(version: i32) -> String {
    format!(
        "{version}:{}",
        coffer::coffer_core::crypto::SecretKey::generate().to_base64()
    )
}

/// A keyring of the given master-key lines and the tests' audit key, for COFFER_MASTER_KEYS.
fn keyring(master: &[&str]) -> String {
    let mut lines: Vec<&str> = master.to_vec();
    lines.push(&crate::common::AUDIT_KEY_LINE);
    lines.join(",")
}

fn with(vars: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = vars.to_vec();
    for (k, v) in extra {
        vars.retain(|(existing, _)| existing != k);
        vars.push(((*k).to_owned(), (*v).to_owned()));
    }
    vars
}

/// Processes given different keys under one version number: the database's check value
/// refuses every process but the first, with one line that says what to do; the API and the
/// workers never make up a keyring of their own.
async fn processes_with_different_keyrings_refuse_to_start(topology: Topology) {
    let env = Environment::new(topology, &[]).await;
    let first = keyring(&[&key_line(1)]);
    let api = Process::start("api", &with(&env.vars, &[("COFFER_MASTER_KEYS", &first)]));
    let worker = Process::start(
        "worker",
        &with(&env.vars, &[("COFFER_MASTER_KEYS", &first)]),
    );
    let base = api.base.clone().expect("the API listens");
    let client = Client::new(&base);
    let http = client.http.clone();
    let token = client
        .sign_in("keys@example.org", "correct horse battery", true)
        .await;
    let id = client.upload_ready(&token, "kept.pdf", pdf(b"kept")).await;

    let other = keyring(&[&key_line(1)]);
    for role in ["api", "worker"] {
        let stderr = Process::refused(role, &with(&env.vars, &[("COFFER_MASTER_KEYS", &other)]));
        assert!(
            stderr.contains("master key version 1 in this process's keyring is not the key this database was set up with"),
            "{role}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            !stderr.contains(other.split(':').nth(1).expect("key")),
            "{stderr}"
        );
    }
    // Without keys, the production roles refuse instead of generating a keyring.
    let empty_dir = tempfile::tempdir().expect("dir");
    let mut keyless = with(
        &env.vars,
        &[("COFFER_DATA_DIR", &empty_dir.path().display().to_string())],
    );
    keyless.retain(|(k, _)| !k.starts_with("COFFER_MASTER_KEYS"));
    for role in ["api", "worker"] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
        let output = command
            .arg(role)
            .env("COFFER_LOG", "warn")
            .envs(keyless.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{role}: {stderr}");
        assert!(
            stderr.contains("COFFER_MASTER_KEYS or COFFER_MASTER_KEYS_FILE is required"),
            "{role}: {stderr}"
        );
        assert!(
            !empty_dir.path().join("keyring").exists(),
            "{role} made a keyring"
        );
    }
    // The file uploaded with the right keys still reads back.
    let body = http
        .get(format!("{base}/api/v1/files/{id}/content"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    assert_eq!(body.status(), StatusCode::OK);
    drop(worker);
    drop(api);
    env.cleanup().await;
}

/// Two processes with different keys starting at the same moment on a fresh database: one of
/// them runs, the other refuses.
async fn a_first_start_race_with_different_keys_leaves_one_keyring(topology: Topology) {
    let env = Environment::new(topology, &[]).await;
    let (a, b) = (keyring(&[&key_line(1)]), keyring(&[&key_line(1)]));
    let (va, vb) = (
        with(&env.vars, &[("COFFER_MASTER_KEYS", &a)]),
        with(&env.vars, &[("COFFER_MASTER_KEYS", &b)]),
    );
    // Migrated first, as docker-compose does: the race is over the keyring, not the schema.
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("migrate")
        .envs(va.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("migrate");
    assert!(migrated.status.success(), "{migrated:?}");
    let logs = tempfile::tempdir().expect("dir");
    let (log_a, log_b) = (logs.path().join("a.log"), logs.path().join("b.log"));
    let (first, second) = tokio::join!(
        tokio::task::spawn_blocking(move || Process::start_logging_to("api", &va, &log_a)),
        tokio::task::spawn_blocking(move || Process::start_logging_to("api", &vb, &log_b)),
    );
    let mut processes = [first.expect("joined"), second.expect("joined")];
    let running = processes.iter().filter(|p| p.base.is_some()).count();
    assert_eq!(running, 1, "exactly one of the two started");
    let (i, refused) = processes
        .iter_mut()
        .enumerate()
        .find(|(_, p)| p.base.is_none())
        .expect("the other");
    assert!(!refused.child.wait().expect("exited").success());
    let log = std::fs::read_to_string(logs.path().join(["a.log", "b.log"][i])).expect("log");
    assert!(log.contains("check value differs"), "{log}");
    drop(processes);
    env.cleanup().await;
}

/// Polls `/readyz` of `ops` (within a minute) until its answer satisfies `wanted`, and
/// returns it.
async fn readiness_once(ops: &Client, wanted: impl Fn(&Value) -> bool) -> Value {
    eventually("the readiness wanted", Duration::from_secs(60), || async {
        let ready = ops.get_json("/readyz", None).await;
        if wanted(&ready) {
            Ok(ready)
        } else {
            Err(format!("readiness stayed {ready}"))
        }
    })
    .await
}

/// A worker whose keyring lacks the version the API now wraps under: the upload waits in
/// quarantine (never `rejected` as an integrity failure), the worker's /readyz and metrics
/// show the fault, and once the operator adds the key the file becomes ready.
async fn a_missing_key_version_is_the_operator_s_fault_not_the_file_s(topology: Topology) {
    let env = Environment::new(
        topology,
        &[
            ("COFFER_ADMIN_EMAIL", "keys-admin@example.org"),
            ("COFFER_ADMIN_PASSWORD", "admin password 123"),
            ("COFFER_SWEEP_STUCK_AFTER_SECS", "1"),
            ("COFFER_SWEEP_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let v1 = key_line(1);
    let v2 = key_line(2);
    let worker_keys = env.data.path().join("worker-keyring");
    let audit = &*crate::common::AUDIT_KEY_LINE;
    std::fs::write(&worker_keys, format!("{v1}\n{audit}\n")).expect("keyring");
    let api_keys = env.data.path().join("api-keyring");
    std::fs::write(&api_keys, format!("{v1}\n{audit}\n")).expect("keyring");
    let api_file = api_keys.display().to_string();
    let worker_file = worker_keys.display().to_string();
    let api = Process::start(
        "api",
        &with(&env.vars, &[("COFFER_MASTER_KEYS_FILE", &api_file)]),
    );
    let worker = Process::start(
        "worker",
        &with(
            &env.vars,
            &[
                ("COFFER_MASTER_KEYS_FILE", &worker_file),
                ("COFFER_METRICS_BIND", "127.0.0.1:0"),
            ],
        ),
    );
    let base = api.base.clone().expect("the API listens");
    let ops = worker.ops.clone().expect("the worker's ops listener");
    let client = Client::new(&base);
    let http = client.http.clone();
    let admin = client
        .sign_in("keys-admin@example.org", "admin password 123", false)
        .await;

    // The operator adds version 2 to the API's keyring only, and rotates.
    std::fs::write(&api_keys, format!("{v1}\n{v2}\n{audit}\n")).expect("keyring");
    let rotated = http
        .post(format!("{base}/api/v1/admin/keys/rotate"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), StatusCode::ACCEPTED);
    let token = client
        .sign_in("owner@example.org", "correct horse battery", true)
        .await;
    let id = client.put_upload(&token, "waits.pdf", pdf(b"waits")).await;

    let ready = readiness_once(&Client::new(&ops), |r| r["keyring"] == "fault").await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    let metrics = Client::new(&ops).scrape().await;
    assert!(
        crate::common::metric(&metrics, "coffer_key_faults_total", &[]).unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    let file = client
        .get_json(&format!("/api/v1/files/{id}"), Some(&token))
        .await;
    assert_eq!(file["status"], "quarantined", "{file}");

    // The operator mends the worker's keyring: the file goes on to ready, the fault clears.
    std::fs::write(&worker_keys, format!("{v1}\n{v2}\n{audit}\n")).expect("keyring");
    client
        .wait_ready_within(&token, &id, Duration::from_secs(60))
        .await;
    readiness_once(&Client::new(&ops), |r| r["keyring"] == "ok").await;
    drop(worker);
    drop(api);
    env.cleanup().await;
}

/// Twenty rotations asked for at once through two processes sharing a Coffer-managed keyring:
/// one starts, the others are refused, the keyring gains exactly one version, and every file
/// still downloads after a restart.
async fn concurrent_rotations_start_one(topology: Topology) {
    let env = Environment::new(
        topology,
        &[
            ("COFFER_ADMIN_EMAIL", "keys-admin@example.org"),
            ("COFFER_ADMIN_PASSWORD", "admin password 123"),
            // Small batches over many keys: the rotation is still running when the last of
            // the twenty asks arrives, so each refusal is the one-at-a-time rule. (With 100 per
            // batch, once each batch's successor was read ahead, the rotation finished before
            // the twentieth ask in one CI run out of three, and a second one started.)
            ("COFFER_REWRAP_BATCH", "10"),
        ],
    )
    .await;
    let core = coffer::coffer_core::Core::build(env.config(), true)
        .await
        .expect("core");
    crate::common::seed::ready_files(&core, 20_000, 1).await;
    drop(core);
    let a = Process::start("serve", &env.vars);
    let b = Process::start("serve", &env.vars);
    let bases = [a.base.clone().expect("a"), b.base.clone().expect("b")];
    let clients = bases.clone().map(Client::new);
    let http = clients[0].http.clone();
    let token = clients[0]
        .sign_in("owner@example.org", "correct horse battery", true)
        .await;
    let mut files = Vec::new();
    for i in 0..5u8 {
        let bytes = pdf(&pattern(20_000, i));
        files.push((
            clients[0]
                .upload_ready(&token, "kept.pdf", bytes.clone())
                .await,
            bytes,
        ));
    }
    let admin = clients[0]
        .sign_in("keys-admin@example.org", "admin password 123", false)
        .await;
    let asks = (0..20).map(|i| {
        let (http, base, admin) = (http.clone(), bases[i % 2].clone(), admin.clone());
        async move {
            http.post(format!("{base}/api/v1/admin/keys/rotate"))
                .bearer_auth(admin)
                .send()
                .await
                .expect("rotate")
                .status()
        }
    });
    let statuses = futures::future::join_all(asks).await;
    let started = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((started, refused), (1, 19), "{statuses:?}");
    let keyring = std::fs::read_to_string(env.data.path().join("keyring")).expect("keyring");
    let versions: Vec<&str> = keyring
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("audit:"))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(versions, ["1", "2"], "one new version, written once");

    eventually(
        "the rotation finishing",
        Duration::from_secs(180),
        || async {
            let rotation = clients[1]
                .get_json("/api/v1/admin/keys/rotation", Some(&admin))
                .await;
            if rotation["state"] == "finished" {
                Ok(())
            } else {
                Err(rotation.to_string())
            }
        },
    )
    .await;
    assert_eq!(statuses.len(), 20);
    drop(a);
    drop(b);
    let again = Process::start("serve", &env.vars);
    let base = again.base.clone().expect("listens");
    for (id, bytes) in &files {
        let body = http
            .get(format!("{base}/api/v1/files/{id}/content"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("download");
        assert_eq!(body.status(), StatusCode::OK);
        assert!(body.bytes().await.expect("body")[..] == bytes[..]);
    }
    drop(again);
    env.cleanup().await;
}

/// The audit log across processes: the worker process seals and writes signed checkpoints, a
/// cut made in the database afterwards is found both by the API process and by `coffer audit
/// verify` run as a process of its own, and a process given another audit key refuses to
/// start.
async fn a_cut_audit_log_is_found_from_every_process(topology: Topology) {
    let env = Environment::new(
        topology,
        &[
            ("COFFER_AUDIT_CHECKPOINT_INTERVAL", "1s"),
            ("COFFER_ADMIN_EMAIL", "audit-admin@example.org"),
            ("COFFER_ADMIN_PASSWORD", "admin password 123"),
        ],
    )
    .await;
    let api = Process::start("api", &env.vars);
    let worker = Process::start("worker", &env.vars);
    let base = api.base.clone().expect("the API listens");
    let client = Client::new(&base);
    let token = client
        .sign_in("cut@example.org", "correct horse battery", true)
        .await;
    client
        .upload_ready(&token, "logged.pdf", pdf(b"logged"))
        .await;
    let admin = client
        .sign_in("audit-admin@example.org", "admin password 123", false)
        .await;
    let verify = "/api/v1/admin/audit/verify";
    let checkpoint = eventually("a checkpoint", Duration::from_secs(60), || async {
        let report = client.get_json(verify, Some(&admin)).await;
        if let Some(seq) = report["checkpoint"]["seq"].as_i64()
            && report["head_seq"].as_i64() > Some(seq)
            && seq > 5
        {
            assert_eq!(report["ok"], true, "{report}");
            Ok(seq)
        } else {
            Err(format!("no checkpoint: {report}"))
        }
    })
    .await;
    // Nothing seals or signs from here on.
    drop(worker);

    let db = sea_orm::Database::connect(env.config().database_url.as_str())
        .await
        .expect("database");
    {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        entity::audit_event::Entity::delete_many()
            .filter(entity::audit_event::Column::Seq.gt(checkpoint - 2))
            .exec(&db)
            .await
            .expect("cut the tail");
    }
    let report = client.get_json(verify, Some(&admin)).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(
        report["findings"],
        json!([{
            "kind": "truncated",
            "seq": checkpoint - 2,
            "checkpoint_seq": checkpoint,
            "detail": report["findings"][0]["detail"],
        }]),
        "{report}"
    );

    let vars = env.vars_for(coffer::Roles::API);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["audit", "verify"])
        .env("COFFER_LOG", "warn")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("coffer audit verify runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "finding: truncated: the log was cut: it ends at event {}",
            checkpoint - 2
        )),
        "{stdout}"
    );

    // A keyring whose audit key is not the database's: refused, in one line.
    let ring = std::fs::read_to_string(env.data.path().join("keyring")).expect("keyring");
    let other_audit = format!(
        "audit:1:{}",
        coffer::coffer_core::crypto::SecretKey::generate().to_base64()
    );
    let other = ring.replace(crate::common::AUDIT_KEY_LINE.as_str(), &other_audit);
    assert_ne!(other, ring);
    let other_file = env.data.path().join("other-keyring");
    std::fs::write(&other_file, other).expect("keyring");
    let other_path = other_file.display().to_string();
    for role in ["api", "worker"] {
        let stderr = Process::refused(
            role,
            &with(&env.vars, &[("COFFER_MASTER_KEYS_FILE", &other_path)]),
        );
        assert!(
            stderr.contains("audit key version 1 in this process's keyring is not the one this database was set up with"),
            "{role}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    drop(api);
    db.close().await.ok();
    env.cleanup().await;
}

both_topologies!(
    a_cut_audit_log_is_found_from_every_process,
    concurrent_rotations_start_one,
    processes_with_different_keyrings_refuse_to_start,
    a_first_start_race_with_different_keys_leaves_one_keyring,
    a_missing_key_version_is_the_operator_s_fault_not_the_file_s,
    api_and_worker_processes_share_the_work,
    a_rotation_survives_a_killed_worker,
    two_sealing_workers_keep_one_gapless_chain,
);
