//! Master-key rotation: versions, rewrapping with files present, resuming an interrupted
//! rotation, retiring and removing old material, and who may do it.

use std::time::Duration;

use crate::common::{TestApp, Topology, User, eventually, pattern, problem};
use coffer::Roles;
use coffer::coffer_core::crypto::SecretKey;
use coffer::coffer_core::jobs::rewrap;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("keys-admin@example.org", "admin password 123");

async fn admin(app: &TestApp) -> User {
    let login: Value = app
        .login(ADMIN.0, ADMIN.1)
        .await
        .json()
        .await
        .expect("json");
    User {
        email: ADMIN.0.to_owned(),
        token: login["token"].as_str().expect("token").to_owned(),
    }
}

fn settings<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("COFFER_ADMIN_EMAIL", ADMIN.0),
        ("COFFER_ADMIN_PASSWORD", ADMIN.1),
    ];
    vars.extend_from_slice(extra);
    vars
}

async fn versions(app: &TestApp, admin: &User) -> Vec<Value> {
    let body: Value = app
        .get("/api/v1/admin/keys", &admin.token)
        .await
        .json()
        .await
        .expect("json");
    body["versions"].as_array().expect("versions").clone()
}

async fn rotate(app: &TestApp, admin: &User) -> reqwest::Response {
    app.post_json("/api/v1/admin/keys/rotate", &json!({}), Some(&admin.token))
        .await
}

async fn wait_rotation_finished(app: &TestApp, admin: &User) -> Value {
    eventually(
        "the rotation finishing",
        Duration::from_secs(60),
        || async {
            let rotation: Value = app
                .get("/api/v1/admin/keys/rotation", &admin.token)
                .await
                .json()
                .await
                .expect("json");
            if rotation["state"] == "finished" {
                Ok(rotation)
            } else {
                Err(format!("rotation did not finish: {rotation}"))
            }
        },
    )
    .await
}

async fn upload_ready(app: &TestApp, user: &User, count: usize) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..count {
        let mut bytes = b"PK\x03\x04".to_vec();
        bytes.extend(pattern(20_000 + i, i as u8));
        let id = app.upload(user, &format!("f{i}.zip"), bytes.clone()).await;
        files.push((id, bytes));
    }
    for (id, _) in &files {
        assert_eq!(app.wait_until_settled(user, id).await["status"], "ready");
    }
    files
}

async fn all_download_identical(app: &TestApp, user: &User, files: &[(String, Vec<u8>)]) {
    let downloads = files.iter().map(|(id, bytes)| async move {
        let body = app.download(user, id).await.bytes().await.expect("body");
        assert!(body[..] == bytes[..], "file {id} reads back identical");
    });
    futures::future::join_all(downloads).await;
}

async fn rotating_twice_with_files_present(topology: Topology) {
    let app = TestApp::spawn_with(topology, &settings(&[]), Roles::ALL).await;
    let admin = admin(&app).await;
    let user = app.user().await;
    let files = upload_ready(&app, &user, 25).await;

    let before = versions(&app, &admin).await;
    assert_eq!(before.len(), 1);
    assert_eq!(
        (
            before[0]["version"].clone(),
            before[0]["state"].clone(),
            before[0]["wrapped_keys"].clone()
        ),
        (json!(1), json!("active"), json!(25))
    );

    let started = rotate(&app, &admin).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let started: Value = started.json().await.expect("json");
    assert_eq!(
        (
            started["from"].clone(),
            started["to"].clone(),
            started["total"].clone()
        ),
        (json!(1), json!(2), json!(25))
    );
    // Downloads and uploads keep working while it runs.
    all_download_identical(&app, &user, &files).await;
    let during = upload_ready(&app, &user, 1).await;
    let done = wait_rotation_finished(&app, &admin).await;
    assert_eq!(done["done"], done["total"]);

    let after = versions(&app, &admin).await;
    let state = |v: i64| {
        after
            .iter()
            .find(|x| x["version"] == v)
            .map(|x| (x["state"].clone(), x["wrapped_keys"].clone()))
    };
    assert_eq!(state(1), Some((json!("retired"), json!(0))));
    assert_eq!(state(2), Some((json!("active"), json!(26))));
    all_download_identical(&app, &user, &files).await;
    all_download_identical(&app, &user, &during).await;

    // And again, at once.
    assert_eq!(rotate(&app, &admin).await.status(), StatusCode::ACCEPTED);
    let second = wait_rotation_finished(&app, &admin).await;
    assert_eq!(
        (second["from"].clone(), second["to"].clone()),
        (json!(2), json!(3))
    );
    all_download_identical(&app, &user, &files).await;
    let last = versions(&app, &admin).await;
    assert_eq!(last.iter().filter(|v| v["state"] == "retired").count(), 2);

    let actions: Vec<String> = app
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    for action in ["key.rotation_started", "key.rewrapped", "key.retired"] {
        assert!(actions.iter().any(|a| a == action), "{action} missing");
    }
    if topology == Topology::Embedded {
        let keyring =
            std::fs::read_to_string(app.env.data.path().join("keyring")).expect("keyring");
        assert_eq!(
            keyring
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("audit:"))
                .count(),
            3,
            "Coffer generated versions 2 and 3"
        );
    }
    app.stop().await;
}

