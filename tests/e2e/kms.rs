//! Master keys held by an HSM (SoftHSM2 through PKCS#11) or a KMS (moto's AWS KMS): `coffer api`
//! and `coffer worker` as separate processes sharing the keys through the database, restarts,
//! a rotation whose new version one process makes and the other picks up, and clear refusals.

use std::time::Duration;

use crate::common::kms::{
    NetworkHsm, Outage, Relay, SoftHsm, StrictKms, aws_kms_key, create_aws_key, vars_for_aws_key,
    vars_for_aws_key_at, with,
};
use crate::common::{Client, Environment, Process, Topology, eventually, pattern, pdf};
use reqwest::StatusCode;
use sea_orm::{EntityTrait as _, QueryOrder as _};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("kms-admin@example.org", "admin password 123");
const SETTINGS: [(&str, &str); 2] = [
    ("COFFER_ADMIN_EMAIL", ADMIN.0),
    ("COFFER_ADMIN_PASSWORD", ADMIN.1),
];

/// The wrapped keys the database holds: kind, version, wrapping key, wrap.
async fn wrapped_keys(env: &Environment) -> Vec<(String, i32, String, Vec<u8>)> {
    let db = sea_orm::Database::connect(&env.config().database_url)
        .await
        .expect("database");
    let rows = entity::kms_wrapped_key::Entity::find()
        .order_by_asc(entity::kms_wrapped_key::Column::Kind)
        .order_by_asc(entity::kms_wrapped_key::Column::Version)
        .all(&db)
        .await
        .expect("rows");
    db.close().await.ok();
    rows.into_iter()
        .map(|r| (r.kind, r.version, r.wrapped_by, r.wrapped))
        .collect()
}

/// `coffer api` with `vars`, and a client of it.
fn start_api(vars: &[(String, String)]) -> (Process, Client) {
    let api = Process::start("api", vars);
    let client = Client::new(api.base.clone().expect("the API listens"));
    (api, client)
}

/// Rotates to a new master-key version through the API and waits for the rewrap to finish.
async fn rotate(client: &Client) -> Value {
    let admin = client.sign_in(ADMIN.0, ADMIN.1, false).await;
    let started = client
        .post_json("/api/v1/admin/keys/rotate", &json!({}), Some(&admin))
        .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED, "rotation starts");
    eventually(
        "the rotation finishing",
        Duration::from_secs(60),
        || async {
            let rotation = client
                .get_json("/api/v1/admin/keys/rotation", Some(&admin))
                .await;
            if rotation["state"] == "finished" {
                Ok(rotation)
            } else {
                Err(format!("rotation did not finish: {rotation}"))
            }
        },
    )
    .await
}

/// The service's whole life with its keys in SoftHSM2: the API and a worker (two processes
/// signed in to one token) process and serve a file; a restarted API unwraps the keys again;
/// a rotation's new version, made and wrapped by the API, is unwrapped by the worker that
/// rewraps the data keys under it.
async fn keys_in_an_hsm_serve_two_processes_a_restart_and_a_rotation(topology: Topology) {
    let hsm = SoftHsm::with_key("coffer", "coffer-kek-1");
    let env = Environment::new(topology, &SETTINGS).await;
    let vars = with(&env.vars, &hsm.vars("coffer", "coffer-kek-1"));
    let (api, client) = start_api(&vars);
    let worker = Process::start("worker", &vars);
    let token = client
        .sign_in("held@example.org", "correct horse battery", true)
        .await;
    let bytes = pdf(&pattern(200_000, 3));
    let id = client.upload_ready(&token, "held.pdf", bytes.clone()).await;
    client.reads_back(&token, &id, &bytes).await;

    // The database holds the first master and audit keys, wrapped by the token's key: a
    // format byte, the IV, the 32-byte key and the tag.
    let rows = wrapped_keys(&env).await;
    let listed: Vec<(&str, i32)> = rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    assert_eq!(listed, [("audit", 1), ("master", 1)]);
    for (_, _, by, wrapped) in &rows {
        assert_eq!(by, "pkcs11:token=coffer;object=coffer-kek-1");
        assert_eq!(wrapped.len(), 1 + 12 + 32 + 16);
    }

    // A restarted API unwraps them again.
    drop(api);
    let (api, client) = start_api(&vars);
    client.reads_back(&token, &id, &bytes).await;

    let rotation = rotate(&client).await;
    assert_eq!(rotation["to"], 2, "{rotation}");
    // Key lines for a keyring mean nothing here.
    let stderr = cli_refused(&["keys", "generate"], &vars);
    assert!(
        stderr.contains("Coffer generates master keys itself"),
        "{stderr}"
    );
    let versions: Vec<(String, i32)> = wrapped_keys(&env)
        .await
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    assert!(versions.contains(&("master".into(), 2)), "{versions:?}");
    client.reads_back(&token, &id, &bytes).await;
    drop(worker);
    drop(api);
    env.cleanup().await;
}

