//! The quarantine pipeline's promises: no plaintext at rest, idempotent jobs, the sweep, and
//! start-up checks of the keyring.

use std::time::{Duration, Instant};

use crate::common::{Environment, TestApp, Topology, eventually, files_containing, pattern, pdf};
use coffer::Roles;
use coffer::coffer_core::jobs::{encrypt::encrypt, validate::validate};
use reqwest::StatusCode;

/// A marker that occurs nowhere else: if these bytes are on disk, plaintext leaked.
fn marker() -> Vec<u8> {
    format!("COFFER-PLAINTEXT-MARKER-{}", uuid::Uuid::new_v4().simple()).into_bytes()
}

async fn no_plaintext_reaches_disk(topology: Topology) {
    let mut app = TestApp::spawn_with(topology, &[], Roles::API).await;
    let user = app.user().await;
    let marker = marker();
    let mut content = Vec::new();
    for i in 0..3000 {
        content.extend_from_slice(format!("line {i}: ").as_bytes());
        content.extend_from_slice(&marker);
        content.push(b'\n');
    }
    let id = app.upload(&user, "notes.txt", content.clone()).await;

    // Held in quarantine (no worker yet): sealed on disk, nowhere in plaintext.
    assert_eq!(app.file(&user, &id).await["status"], "quarantined");
    let data_dir = app.env.data.path().to_owned();
    assert_eq!(files_containing(&data_dir, &marker), Vec::<String>::new());
    assert!(!app.objects("quarantine").await.is_empty());

    app.start_workers().await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    let body = app.download(&user, &id).await.bytes().await.expect("body");
    assert!(body[..] == content[..]);
    assert_eq!(files_containing(&data_dir, &marker), Vec::<String>::new());
    app.stop().await;
}

async fn repeated_and_concurrent_jobs_change_nothing(topology: Topology) {
    let app = TestApp::spawn_with(topology, &[], Roles::API).await;
    let user = app.user().await;
    let content = pattern(200_000, 9);
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend_from_slice(&content);
    let id = app.upload(&user, "twice.pdf", bytes.clone()).await;
    let file_id = uuid::Uuid::parse_str(&id).expect("uuid");
    let core = app.core().clone();

    // Deliver each job more than once, the encrypt job twice at the same moment.
    validate(&core, file_id).await.expect("validate");
    validate(&core, file_id).await.expect("validate again");
    assert_eq!(app.file(&user, &id).await["status"], "validated");
    let (a, b) = tokio::join!(encrypt(&core, file_id), encrypt(&core, file_id));
    a.expect("encrypt");
    b.expect("encrypt");
    encrypt(&core, file_id).await.expect("encrypt again");
    validate(&core, file_id)
        .await
        .expect("validate after ready");

    assert_eq!(app.file(&user, &id).await["status"], "ready");
    assert_eq!(
        app.objects("blobs").await.len(),
        1,
        "exactly one blob survives"
    );
    assert!(app.objects("quarantine").await.is_empty());
    let body = app.download(&user, &id).await.bytes().await.expect("body");
    assert!(body[..] == bytes[..]);
    let actions = app.audit_actions().await;
    let count = |name: &str| actions.iter().filter(|(a, _, _)| a == name).count();
    assert_eq!((count("file.validated"), count("file.encrypted")), (1, 1));
    app.stop().await;
}

/// Removes every queued job, as a wiped Redis or a lost enqueue would.
async fn lose_queued_jobs(env: &Environment) {
    match env.topology {
        Topology::Embedded => {
            let path = env.data.path().join("queue.db");
            let pool = sea_orm::sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("queue db");
            sea_orm::sqlx::query("DELETE FROM Jobs")
                .execute(&pool)
                .await
                .expect("delete jobs");
            pool.close().await;
        }
        Topology::Production => {
            let ns = env
                .vars
                .iter()
                .find(|(k, _)| k == "COFFER_REDIS_NAMESPACE")
                .map(|(_, v)| v.clone())
                .expect("namespace");
            let client = redis::Client::open(crate::common::redis_url()).expect("redis url");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{ns}:*"))
                .query_async(&mut conn)
                .await
                .expect("keys");
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut conn)
                    .await
                    .expect("del");
            }
        }
    }
}