async fn an_interrupted_rotation_resumes_and_a_second_rotate_is_refused(topology: Topology) {
    // API only: the rewrap job waits in the queue, so the rotation stays running.
    let mut app = TestApp::spawn_with(topology, &settings(&[]), Roles::API).await;
    let admin = admin(&app).await;
    let user = app.user().await;
    let mut files = Vec::new();
    for i in 0..30 {
        let id = app
            .upload(
                &user,
                &format!("q{i}.txt"),
                format!("quarantined {i}").into_bytes(),
            )
            .await;
        files.push(id);
    }
    // Finish these by hand so that most keys are data keys, some still quarantine keys.
    for id in &files[..20] {
        let file_id = uuid::Uuid::parse_str(id).expect("uuid");
        coffer::coffer_core::jobs::validate::validate(app.core(), file_id)
            .await
            .expect("validate");
        coffer::coffer_core::jobs::encrypt::encrypt(app.core(), file_id)
            .await
            .expect("encrypt");
    }
    // The API alone is given the keyring (it generates none): the operator adds version 2.
    app.env.add_master_key();
    let started: Value = rotate(&app, &admin).await.json().await.expect("json");
    assert_eq!(started["total"], 30);
    problem(rotate(&app, &admin).await, StatusCode::CONFLICT).await;

    // A worker rewraps one small batch, then "dies".
    let rotation_id = uuid::Uuid::parse_str(started["id"].as_str().expect("id")).expect("uuid");
    let batch = rewrap::rewrap_batch_of(app.core(), rotation_id, 10, None)
        .await
        .expect("batch");
    assert!(matches!(batch, rewrap::Batch::More(Some(_))), "{batch:?}");
    let partial: Value = app
        .get("/api/v1/admin/keys/rotation", &admin.token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (partial["done"].clone(), partial["state"].clone()),
        (json!(10), json!("running"))
    );

    // A new worker picks the queued job up and finishes from there.
    app.start_workers().await;
    let done = wait_rotation_finished(&app, &admin).await;
    // Quarantined files encrypted meanwhile get their new key under version 2 from their own
    // job, so the rotation may rewrap fewer than its starting estimate; none is left behind.
    let rewrapped = done["done"].as_i64().expect("done");
    assert!((20..=30).contains(&rewrapped), "{done}");
    for id in &files {
        assert_eq!(app.wait_until_settled(&user, id).await["status"], "ready");
    }
    let keys_now = versions(&app, &admin).await;
    assert!(
        keys_now
            .iter()
            .any(|v| v["version"] == 1 && v["state"] == "retired"),
        "{keys_now:?}"
    );
    for (i, id) in files.iter().enumerate() {
        let body = app.download(&user, id).await.bytes().await.expect("body");
        assert_eq!(body.as_ref(), format!("quarantined {i}").as_bytes());
    }
    app.stop().await;
}

