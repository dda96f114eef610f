//! `kill -9` of the worker process at random points of validate, encrypt, email and rewrap,
//! round after round: afterwards every file is `ready` (byte-identical) or `rejected`, every
//! recipient holds a working link (a duplicate email is tolerable, a lost one is not), every
//! rotation has finished, the audit chain verifies, and no stored object is left that no file
//! needs.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::smtp::SmtpServer;
use crate::common::{Client, Environment, Process, Topology, pattern, pdf};
use rand::{Rng as _, SeedableRng as _};
use reqwest::StatusCode;
use serde_json::Value;

const ROUNDS: usize = 20;
/// The job each round kills the worker in, in turn.
const PHASES: [&str; 4] = ["validate", "encrypt", "notify", "rewrap"];
/// Big enough that reading, checking and re-sealing it takes a while.
const FILE_BYTES: usize = 8 * 1024 * 1024;
const ADMIN: (&str, &str) = ("chaos-admin@example.org", "admin password 123");
const USER: (&str, &str) = ("chaos@example.org", "correct horse battery");

/// How long after a job starts the kill may come: about as long as the job takes here.
fn kill_window(phase: &str) -> Duration {
    Duration::from_millis(match phase {
        "validate" | "encrypt" => 80,
        "notify" => 400, // the SMTP server takes 300 ms to accept a message
        _ => 1500,       // a rotation of 10,000 keys in batches of 200
    })
}

struct Upload {
    id: String,
    bytes: Vec<u8>,
    ready: bool,
    recipients: Vec<String>,
}

/// Waits until the worker logs that it started a job of `phase`.
async fn wait_for_job_start(log: &Path, phase: &str) {
    let needle = format!("\"job\":\"{phase}\"");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("\"message\":\"job started\"") && l.contains(&needle))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {phase} job started; the worker said:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn json(response: reqwest::Response) -> Value {
    response.json().await.expect("json")
}