async fn the_sweep_recovers_lost_jobs(topology: Topology) {
    let settings = [
        ("COFFER_SWEEP_STUCK_AFTER_SECS", "1"),
        ("COFFER_SWEEP_INTERVAL_SECS", "1"),
    ];
    let mut app = TestApp::spawn_with(topology, &settings, Roles::API).await;
    let user = app.user().await;
    let id = app
        .upload(&user, "lost.txt", b"the queue forgot me".to_vec())
        .await;
    lose_queued_jobs(&app.env).await;

    app.start_workers().await;
    let file = app.wait_until_settled(&user, &id).await;
    assert_eq!(file["status"], "ready", "{file}");
    app.stop().await;
}

/// Uploads a file to a service whose scanner never answers (a port nothing listens on), with
/// `limit` set and the sweep taking stuck files up every second; asserts that the file ended
/// rejected for the owner's reading, its quarantine copy destroyed, and audited once. Returns
/// how many runs failed and were retried.
async fn give_up_on_a_file(topology: Topology, limit: (&str, &str)) -> f64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let scanner = format!("127.0.0.1:{port}");
    let settings = [
        ("COFFER_CLAMAV_ADDR", scanner.as_str()),
        limit,
        ("COFFER_SWEEP_STUCK_AFTER_SECS", "1"),
        ("COFFER_SWEEP_INTERVAL_SECS", "1"),
    ];
    let app = TestApp::spawn_with(topology, &settings, Roles::ALL).await;
    let user = app.user().await;
    let id = app
        .upload(&user, "unscannable.txt", b"never checked".to_vec())
        .await;
    let file = app.wait_until_settled(&user, &id).await;
    assert_eq!(file["status"], "rejected", "{file}");
    assert_eq!(
        file["reject_reason"], "could not be scanned, try again later",
        "{file}"
    );
    app.quarantine_emptied(&id).await;
    let rejected = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(action, target, _)| {
            action == "file.rejected" && target.as_deref() == Some(id.as_str())
        })
        .count();
    assert_eq!(rejected, 1);
    let text = app.scrape().await;
    let retried = [("job", "validate"), ("outcome", "retried")];
    let runs = crate::common::metric(&text, "coffer_jobs_finished_total", &retried).unwrap_or(0.0);
    app.stop().await;
    runs
}

/// A file whose check always fails is given up after `COFFER_JOB_MAX_ATTEMPTS` runs, however
/// often the sweep takes it up again.
async fn files_that_cannot_be_scanned_run_out_of_attempts(topology: Topology) {
    let retried = give_up_on_a_file(topology, ("COFFER_JOB_MAX_ATTEMPTS", "3")).await;
    assert_eq!(
        retried, 2.0,
        "two runs failed and were retried; the third gave up"
    );
}

/// A file not ready `COFFER_PROCESSING_DEADLINE` after its upload is given up with attempts to
/// spare.
async fn files_past_their_deadline_are_given_up(topology: Topology) {
    let retried = give_up_on_a_file(topology, ("COFFER_PROCESSING_DEADLINE", "2s")).await;
    assert!(
        retried < 29.0,
        "the deadline, not the 30 attempts, ended it: {retried}"
    );
}

/// Finished tasks are deleted from the queue once old enough; pending ones never are.
async fn the_queue_forgets_finished_tasks(topology: Topology) {
    let mut app = TestApp::spawn_with(topology, &[], Roles::API).await;
    let user = app.user().await;
    let waiting = app.upload(&user, "waiting.txt", b"not yet".to_vec()).await;
    let queue = app.core().queue.clone();
    assert_eq!(
        queue.vacuum(Duration::ZERO).await.expect("vacuum"),
        0,
        "a pending task is kept"
    );
    app.start_workers().await;
    assert_eq!(
        app.wait_until_settled(&user, &waiting).await["status"],
        "ready"
    );

    let kept = queue
        .vacuum(Duration::from_secs(3600))
        .await
        .expect("vacuum");
    assert_eq!(kept, 0, "tasks that finished just now are kept for an hour");
    // Validation and encryption finished: both go, once the worker has acknowledged them (a
    // moment after the file is ready).
    let removed = std::cell::Cell::new(0);
    eventually(
        "the finished tasks removed",
        Duration::from_secs(30),
        || async {
            removed.set(removed.get() + queue.vacuum(Duration::ZERO).await.expect("vacuum"));
            if removed.get() >= 2 {
                Ok(())
            } else {
                Err(format!("{} finished tasks removed", removed.get()))
            }
        },
    )
    .await;
    assert_eq!(queue.vacuum(Duration::ZERO).await.expect("vacuum"), 0);
    let depths = queue.depths().await.expect("depths");
    assert!(depths.iter().all(|(_, n)| *n == 0), "{depths:?}");

    // The queue works on after a vacuum.
    let next = app.upload(&user, "next.txt", b"after".to_vec()).await;
    assert_eq!(
        app.wait_until_settled(&user, &next).await["status"],
        "ready"
    );
    app.stop().await;
}