/// A process given a wrong PIN, a key label the token lacks, or another HSM's key of the same
/// label refuses to start, in one line naming what is wrong (never the PIN); given the right
/// ones again, it serves the file it stored.
async fn a_wrong_pin_key_or_hsm_refuses_to_start(topology: Topology) {
    let hsm = SoftHsm::with_key("coffer", "coffer-kek-1");
    let env = Environment::new(topology, &[]).await;
    let vars = with(&env.vars, &hsm.vars("coffer", "coffer-kek-1"));
    let (api, client) = start_api(&vars);
    let token = client
        .sign_in("refused@example.org", "correct horse battery", true)
        .await;
    let worker = Process::start("worker", &vars);
    let bytes = pdf(b"kept while the HSM refuses");
    let id = client.upload_ready(&token, "kept.pdf", bytes.clone()).await;
    drop(worker);
    drop(api);

    let one_line = |stderr: &str| assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let wrong_pin = env.data.path().join("wrong-pin");
    std::fs::write(&wrong_pin, "999999x").expect("pin");
    let stderr = Process::refused(
        "api",
        &with(
            &env.vars,
            &hsm.vars_with_pin_file("coffer", "coffer-kek-1", &wrong_pin),
        ),
    );
    assert!(
        stderr.contains("the PKCS#11 token \"coffer\" refused the PIN"),
        "{stderr}"
    );
    assert!(!stderr.contains("999999x"), "{stderr}");
    one_line(&stderr);

    let stderr = Process::refused("worker", &with(&env.vars, &hsm.vars("coffer", "kek-9")));
    assert!(
        stderr.contains("no secret key labelled \"kek-9\" on PKCS#11 token \"coffer\""),
        "{stderr}"
    );
    one_line(&stderr);

    // Another HSM, whose token and key carry the same labels: the stored keys do not open.
    let other = SoftHsm::with_key("coffer", "coffer-kek-1");
    let stderr = Process::refused(
        "api",
        &with(&env.vars, &other.vars("coffer", "coffer-kek-1")),
    );
    assert!(
        stderr.contains("does not open under the key \"coffer-kek-1\" of token \"coffer\""),
        "{stderr}"
    );
    one_line(&stderr);

    // Another installation's master key, wrapped by this very HSM key, put in this database
    // (a table restored from the wrong backup): it unwraps, but the key check value says it
    // is not this database's key.
    let other = Environment::new(topology, &[]).await;
    drop(Process::start(
        "api",
        &with(&other.vars, &hsm.vars("coffer", "coffer-kek-1")),
    ));
    let theirs = wrapped_keys(&other).await;
    let ours = wrapped_keys(&env).await;
    let master = |rows: &[(String, i32, String, Vec<u8>)]| {
        rows.iter()
            .find(|r| r.0 == "master")
            .map(|r| r.3.clone())
            .expect("a master key")
    };
    set_wrapped(&env, "master", 1, master(&theirs)).await;
    let stderr = Process::refused("api", &vars);
    assert!(
        stderr.contains(
            "master key version 1 in this process's keyring is not the key this database was set up with"
        ) && stderr.contains("restore them from this installation's backup"),
        "{stderr}"
    );
    one_line(&stderr);
    set_wrapped(&env, "master", 1, master(&ours)).await;
    other.cleanup().await;

    let (api, client) = start_api(&vars);
    client.reads_back(&token, &id, &bytes).await;
    drop(api);
    env.cleanup().await;
}

/// Replaces the wrap of one stored key.
async fn set_wrapped(env: &Environment, kind: &str, version: i32, wrapped: Vec<u8>) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait as _, QueryFilter as _};
    let db = sea_orm::Database::connect(&env.config().database_url)
        .await
        .expect("database");
    entity::kms_wrapped_key::Entity::update_many()
        .col_expr(
            entity::kms_wrapped_key::Column::Wrapped,
            Expr::value(wrapped),
        )
        .filter(entity::kms_wrapped_key::Column::Kind.eq(kind))
        .filter(entity::kms_wrapped_key::Column::Version.eq(version))
        .exec(&db)
        .await
        .expect("update");
    db.close().await.ok();
}