async fn killed_workers_lose_nothing(topology: Topology) {
    let seed: u64 = std::env::var("COFFER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill points from seed {seed} (COFFER_TEST_SEED={seed} repeats them)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let smtp = SmtpServer::start_slow(Duration::from_millis(300));
    let env = Environment::new(
        topology,
        &[
            ("COFFER_SMTP_URL", &smtp.url),
            ("COFFER_SWEEP_STUCK_AFTER_SECS", "2"),
            ("COFFER_SWEEP_INTERVAL_SECS", "1"),
            ("COFFER_ORPHAN_GRACE_SECS", "1"),
            ("COFFER_REWRAP_BATCH", "200"),
            ("COFFER_ADMIN_EMAIL", ADMIN.0),
            ("COFFER_ADMIN_PASSWORD", ADMIN.1),
        ],
    )
    .await;
    let api = Process::start("api", &env.vars);
    let base = api.base.clone().expect("the API listens");
    let mut worker_vars = env.vars.clone();
    worker_vars.extend(
        [
            ("COFFER_PUBLIC_URL", base.as_str()),
            ("COFFER_LOG", "warn,coffer_worker=debug"),
            ("COFFER_LOG_FORMAT", "json"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let core = coffer::coffer_core::Core::build(env.config(), false)
        .await
        .expect("core");
    // Keys for every rotation to rewrap (files without blobs: only their keys matter).
    crate::common::seed::ready_files(&core, 10_000, 1).await;
    let client = Client::new(&base);
    let http = client.http.clone();
    let user = client.sign_in(USER.0, USER.1, true).await;
    crate::common::verify_email(&core, USER.0).await;
    let admin = client.sign_in(ADMIN.0, ADMIN.1, false).await;

    let mut uploads: Vec<Upload> = Vec::new();
    let upload = |name: String, bytes: Vec<u8>, ready: bool, recipients: Vec<String>| {
        let (http, base, user) = (http.clone(), base.clone(), user.clone());
        async move {
            let query: Vec<(&str, &str)> = recipients
                .iter()
                .map(|r| ("recipients", r.as_str()))
                .collect();
            let response = http
                .put(format!("{base}/api/v1/files/{name}"))
                .query(&query)
                .bearer_auth(&user)
                .body(bytes.clone())
                .send()
                .await
                .expect("upload");
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let id = json(response).await["id"].as_str().expect("id").to_owned();
            Upload {
                id,
                bytes,
                ready,
                recipients,
            }
        }
    };

    for round in 0..ROUNDS {
        let phase = PHASES[round % PHASES.len()];
        let log = env.data.path().join(format!("worker-{round}.log"));
        let mut worker = Process::start_logging_to("worker", &worker_vars, &log);
        let seed = u8::try_from(round).expect("few rounds");
        match phase {
            "validate" | "encrypt" => {
                let to = vec![format!("r{round}@example.org")];
                let big = pdf(&pattern(FILE_BYTES, seed));
                uploads.push(upload(format!("big-{round}.pdf"), big, true, to).await);
                if phase == "validate" {
                    // An executable under a document's name: rejected, never ready.
                    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
                    exe.extend(pattern(FILE_BYTES, seed.wrapping_add(100)));
                    uploads.push(upload(format!("fake-{round}.pdf"), exe, false, vec![]).await);
                }
            }
            "notify" => {
                let to = vec![
                    format!("a{round}@example.org"),
                    format!("b{round}@example.org"),
                ];
                let small = pdf(&pattern(20_000, seed));
                uploads.push(upload(format!("small-{round}.pdf"), small, true, to).await);
            }
            _ => {
                // The API is given its keyring: the operator adds the version to rotate to.
                env.add_master_key();
                let rotate = http
                    .post(format!("{base}/api/v1/admin/keys/rotate"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .expect("rotate");
                // 409: the rotation an earlier round interrupted is still being finished.
                assert!(
                    matches!(rotate.status(), StatusCode::ACCEPTED | StatusCode::CONFLICT),
                    "{}",
                    rotate.status()
                );
            }
        }
        wait_for_job_start(&log, phase).await;
        // The fault itself: the kill lands at a random point of the job (not a wait for
        // anything, so no polling applies).
        let delay = rng.random_range(Duration::ZERO..kill_window(phase));
        tokio::time::sleep(delay).await;
        worker.child.kill().expect("SIGKILL the worker");
        worker.child.wait().expect("reaped");
        eprintln!("round {round}: killed {delay:?} into a {phase} job");
    }

    // Recovery: one worker, left alone.
    let _worker = Process::start("worker", &worker_vars);
    let deadline = Instant::now() + Duration::from_secs(180);
    let poll = || tokio::time::sleep(Duration::from_millis(100));

    for upload in &uploads {
        let file = loop {
            let file = json(
                http.get(format!("{base}/api/v1/files/{}", upload.id))
                    .bearer_auth(&user)
                    .send()
                    .await
                    .expect("file"),
            )
            .await;
            if matches!(file["status"].as_str(), Some("ready" | "rejected")) {
                break file;
            }
            assert!(Instant::now() < deadline, "never settled: {file}");
            poll().await;
        };
        let expected = if upload.ready { "ready" } else { "rejected" };
        assert_eq!(file["status"], expected, "{file}");
        if upload.ready {
            let content = http
                .get(format!("{base}/api/v1/files/{}/content", upload.id))
                .bearer_auth(&user)
                .send()
                .await
                .expect("download");
            assert_eq!(content.status(), StatusCode::OK);
            let body = content.bytes().await.expect("body");
            assert!(
                body[..] == upload.bytes[..],
                "{} came back altered",
                upload.id
            );
        }
    }

    // Every recipient was emailed, and at least one of their links works.
    for upload in uploads.iter().filter(|u| !u.recipients.is_empty()) {
        loop {
            let shares = json(
                http.get(format!("{base}/api/v1/files/{}/shares", upload.id))
                    .bearer_auth(&user)
                    .send()
                    .await
                    .expect("shares"),
            )
            .await;
            let states: Vec<&str> = shares["shares"]
                .as_array()
                .expect("shares")
                .iter()
                .filter_map(|s| s["state"].as_str())
                .collect();
            if states.len() == upload.recipients.len() && states.iter().all(|s| *s == "emailed") {
                break;
            }
            assert!(Instant::now() < deadline, "shares never emailed: {shares}");
            poll().await;
        }
        for recipient in &upload.recipients {
            let mails = smtp.wait_for(recipient, 1).await;
            let mut working = 0;
            for mail in &mails {
                let page = http.get(mail.link()).send().await.expect("share page");
                if page.status() == StatusCode::OK {
                    working += 1;
                }
            }
            assert_eq!(
                working,
                1,
                "{recipient}: {} emails, {working} working links",
                mails.len()
            );
        }
    }

    // Every rotation finished, and only the newest master key wraps anything.
    let keys = loop {
        let rotation = json(
            http.get(format!("{base}/api/v1/admin/keys/rotation"))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("rotation"),
        )
        .await;
        let keys = json(
            http.get(format!("{base}/api/v1/admin/keys"))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("keys"),
        )
        .await;
        let in_use = keys["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .filter(|v| v["wrapped_keys"].as_i64() > Some(0))
            .count();
        if rotation["state"] == "finished" && in_use == 1 {
            break keys;
        }
        assert!(
            Instant::now() < deadline,
            "rotation unfinished: {rotation} {keys}"
        );
        poll().await;
    };
    assert!(
        keys["versions"].as_array().expect("versions").len() > 1,
        "the rounds rotated: {keys}"
    );

    // Nothing stored that no file needs: exactly the current blob of each ready file (besides
    // the audit log's signed checkpoints).
    let expected: BTreeSet<String> = {
        use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
        let ids: Vec<uuid::Uuid> = uploads
            .iter()
            .map(|u| u.id.parse().expect("uuid"))
            .collect();
        entity::file::Entity::find()
            .filter(entity::file::Column::Id.is_in(ids))
            .filter(entity::file::Column::Status.eq("ready"))
            .all(core.db())
            .await
            .expect("files")
            .into_iter()
            .map(|f| format!("blobs/{}/{}", f.id, f.blob_id.expect("a ready file's blob")))
            .collect()
    };
    loop {
        let stored: BTreeSet<String> = core
            .storage
            .list("")
            .await
            .expect("list")
            .into_iter()
            .map(|p| p.to_string())
            .filter(|p| !p.starts_with("audit/checkpoints/"))
            .collect();
        let partials = crate::common::files_named(&env.data.path().join("blobs"), |name| {
            name.rsplit_once('#')
                .is_some_and(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()))
        });
        if stored == expected && partials.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}; missing: {:?}; partial writes: {partials:?}",
            stored.difference(&expected).collect::<Vec<_>>(),
            expected.difference(&stored).collect::<Vec<_>>()
        );
        poll().await;
    }

    let report = coffer::coffer_core::services::audit::verify(
        &core,
        coffer::coffer_core::principal::Operator::Console,
    )
    .await
    .expect("verify");
    assert!(report.ok, "{report:?}");
    drop(api);
    env.cleanup().await;
}

both_topologies!(killed_workers_lose_nothing);