async fn a_missing_master_key_version_stops_start_up(topology: Topology) {
    use coffer::coffer_core::crypto::SecretKey;
    let v1 = SecretKey::generate().to_base64();
    let v2 = SecretKey::generate().to_base64();
    let audit = &*crate::common::AUDIT_KEY_LINE;
    let both = format!("1:{v1},2:{v2},{audit}");
    let only_v1 = format!("1:{v1},{audit}");
    let app = TestApp::spawn_with(topology, &[("COFFER_MASTER_KEYS", &only_v1)], Roles::ALL).await;
    let user = app.user().await;
    let id = app
        .upload(&user, "kept.txt", b"wrapped under v1".to_vec())
        .await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    for running in &app.running {
        running.stopper().cancel();
    }

    // The same database with a keyring that lacks version 1: refused, naming the version.
    let mut vars = app.env.vars.clone();
    vars.retain(|(k, _)| k != "COFFER_MASTER_KEYS");
    vars.push(("COFFER_MASTER_KEYS".into(), format!("2:{v2},{audit}")));
    let config = coffer::coffer_core::Config::from_vars(vars.clone()).expect("config");
    let err = coffer::start(config, Roles::API)
        .await
        .err()
        .expect("start-up refused");
    assert!(err.to_string().contains("version(s) 1 are needed"), "{err}");

    // With both versions it starts, and the file still reads back.
    vars.retain(|(k, _)| k != "COFFER_MASTER_KEYS");
    vars.push(("COFFER_MASTER_KEYS".into(), both));
    let config = coffer::coffer_core::Config::from_vars(vars).expect("config");
    let again = coffer::start(config, Roles::API).await.expect("starts");
    let base = format!("http://{}", again.addr.expect("addr"));
    let body = app
        .http
        .get(format!("{base}/api/v1/files/{id}/content"))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("request");
    assert_eq!(body.status(), StatusCode::OK);
    assert_eq!(
        body.bytes().await.expect("body").as_ref(),
        b"wrapped under v1"
    );
    again.stop().await.expect("stop");
    app.stop().await;
}

async fn small_files_settle_quickly(topology: Topology) {
    // Not a benchmark: a guard against falling back to apalis's 30 s idle polling.
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    for i in 0..5 {
        let started = Instant::now();
        let id = app
            .upload(&user, &format!("quick-{i}.txt"), b"quick".to_vec())
            .await;
        assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
    app.stop().await;
}

async fn tampered_blobs_are_never_served(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;

    // A small file is checked whole before the response starts: a clean 500 problem.
    let small = app
        .upload(&user, "small.txt", b"short and sealed".to_vec())
        .await;
    assert_eq!(
        app.wait_until_settled(&user, &small).await["status"],
        "ready"
    );
    app.tamper_blob(&small, 5).await;
    let body = crate::common::problem(
        app.download(&user, &small).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert_eq!(body["type"], "urn:coffer:problem:integrity-failed");

    // A large file tampered near its end: the download breaks off instead of completing.
    let content = pattern(2 * 1024 * 1024, 4);
    let large = app.upload(&user, "large.txt", content.clone()).await;
    let large_file = app.wait_until_settled(&user, &large).await;
    assert_eq!(
        large_file["status"], "rejected",
        "random bytes are not text: {large_file}"
    );
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend_from_slice(&content);
    let large = app.upload(&user, "large.zip", zip.clone()).await;
    assert_eq!(
        app.wait_until_settled(&user, &large).await["status"],
        "ready"
    );
    app.tamper_blob(&large, 100).await;
    let response = app.download(&user, &large).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the start of the file was authentic"
    );
    // Either the connection is aborted (an error here) or the body ends short.
    if let Ok(body) = response.bytes().await {
        assert!(
            body[..] != zip[..] && body.len() < zip.len(),
            "tampered download completed"
        );
    }

    let failures: Vec<_> = app
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, o)| a == "file.integrity_failed" && o == "failure")
        .map(|(_, target, _)| target.expect("target"))
        .collect();
    assert!(
        failures.contains(&small) && failures.contains(&large),
        "{failures:?}"
    );
    app.stop().await;
}