/// The same with the keys in a KMS speaking AWS's API: two processes, a restart, the wraps
/// under the key's ARN; a missing key and a disabled key refuse to start.
async fn keys_in_a_kms_serve_two_processes_and_a_disabled_key_refuses(topology: Topology) {
    let (arn, kms) = aws_kms_key().await;
    let env = Environment::new(topology, &[]).await;
    let vars = with(&env.vars, &kms);
    let (api, client) = start_api(&vars);
    let worker = Process::start("worker", &vars);
    let token = client
        .sign_in("kms@example.org", "correct horse battery", true)
        .await;
    let bytes = pdf(&pattern(150_000, 9));
    let id = client.upload_ready(&token, "kms.pdf", bytes.clone()).await;
    client.reads_back(&token, &id, &bytes).await;
    let rows = wrapped_keys(&env).await;
    assert_eq!(rows.len(), 2, "a master and an audit key");
    for (_, _, by, _) in &rows {
        assert_eq!(by, &format!("aws-kms:{arn}"));
    }
    drop(api);
    let (api, client) = start_api(&vars);
    client.reads_back(&token, &id, &bytes).await;

    // After the KMS rotated the key's own material, `--all` rewraps under the same ARN.
    let out = cli(&["keys", "kms-rewrap", "--all"], &vars);
    assert!(out.contains("2 of 2 keys rewrapped"), "{out}");
    let again = wrapped_keys(&env).await;
    assert_eq!(again.len(), 2);
    for (before, after) in rows.iter().zip(&again) {
        assert_eq!(after.2, format!("aws-kms:{arn}"));
        assert_ne!(before.3, after.3, "wrapped anew");
    }
    drop(api);
    let (api, client) = start_api(&vars);
    client.reads_back(&token, &id, &bytes).await;
    drop(worker);
    drop(api);

    let stderr = Process::refused(
        "api",
        &with(&env.vars, &vars_for_aws_key("alias/coffer-nowhere")),
    );
    assert!(stderr.contains("NotFoundException"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    crate::common::kms::disable_aws_key(&arn).await;
    let stderr = Process::refused("worker", &vars);
    assert!(stderr.contains("is not enabled"), "{stderr}");
    env.cleanup().await;
}

/// The wrapped data key of file `id`, as stored.
async fn data_key(env: &Environment, id: &str) -> Vec<u8> {
    let db = sea_orm::Database::connect(&env.config().database_url)
        .await
        .expect("database");
    let file = entity::file::Entity::find_by_id(uuid::Uuid::parse_str(id).expect("uuid"))
        .one(&db)
        .await
        .expect("query")
        .expect("the file");
    db.close().await.ok();
    file.dek.expect("a ready file has its data key")
}

/// The HSM key changes (a new label on the token): processes pointed at the new key start and
/// serve, the keys still under the old one; `coffer keys kms-rewrap` moves every master and
/// audit key under the new key without touching any data key; then the old key can be
/// destroyed and everything still opens.
async fn a_new_hsm_key_takes_over_without_touching_a_file(topology: Topology) {
    let hsm = SoftHsm::with_key("coffer", "coffer-kek-1");
    hsm.add_key("coffer", "coffer-kek-2");
    let env = Environment::new(topology, &[]).await;
    let old = with(&env.vars, &hsm.vars("coffer", "coffer-kek-1"));
    let (api, client) = start_api(&old);
    let worker = Process::start("worker", &old);
    let token = client
        .sign_in("rewrap@example.org", "correct horse battery", true)
        .await;
    let bytes = pdf(&pattern(100_000, 4));
    let id = client
        .upload_ready(&token, "stays.pdf", bytes.clone())
        .await;
    let dek = data_key(&env, &id).await;
    drop(worker);
    drop(api);

    let new = with(&env.vars, &hsm.vars("coffer", "coffer-kek-2"));
    let (api, client) = start_api(&new);
    client.reads_back(&token, &id, &bytes).await;
    let out = cli(&["keys", "kms-rewrap"], &new);
    assert!(out.contains("2 of 2 keys rewrapped"), "{out}");
    for (kind, _, by, _) in wrapped_keys(&env).await {
        assert_eq!(by, "pkcs11:token=coffer;object=coffer-kek-2", "{kind}");
    }
    assert_eq!(data_key(&env, &id).await, dek, "no data key is touched");
    client.reads_back(&token, &id, &bytes).await;
    let out = cli(&["keys", "kms-rewrap"], &new);
    assert!(out.contains("0 of 0 keys rewrapped"), "{out}");
    assert_eq!(events(&env, "key.kms_rewrapped").await, 2);

    hsm.delete_key("coffer", "coffer-kek-1");
    drop(api);
    let (api, client) = start_api(&new);
    client.reads_back(&token, &id, &bytes).await;
    drop(api);
    env.cleanup().await;
}

/// Credentials the KMS does not know refuse start-up in one line naming the KMS.
async fn credentials_the_kms_refuses_stop_start_up(topology: Topology) {
    let kms = StrictKms::start().await;
    let arn = create_aws_key(&kms.endpoint).await;
    let env = Environment::new(topology, &[]).await;
    let stderr = Process::refused(
        "api",
        &with(&env.vars, &vars_for_aws_key_at(&arn, &kms.endpoint)),
    );
    assert!(
        stderr.contains(&format!(
            "the KMS at {}/ refused describing key",
            kms.endpoint
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("coffer-test-secret"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    env.cleanup().await;
}

/// The KMS going away while the service runs, and coming back (a relay to moto, cut and
/// restored).
async fn a_kms_that_goes_away_stops_only_new_key_operations(topology: Topology) {
    let (arn, _) = aws_kms_key().await;
    let relay = Relay::to_kms().await;
    let vars = vars_for_aws_key_at(&arn, &relay.url());
    goes_away_and_comes_back(topology, &vars, &relay, "did not answer").await;
}

/// A network HSM going away while the service runs, and coming back: SoftHSM2 behind p11-kit's
/// server, which the test kills and starts again. The client module reconnects only when
/// initialised again, which Coffer does on the first call that finds the token gone.
async fn an_hsm_that_goes_away_stops_only_new_key_operations(topology: Topology) {
    let hsm = SoftHsm::with_key("coffer", "coffer-kek-1");
    let server = NetworkHsm::serve(&hsm, "coffer").await;
    let vars = server.vars("coffer-kek-1");
    goes_away_and_comes_back(
        topology,
        &vars,
        &server,
        "no PKCS#11 token labelled \"coffer\"",
    )
    .await;
}

/// The HSM or KMS of `kms_vars` going away while the service runs, and coming back: what the
/// processes hold keeps working (a download, an upload becoming ready), a new key operation
/// answers 503 with `Retry-After`, `/readyz` says the KMS is unavailable, a process starting
/// meanwhile refuses in one line containing `refusal`, and nothing is stored under another
/// key; once it is back, a rotation goes through.
async fn goes_away_and_comes_back(
    topology: Topology,
    kms_vars: &[(String, String)],
    outage: &impl Outage,
    refusal: &str,
) {
    let env = Environment::new(topology, &SETTINGS).await;
    let vars = with(&env.vars, kms_vars);
    let (api, client) = start_api(&vars);
    let worker = Process::start("worker", &vars);
    let token = client
        .sign_in("away@example.org", "correct horse battery", true)
        .await;
    let admin = client.sign_in(ADMIN.0, ADMIN.1, false).await;
    let before = pdf(&pattern(80_000, 6));
    let first = client
        .upload_ready(&token, "before.pdf", before.clone())
        .await;

    outage.cut().await;
    client.reads_back(&token, &first, &before).await;
    let during = pdf(&pattern(70_000, 7));
    let second = client
        .upload_ready(&token, "during.pdf", during.clone())
        .await;
    client.reads_back(&token, &second, &during).await;

    let refused = client
        .post_json("/api/v1/admin/keys/rotate", &json!({}), Some(&admin))
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let ready = client.get_json("/readyz", None).await;
    assert_eq!(ready["kms"], "unavailable", "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let stderr = Process::refused("worker", &vars);
    assert!(stderr.contains(refusal), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let stored: Vec<(String, i32)> = wrapped_keys(&env)
        .await
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    assert_eq!(stored, [("audit".into(), 1), ("master".into(), 1)]);

    outage.restore().await;
    eventually(
        "the KMS answering again",
        Duration::from_secs(60),
        || async {
            let ready = client.get_json("/readyz", None).await;
            if ready["kms"] == "ok" && ready["status"] == "ready" {
                Ok(())
            } else {
                Err(format!("readiness stayed {ready}"))
            }
        },
    )
    .await;
    let rotation = rotate(&client).await;
    assert_eq!(rotation["to"], 2, "{rotation}");
    client.reads_back(&token, &first, &before).await;
    client.reads_back(&token, &second, &during).await;
    drop(worker);
    drop(api);
    env.cleanup().await;
}

/// `coffer <args>` run to its end with `vars`.
fn coffer(args: &[&str], vars: &[(String, String)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env("COFFER_LOG", "warn")
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("coffer runs")
}

/// [`coffer`], which must succeed; its stdout.
fn cli(args: &[&str], vars: &[(String, String)]) -> String {
    let output = coffer(args, vars);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "coffer {args:?}: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// [`coffer`], which must fail; its stderr.
fn cli_refused(args: &[&str], vars: &[(String, String)]) -> String {
    let output = coffer(args, vars);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "coffer {args:?} succeeded: {stderr}"
    );
    stderr
}

/// How many audit events of `action` the database holds.
async fn events(env: &Environment, action: &str) -> usize {
    event_rows(env, action).await.len()
}

/// The audit events of `action`, oldest first.
async fn event_rows(env: &Environment, action: &str) -> Vec<entity::audit_event::Model> {
    use sea_orm::{ColumnTrait as _, QueryFilter as _};
    let db = sea_orm::Database::connect(&env.config().database_url)
        .await
        .expect("database");
    let rows = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq(action))
        .order_by_asc(entity::audit_event::Column::OccurredAt)
        .all(&db)
        .await
        .expect("events");
    db.close().await.ok();
    rows
}

/// A new audit key with the keys in an HSM: `coffer keys generate --audit` makes version 2,
/// wraps and stores it (audited); restarted processes seal new events with it, and the log
/// verifies, the events of both keys alike.
async fn a_new_audit_key_in_an_hsm_seals_events_after_a_restart(topology: Topology) {
    let hsm = SoftHsm::with_key("coffer", "coffer-kek-1");
    let env = Environment::new(topology, &SETTINGS).await;
    let vars = with(&env.vars, &hsm.vars("coffer", "coffer-kek-1"));
    let (api, client) = start_api(&vars);
    let worker = Process::start("worker", &vars);
    let token = client
        .sign_in("sealed@example.org", "correct horse battery", true)
        .await;
    let before = pdf(&pattern(60_000, 8));
    client
        .upload_ready(&token, "before.pdf", before.clone())
        .await;

    let said = cli(&["keys", "generate", "--audit"], &vars);
    assert!(said.contains("audit key version 2"), "{said}");
    let stored: Vec<(String, i32)> = wrapped_keys(&env)
        .await
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    assert_eq!(
        stored,
        [
            ("audit".into(), 1),
            ("audit".into(), 2),
            ("master".into(), 1)
        ]
    );
    assert_eq!(events(&env, "key.audit_key_added").await, 1);

    drop(worker);
    drop(api);
    let (api, client) = start_api(&vars);
    let worker = Process::start("worker", &vars);
    let after = pdf(&pattern(70_000, 9));
    let id = client
        .upload_ready(&token, "after.pdf", after.clone())
        .await;
    client.reads_back(&token, &id, &after).await;
    let sealed_with: Vec<Option<i32>> = event_rows(&env, "file.uploaded")
        .await
        .iter()
        .map(|e| e.mac_version)
        .collect();
    assert_eq!(sealed_with, [Some(1), Some(2)]);

    let admin = client.sign_in(ADMIN.0, ADMIN.1, false).await;
    eventually(
        "every event sealed and verified",
        Duration::from_secs(60),
        || async {
            let report = client
                .get_json("/api/v1/admin/audit/verify", Some(&admin))
                .await;
            let unsealed = event_rows(&env, "file.uploaded")
                .await
                .iter()
                .filter(|e| e.seq.is_none())
                .count();
            if report["ok"] == true && unsealed == 0 {
                Ok(())
            } else {
                Err(format!("{unsealed} uploads unsealed; verify: {report}"))
            }
        },
    )
    .await;
    drop(worker);
    drop(api);
    env.cleanup().await;
}

/// An installation moves its keys from its keyring into SoftHSM2 and back with
/// `coffer keys migrate`, while its API keeps serving: a file uploaded before downloads
/// throughout; a migration run twice stores nothing twice; processes given `COFFER_KMS` then
/// run without the keyring, and after the move back, on the new keyring file alone.
async fn keys_move_from_a_keyring_into_an_hsm_and_back(topology: Topology) {
    let hsm = SoftHsm::with_key("coffer", "coffer-kek-1");
    let env = Environment::new(topology, &[]).await;
    let keyring = env.vars_for(coffer::Roles::API);
    let (api, client) = start_api(&keyring);
    let worker = Process::start("worker", &keyring);
    let token = client
        .sign_in("moving@example.org", "correct horse battery", true)
        .await;
    let before = pdf(&pattern(120_000, 1));
    let id = client
        .upload_ready(&token, "before.pdf", before.clone())
        .await;

    // COFFER_KMS on a database whose keys are in a keyring: refused, saying what to do.
    let held = with(&env.vars, &hsm.vars("coffer", "coffer-kek-1"));
    let stderr = Process::refused("api", &held);
    assert!(stderr.contains("coffer keys migrate --to"), "{stderr}");

    let uri = held
        .iter()
        .find(|(k, _)| k == "COFFER_KMS")
        .map(|(_, v)| v.clone())
        .expect("COFFER_KMS");
    let pin_and_conf: Vec<(String, String)> = held
        .iter()
        .filter(|(k, _)| k != "COFFER_KMS")
        .cloned()
        .collect();
    let migrating = with(&keyring, &pin_and_conf);
    let out = cli(&["keys", "migrate", "--to", &uri], &migrating);
    assert!(out.contains("2 keys wrapped by"), "{out}");
    client.reads_back(&token, &id, &before).await;
    let out = cli(&["keys", "migrate", "--to", &uri], &migrating);
    assert!(
        out.contains("0 keys wrapped by") && out.contains("2 there already"),
        "{out}"
    );
    client.reads_back(&token, &id, &before).await;

    // The keyring's processes give way to processes given COFFER_KMS alone.
    drop(worker);
    drop(api);
    let (api, client) = start_api(&held);
    let worker = Process::start("worker", &held);
    client.reads_back(&token, &id, &before).await;
    let during = pdf(&pattern(90_000, 2));
    let second = client
        .upload_ready(&token, "during.pdf", during.clone())
        .await;

    // And back into a keyring file of its own.
    let moved = env.data.path().join("moved-keyring");
    let out = cli(
        &[
            "keys",
            "migrate",
            "--to",
            &format!("file:{}", moved.display()),
        ],
        &held,
    );
    assert!(out.contains("2 keys written to"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&moved)
            .expect("keyring")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stderr = cli_refused(
        &[
            "keys",
            "migrate",
            "--to",
            &format!("file:{}", moved.display()),
        ],
        &held,
    );
    assert!(
        stderr.contains("File exists"),
        "never over an existing file: {stderr}"
    );
    drop(worker);
    drop(api);
    let on_file = with(
        &env.vars,
        &[(
            "COFFER_MASTER_KEYS_FILE".to_owned(),
            moved.display().to_string(),
        )],
    );
    let (api, client) = start_api(&on_file);
    client.reads_back(&token, &id, &before).await;
    client.reads_back(&token, &second, &during).await;
    drop(api);
    assert_eq!(
        events(&env, "key.migrated").await,
        2,
        "one event per move that stored keys"
    );
    env.cleanup().await;
}

macro_rules! needs_hsm_or_kms {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs SoftHSM2 and OpenSC (apt: softhsm2 opensc), p11-kit 0.25 and moto's KMS at 127.0.0.1:9000; run by .ci/run"]
                async fn $name() {
                    super::$name($crate::common::Topology::Embedded).await;
                }
            )*
        }
        mod production {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs SoftHSM2 and OpenSC (apt: softhsm2 opensc), p11-kit 0.25, PostgreSQL, Redis and moto (S3, KMS) at 127.0.0.1:9000; run by .ci/run"]
                async fn $name() {
                    super::$name($crate::common::Topology::Production).await;
                }
            )*
        }
    };
}

needs_hsm_or_kms!(
    credentials_the_kms_refuses_stop_start_up,
    a_kms_that_goes_away_stops_only_new_key_operations,
    an_hsm_that_goes_away_stops_only_new_key_operations,
    a_new_hsm_key_takes_over_without_touching_a_file,
    a_new_audit_key_in_an_hsm_seals_events_after_a_restart,
    keys_in_an_hsm_serve_two_processes_a_restart_and_a_rotation,
    keys_move_from_a_keyring_into_an_hsm_and_back,
    a_wrong_pin_key_or_hsm_refuses_to_start,
    keys_in_a_kms_serve_two_processes_and_a_disabled_key_refuses,
);