async fn operator_keys_rotate_and_retired_material_can_be_removed(topology: Topology) {
    let audit = &*crate::common::AUDIT_KEY_LINE;
    let v1 = format!("1:{}", SecretKey::generate().to_base64());
    let v2 = format!("2:{}", SecretKey::generate().to_base64());
    let v1_keyring = format!("{v1},{audit}");
    let only_v1 = settings(&[("COFFER_MASTER_KEYS", &v1_keyring)]);
    let app = TestApp::spawn_with(topology, &only_v1, Roles::ALL).await;
    let admin_user = admin(&app).await;
    let user = app.user().await;
    let files = upload_ready(&app, &user, 5).await;
    let refused = problem(rotate(&app, &admin_user).await, StatusCode::CONFLICT).await;
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("coffer keys generate")),
        "{refused}"
    );

    // The operator adds version 2 to every process and restarts; then rotates.
    let restart = |keys: String| {
        let mut vars = app.env.vars.clone();
        vars.retain(|(k, _)| k != "COFFER_MASTER_KEYS");
        vars.push(("COFFER_MASTER_KEYS".into(), keys));
        coffer::coffer_core::Config::from_vars(vars).expect("config")
    };
    for running in &app.running {
        running.stopper().cancel();
    }
    let both = coffer::start(restart(format!("{v1},{v2},{audit}")), Roles::ALL)
        .await
        .expect("restart with v1,v2");
    let base = format!("http://{}", both.addr.expect("addr"));
    let http = &app.http;
    let started = http
        .post(format!("{base}/api/v1/admin/keys/rotate"))
        .bearer_auth(&admin_user.token)
        .send()
        .await
        .expect("rotate");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    eventually(
        "the rotation finishing",
        Duration::from_secs(60),
        || async {
            let rotation: Value = http
                .get(format!("{base}/api/v1/admin/keys/rotation"))
                .bearer_auth(&admin_user.token)
                .send()
                .await
                .expect("r")
                .json()
                .await
                .expect("json");
            if rotation["state"] == "finished" {
                Ok(())
            } else {
                Err(rotation.to_string())
            }
        },
    )
    .await;
    both.stop().await.expect("stop");

    // Version 1 is retired: its material can go, and every file still decrypts.
    let only_v2 = coffer::start(restart(format!("{v2},{audit}")), Roles::ALL)
        .await
        .expect("restart with v2 only");
    let base = format!("http://{}", only_v2.addr.expect("addr"));
    for (id, bytes) in &files {
        let body = http
            .get(format!("{base}/api/v1/files/{id}/content"))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("d");
        assert_eq!(body.status(), StatusCode::OK);
        assert!(body.bytes().await.expect("body")[..] == bytes[..]);
    }
    only_v2.stop().await.expect("stop");
    app.stop().await;
}

async fn admin_routes_need_an_admin(topology: Topology) {
    let app = TestApp::spawn_with(topology, &settings(&[]), Roles::ALL).await;
    let user = app.user().await;
    for (method, path) in [
        ("GET", "/api/v1/admin/keys"),
        ("POST", "/api/v1/admin/keys/rotate"),
        ("GET", "/api/v1/admin/keys/rotation"),
    ] {
        let request = |token: Option<&str>| {
            let mut req = app
                .http
                .request(method.parse().expect("method"), app.url(path));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            req.send()
        };
        problem(
            request(None).await.expect("request"),
            StatusCode::UNAUTHORIZED,
        )
        .await;
        problem(
            request(Some(&user.token)).await.expect("request"),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    let admin = admin(&app).await;
    problem(
        app.get("/api/v1/admin/keys/rotation", &admin.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(versions(&app, &admin).await.len(), 1);
    app.stop().await;
}

async fn deleting_a_file_leaves_no_key_that_opens_a_restored_blob(topology: Topology) {
    use sea_orm::EntityTrait as _;
    let app = TestApp::spawn(topology).await;
    let user = app.user().await;
    let secret = b"shred me: account 12345678".to_vec();
    let id = app.upload(&user, "shred.txt", secret.clone()).await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    let (object, backup) = app.blob(&id).await;
    let file_id = uuid::Uuid::parse_str(&id).expect("uuid");
    let before = entity::file::Entity::find_by_id(file_id)
        .one(app.core().db())
        .await
        .expect("q")
        .expect("row");

    let deleted = app
        .http
        .delete(app.url(&format!("/api/v1/files/{id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    // A backup of the blob store is restored...
    app.put_object(&object, backup.clone()).await;
    // ...but the wrapped data key is gone from the database, and the master keys alone open nothing.
    let after = entity::file::Entity::find_by_id(file_id)
        .one(app.core().db())
        .await
        .expect("q")
        .expect("row");
    assert!(after.dek.is_none() && after.dek_kek_version.is_none());
    assert!(!backup.windows(secret.len()).any(|w| w == secret.as_slice()));
    let wrapped = coffer::coffer_core::crypto::WrappedKey {
        kek_version: before.dek_kek_version.expect("version"),
        bytes: before.dek.expect("dek"),
    };
    // Only the old row's wrapped key (which a database backup would hold) could open it: that is
    // what deleting destroys. Without it, nothing in Coffer's keyring applies to the blob.
    assert!(
        app.core().keys.unwrap(file_id, &wrapped).is_ok(),
        "sanity: the pre-delete wrap was valid"
    );
    problem(app.download(&user, &id).await, StatusCode::NOT_FOUND).await;
    app.stop().await;
}

both_topologies!(
    rotating_twice_with_files_present,
    an_interrupted_rotation_resumes_and_a_second_rotate_is_refused,
    operator_keys_rotate_and_retired_material_can_be_removed,
    admin_routes_need_an_admin,
    deleting_a_file_leaves_no_key_that_opens_a_restored_blob,
);