/// The row's wrapped keys of a file: (data key, its version), (quarantine key, its version).
async fn wrapped_keys(app: &TestApp, id: &str) -> [(Option<Vec<u8>>, Option<i32>); 2] {
    use sea_orm::EntityTrait as _;
    let row = entity::file::Entity::find_by_id(uuid::Uuid::parse_str(id).expect("uuid"))
        .one(app.core().db())
        .await
        .expect("query")
        .expect("the file's row");
    [
        (row.dek, row.dek_kek_version),
        (row.quarantine_key, row.quarantine_kek_version),
    ]
}

/// What the file's `file.encrypted` event says about its data key.
async fn resealed(app: &TestApp, id: &str) -> bool {
    use entity::audit_event::{Column, Entity};
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    let event = Entity::find()
        .filter(Column::Action.eq("file.encrypted"))
        .filter(Column::TargetId.eq(id))
        .one(app.core().db())
        .await
        .expect("query")
        .expect("a file.encrypted event");
    event.details["resealed"]
        .as_bool()
        .unwrap_or_else(|| panic!("no `resealed` in {}", event.details))
}

/// The stored (sealed) bytes of a file's quarantine object.
async fn quarantined(app: &TestApp, id: &str) -> Vec<u8> {
    app.core()
        .storage
        .read_raw(&format!("quarantine/{id}").as_str().into())
        .await
        .expect("the quarantine object")
        .to_vec()
}

/// Runs both jobs on the file, as a worker would.
async fn validate_and_encrypt(app: &TestApp, file_id: uuid::Uuid) {
    validate(app.core(), file_id).await.expect("validate");
    encrypt(app.core(), file_id).await.expect("encrypt");
}

/// By default a validated upload becomes its blob as it was sealed in quarantine: the same
/// ciphertext, the same key moved from the quarantine column to the data-key column, the
/// quarantine object and key gone — and it downloads intact.
async fn a_validated_upload_becomes_its_blob_as_sealed(topology: Topology) {
    let app = TestApp::spawn_with(topology, &[], Roles::API).await;
    let user = app.user().await;
    let bytes = pdf(&pattern(300_000, 21));
    let id = app.upload(&user, "kept.pdf", bytes.clone()).await;
    let file_id = uuid::Uuid::parse_str(&id).expect("uuid");
    let quarantined = quarantined(&app, &id).await;
    let [_, upload_key] = wrapped_keys(&app, &id).await;
    assert!(upload_key.0.is_some());

    validate_and_encrypt(&app, file_id).await;

    assert_eq!(app.file(&user, &id).await["status"], "ready");
    let (_, blob) = app.blob(&id).await;
    assert!(blob == quarantined[..], "the blob is the sealed upload");
    let [data_key, quarantine_key] = wrapped_keys(&app, &id).await;
    assert_eq!(data_key, upload_key, "the upload's key is the data key");
    assert_eq!(quarantine_key, (None, None));
    assert!(app.objects("quarantine").await.is_empty());
    assert!(!resealed(&app, &id).await);
    let body = app.download(&user, &id).await.bytes().await.expect("body");
    assert!(body[..] == bytes[..]);
    app.stop().await;
}

/// With `COFFER_RESEAL_AFTER_VALIDATION` the blob is sealed anew under a data key of its own:
/// nothing of the quarantine's ciphertext or key is kept.
async fn resealing_after_validation_gives_a_fresh_key(topology: Topology) {
    let app = TestApp::spawn_with(
        topology,
        &[("COFFER_RESEAL_AFTER_VALIDATION", "true")],
        Roles::API,
    )
    .await;
    let user = app.user().await;
    let bytes = pattern(300_000, 22);
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend_from_slice(&bytes);
    let id = app.upload(&user, "fresh.zip", zip.clone()).await;
    let file_id = uuid::Uuid::parse_str(&id).expect("uuid");
    let quarantined = quarantined(&app, &id).await;
    let [_, upload_key] = wrapped_keys(&app, &id).await;

    validate_and_encrypt(&app, file_id).await;

    assert_eq!(app.file(&user, &id).await["status"], "ready");
    let (_, blob) = app.blob(&id).await;
    assert_eq!(blob.len(), quarantined.len());
    assert!(blob != quarantined[..], "sealed anew");
    let [data_key, quarantine_key] = wrapped_keys(&app, &id).await;
    assert!(data_key.0.is_some() && data_key.0 != upload_key.0);
    assert_eq!(quarantine_key, (None, None));
    assert!(resealed(&app, &id).await);
    let body = app.download(&user, &id).await.bytes().await.expect("body");
    assert!(body[..] == zip[..]);
    app.stop().await;
}

/// A quarantine object altered between validation and encryption is never served: kept as it
/// is, its download fails closed and is audited; re-sealed, the file is rejected.
async fn an_upload_altered_after_validation_is_never_served(topology: Topology) {
    for reseal in ["false", "true"] {
        let app = TestApp::spawn_with(
            topology,
            &[("COFFER_RESEAL_AFTER_VALIDATION", reseal)],
            Roles::API,
        )
        .await;
        let user = app.user().await;
        let id = app
            .upload(&user, "altered.txt", b"validated, then altered".to_vec())
            .await;
        let file_id = uuid::Uuid::parse_str(&id).expect("uuid");
        validate(app.core(), file_id).await.expect("validate");
        let mut stored = quarantined(&app, &id).await;
        let at = stored.len() - 3;
        stored[at] ^= 0x01;
        app.put_object(&format!("quarantine/{id}"), stored).await;
        encrypt(app.core(), file_id).await.expect("encrypt");

        let file = app.file(&user, &id).await;
        if reseal == "true" {
            assert_eq!(file["status"], "rejected", "{file}");
        } else {
            assert_eq!(file["status"], "ready", "{file}");
            let problem = crate::common::problem(
                app.download(&user, &id).await,
                StatusCode::INTERNAL_SERVER_ERROR,
            )
            .await;
            assert_eq!(problem["type"], "urn:coffer:problem:integrity-failed");
            let failed = app.audit_actions().await.into_iter().any(|(a, target, _)| {
                a == "file.integrity_failed" && target.as_deref() == Some(id.as_str())
            });
            assert!(failed, "the failed download is audited");
        }
        app.stop().await;
    }
}

/// Validation opens every chunk of the quarantine object, and that is its integrity check (the
/// upload's digest is not computed again, docs/SECURITY.md): a byte flipped in a middle chunk,
/// two chunks swapped, the last chunk cut off, or another upload's object put in its place —
/// each file is rejected as failing its integrity check, its quarantine copy destroyed, and
/// never served; the untouched upload beside them becomes ready.
async fn an_upload_altered_before_validation_is_rejected(topology: Topology) {
    let app = TestApp::spawn_with(topology, &[], Roles::API).await;
    let user = app.user().await;
    // Three chunks of 64 KiB, the last one short.
    let content = |seed| pdf(&pattern(160_000, seed));
    let mut ids = Vec::new();
    for (name, seed) in [
        ("flipped.pdf", 31),
        ("swapped.pdf", 32),
        ("cut.pdf", 33),
        ("other.pdf", 34),
        ("kept.pdf", 35),
    ] {
        ids.push(app.upload(&user, name, content(seed)).await);
    }
    let sealed_chunk = 64 * 1024 + 16;
    let chunk = |i: usize| 16 + i * sealed_chunk..16 + (i + 1) * sealed_chunk;
    let object = |id: &str| format!("quarantine/{id}");

    let mut flipped = quarantined(&app, &ids[0]).await;
    flipped[chunk(1).start + 100] ^= 0x01;
    app.put_object(&object(&ids[0]), flipped).await;
    let stored = quarantined(&app, &ids[1]).await;
    let mut swapped = stored.clone();
    swapped[chunk(0)].copy_from_slice(&stored[chunk(1)]);
    swapped[chunk(1)].copy_from_slice(&stored[chunk(0)]);
    app.put_object(&object(&ids[1]), swapped).await;
    let stored = quarantined(&app, &ids[2]).await;
    app.put_object(&object(&ids[2]), stored[..chunk(2).start].to_vec())
        .await;
    // The same length and a valid object, but sealed for another file.
    let kept = quarantined(&app, &ids[4]).await;
    app.put_object(&object(&ids[3]), kept).await;

    for (i, id) in ids.iter().enumerate() {
        let file_id = uuid::Uuid::parse_str(id).expect("uuid");
        validate_and_encrypt(&app, file_id).await;
        let file = app.file(&user, id).await;
        if i == 4 {
            assert_eq!(file["status"], "ready", "{file}");
            let body = app.download(&user, id).await.bytes().await.expect("body");
            assert!(
                body[..] == content(35)[..],
                "the untouched upload downloads intact"
            );
            continue;
        }
        assert_eq!(file["status"], "rejected", "{file}");
        assert_eq!(
            file["reject_reason"], "the stored upload failed its integrity check",
            "{file}"
        );
        app.quarantine_emptied(id).await;
        let refused = app.download(&user, id).await;
        assert!(refused.status().is_client_error(), "{}", refused.status());
    }
    let rejected = app.audit_targets("file.rejected").await;
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    assert!(
        ids[..4].iter().all(|id| rejected.contains(id)),
        "{rejected:?}"
    );
    app.stop().await;
}

/// What an encryption killed mid-way left behind (a blob object no row points to) is removed by
/// the run that finishes the file.
async fn stray_blobs_of_killed_runs_are_removed(topology: Topology) {
    let mut app = TestApp::spawn_with(topology, &[], Roles::API).await;
    let user = app.user().await;
    let id = app
        .upload(&user, "kept.txt", b"one blob only".to_vec())
        .await;
    let stray = format!("blobs/{id}/{}", uuid::Uuid::new_v4());
    app.put_object(&stray, b"sealed under a key nobody kept".to_vec())
        .await;
    app.start_workers().await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    // The job removes strays right after it marks the file ready.
    eventually(
        "the stray blob removed",
        Duration::from_secs(30),
        || async {
            let blobs = app.objects(&format!("blobs/{id}")).await;
            if blobs.len() == 1 {
                assert!(!blobs.contains(&stray));
                return Ok(());
            }
            Err(format!("{blobs:?}"))
        },
    )
    .await;
    let download = app.download(&user, &id).await;
    assert_eq!(
        download.bytes().await.expect("body").as_ref(),
        b"one blob only"
    );
    app.stop().await;
}

/// An object without a file row is removed only when two orphan passes in a row find it so,
/// however old it looks: a store may date a multipart object from the start of its upload, so
/// a slow upload's quarantine object is "old" before its row is written.
async fn an_object_is_an_orphan_only_when_two_passes_find_no_row(topology: Topology) {
    use coffer::coffer_core::services::orphans;
    use sea_orm::EntityTrait as _;
    let settings = [("COFFER_ORPHAN_GRACE_SECS", "1")];
    let mut app = TestApp::spawn_with(topology, &settings, Roles::API).await;
    let user = app.user().await;
    let id = app
        .upload(&user, "slow.txt", b"uploaded slowly".to_vec())
        .await;
    let stray = format!("quarantine/{}", uuid::Uuid::now_v7());
    app.put_object(&stray, b"nobody's".to_vec()).await;
    let core = app.core().clone();
    // Both objects older than the grace.
    eventually("the objects aging", Duration::from_secs(10), || async {
        let dated: Vec<_> =
            futures::StreamExt::collect(core.storage.list_dated("quarantine")).await;
        let cutoff = chrono::Utc::now() - chrono::Duration::seconds(1);
        if dated
            .iter()
            .all(|d| d.as_ref().is_ok_and(|(_, at)| *at < cutoff))
        {
            Ok(())
        } else {
            Err("the objects never aged".to_owned())
        }
    })
    .await;
    // The upload's row is not written yet when the first pass lists its object.
    let file_id = uuid::Uuid::parse_str(&id).expect("uuid");
    let row = entity::file::Entity::find_by_id(file_id)
        .one(core.db())
        .await
        .expect("row")
        .expect("the file");
    entity::file::Entity::delete_by_id(file_id)
        .exec(core.db())
        .await
        .expect("hide the row");
    assert_eq!(orphans::remove(&core).await.expect("first pass"), 0);
    entity::file::Entity::insert(entity::file::ActiveModel::from(row))
        .exec(core.db())
        .await
        .expect("the row, written late");
    assert_eq!(orphans::remove(&core).await.expect("second pass"), 1);
    assert_eq!(
        app.objects("quarantine").await,
        vec![format!("quarantine/{id}")]
    );
    app.start_workers().await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    app.stop().await;
}

/// A blob cut short, and two files' blobs swapped: neither is ever served, and each failure is
/// audited.
async fn truncated_and_swapped_blobs_are_refused(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let mut ids = Vec::new();
    for (name, bytes) in [
        ("cut.txt", b"this blob loses its end".to_vec()),
        ("a.txt", b"file a, sealed to its own id".to_vec()),
        ("b.txt", b"file b, sealed to its own id".to_vec()),
    ] {
        let id = app.upload(&user, name, bytes).await;
        assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
        ids.push(id);
    }
    let (cut, a, b) = (&ids[0], &ids[1], &ids[2]);

    // Truncated: the last chunk (and its final-chunk flag) is gone.
    let (object, bytes) = app.blob(cut).await;
    app.put_object(&object, bytes[..bytes.len() - 20].to_vec())
        .await;
    // Swapped: b's object now holds a's sealed bytes (a valid blob, for another file).
    let (_, a_bytes) = app.blob(a).await;
    let (b_object, _) = app.blob(b).await;
    app.put_object(&b_object, a_bytes).await;

    for id in [cut, b] {
        let body = crate::common::problem(
            app.download(&user, id).await,
            StatusCode::INTERNAL_SERVER_ERROR,
        )
        .await;
        assert_eq!(body["type"], "urn:coffer:problem:integrity-failed");
    }
    let untouched = app.download(&user, a).await;
    assert_eq!(untouched.status(), StatusCode::OK);
    assert_eq!(
        untouched.bytes().await.expect("body").as_ref(),
        b"file a, sealed to its own id"
    );
    let failures = app.audit_targets("file.integrity_failed").await;
    assert!(
        failures.contains(cut) && failures.contains(b),
        "{failures:?}"
    );
    assert!(!failures.contains(a));
    app.stop().await;
}

/// A name's only suffix is an extension like any other, and a macro-enabled Office document is
/// known by its macro part whatever its name says: neither ends `ready` by default.
async fn suffix_only_names_and_macro_documents_are_judged_by_content(topology: Topology) {
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let document: &[u8] = b"<w:document/>";
    let docx = crate::common::zip_stored(&[("word/document.xml", document)]);
    let docm = crate::common::zip_stored(&[
        ("word/document.xml", document),
        ("word/vbaProject.bin", &[0xCC; 2000]),
    ]);
    let cases = [
        (
            ".hta",
            b"CreateObject(\"WScript.Shell\").Run \"calc\"".to_vec(),
            Some("the name ends in .hta"),
        ),
        ("letter.docx", docx.clone(), None),
        (
            "letter.docx",
            docm.clone(),
            Some("application/vnd.ms-word.document.macroEnabled.12 are not accepted"),
        ),
        (
            "letter.docm",
            docm,
            Some("application/vnd.ms-word.document.macroEnabled.12 are not accepted"),
        ),
        ("letter.docm", docx, Some("the name ends in .docm")),
    ];
    for (name, bytes, refused) in cases {
        let id = app.upload(&user, name, bytes).await;
        let file = app.wait_until_settled(&user, &id).await;
        match refused {
            None => assert_eq!(file["status"], "ready", "{name}: {file}"),
            Some(reason) => {
                assert_eq!(file["status"], "rejected", "{name}: {file}");
                let given = file["reject_reason"].as_str().unwrap_or_default();
                assert!(given.contains(reason), "{name}: {file}");
            }
        }
    }
    app.stop().await;
}

both_topologies!(
    a_validated_upload_becomes_its_blob_as_sealed,
    resealing_after_validation_gives_a_fresh_key,
    an_upload_altered_after_validation_is_never_served,
    an_upload_altered_before_validation_is_rejected,
    suffix_only_names_and_macro_documents_are_judged_by_content,
    tampered_blobs_are_never_served,
    truncated_and_swapped_blobs_are_refused,
    stray_blobs_of_killed_runs_are_removed,
    an_object_is_an_orphan_only_when_two_passes_find_no_row,
    no_plaintext_reaches_disk,
    repeated_and_concurrent_jobs_change_nothing,
    the_sweep_recovers_lost_jobs,
    files_that_cannot_be_scanned_run_out_of_attempts,
    files_past_their_deadline_are_given_up,
    the_queue_forgets_finished_tasks,
    a_missing_master_key_version_stops_start_up,
    small_files_settle_quickly,
);
