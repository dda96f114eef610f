//! The tamper-evident audit log: sealing, verification against direct tampering, the admin
//! query and the CLI check against an anchor kept outside Coffer.

use std::process::Command;
use std::time::Duration;

use crate::common::{TestApp, Topology, User, eventually, problem};
use coffer::Roles;
use coffer::coffer_core::principal::Operator::Console;
use coffer::coffer_core::services::audit;
use reqwest::StatusCode;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};
use serde_json::Value;

const ADMIN: (&str, &str) = ("audit-admin@example.org", "admin password 123");

async fn spawn(topology: Topology) -> (TestApp, User) {
    spawn_with(topology, &[]).await
}

/// A service with a bootstrap admin (and `extra` settings), and that admin signed in.
async fn spawn_with(topology: Topology, extra: &[(&str, &str)]) -> (TestApp, User) {
    let mut vars = vec![
        ("COFFER_ADMIN_EMAIL", ADMIN.0),
        ("COFFER_ADMIN_PASSWORD", ADMIN.1),
    ];
    vars.extend_from_slice(extra);
    let app = TestApp::spawn_with(topology, &vars, Roles::ALL).await;
    let login: Value = app
        .login(ADMIN.0, ADMIN.1)
        .await
        .json()
        .await
        .expect("json");
    let admin = User {
        email: ADMIN.0.to_owned(),
        token: login["token"].as_str().expect("token").to_owned(),
    };
    (app, admin)
}

async fn verify(app: &TestApp, admin: &User) -> Value {
    let response = app.get("/api/v1/admin/audit/verify", &admin.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

/// Some activity, then every event sealed (the seal job runs every second; waited for).
async fn activity_sealed(app: &TestApp, admin: &User) -> i64 {
    let user = app.user().await;
    for i in 0..3 {
        let id = app
            .upload(
                &user,
                &format!("a{i}.txt"),
                format!("audit me {i}").into_bytes(),
            )
            .await;
        app.wait_until_settled(&user, &id).await;
    }
    eventually("every event sealed", Duration::from_secs(30), || async {
        let pending = entity::audit_event::Entity::find()
            .filter(entity::audit_event::Column::Seq.is_null())
            .all(app.core().db())
            .await
            .expect("query")
            .len();
        let report = verify(app, admin).await;
        if pending == 0 && report["ok"] == true {
            return Ok(report["head_seq"].as_i64().expect("head"));
        }
        Err(format!(
            "events were not sealed in time ({pending} pending)"
        ))
    })
    .await
}

async fn row_at(app: &TestApp, seq: i64) -> entity::audit_event::Model {
    entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Seq.eq(seq))
        .one(app.core().db())
        .await
        .expect("query")
        .expect("row")
}

async fn set_details(app: &TestApp, seq: i64, details: Value) {
    entity::audit_event::Entity::update_many()
        .col_expr(entity::audit_event::Column::Details, Expr::value(details))
        .filter(entity::audit_event::Column::Seq.eq(seq))
        .exec(app.core().db())
        .await
        .expect("tamper");
}

async fn tampering_is_found_at_the_right_place(topology: Topology) {
    let (app, admin) = spawn(topology).await;
    let head = activity_sealed(&app, &admin).await;
    assert!(head >= 10, "{head}");
    // Nothing new may be sealed while we tamper: stop the workers (the seal job is one).
    for running in &app.running {
        running.stopper().cancel();
    }

    // An edited detail.
    let target = head / 2;
    let original = row_at(&app, target).await.details;
    set_details(&app, target, serde_json::json!({ "edited": true })).await;
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!((report.ok, report.first_bad_seq), (false, Some(target)));
    set_details(&app, target, original).await;
    assert!(audit::verify(app.core(), Console).await.expect("verify").ok);

    // Two rows swapped in place (each keeps its neighbour's position and hash).
    let (a, b) = (row_at(&app, 3).await, row_at(&app, 4).await);
    for (row, other) in [(&a, &b), (&b, &a)] {
        entity::audit_event::Entity::update_many()
            .col_expr(
                entity::audit_event::Column::Seq,
                Expr::value(-other.seq.expect("seq")),
            )
            .col_expr(
                entity::audit_event::Column::Hash,
                Expr::value(other.hash.clone()),
            )
            .filter(entity::audit_event::Column::Id.eq(row.id))
            .exec(app.core().db())
            .await
            .expect("swap");
    }
    for row in [&a, &b] {
        entity::audit_event::Entity::update_many()
            .col_expr(
                entity::audit_event::Column::Seq,
                Expr::col(entity::audit_event::Column::Seq).mul(-1),
            )
            .filter(entity::audit_event::Column::Id.eq(row.id))
            .exec(app.core().db())
            .await
            .expect("swap back sign");
    }
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(report.first_bad_seq, Some(3));

    // A deleted row.
    let victim = row_at(&app, head - 1).await;
    entity::audit_event::Entity::delete_by_id(victim.id)
        .exec(app.core().db())
        .await
        .expect("delete");
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(report.first_bad_seq, Some(3), "still the first break");
    app.stop().await;
}

async fn a_deleted_row_is_reported(topology: Topology) {
    let (app, admin) = spawn(topology).await;
    let head = activity_sealed(&app, &admin).await;
    for running in &app.running {
        running.stopper().cancel();
    }
    let victim = row_at(&app, head - 2).await;
    entity::audit_event::Entity::delete_by_id(victim.id)
        .exec(app.core().db())
        .await
        .expect("delete");
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(
        (report.ok, report.first_bad_seq, report.checked),
        (false, Some(head - 2), (head - 3) as u64)
    );
    app.stop().await;
}

/// Appends `count` sealed events after the current head, MACed and hashed as Coffer would.
async fn extend_chain(app: &TestApp, count: i64) -> i64 {
    let ring = app.core().keys.ring();
    let key = ring.newest_audit_key().expect("an audit key");
    let head = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Seq.is_not_null())
        .order_by_desc(entity::audit_event::Column::Seq)
        .one(app.core().db())
        .await
        .expect("head")
        .expect("a sealed event");
    let (mut seq, mut previous) = (head.seq.expect("seq"), head.hash.clone().expect("hash"));
    let last = seq + count;
    while seq < last {
        let mut rows = Vec::new();
        while seq < last && rows.len() < 1000 {
            seq += 1;
            let mut event = entity::audit_event::Model {
                id: uuid::Uuid::now_v7(),
                seq: None,
                hash: None,
                details: serde_json::json!({ "n": seq }),
                ..head.clone()
            };
            coffer::coffer_core::audit::encoding::authenticate(&mut event, key);
            previous = audit::chain_hash(&previous, &event, seq);
            (event.seq, event.hash) = (Some(seq), Some(previous.clone()));
            rows.push(entity::audit_event::ActiveModel::from(event));
        }
        entity::audit_event::Entity::insert_many(rows)
            .exec(app.core().db())
            .await
            .expect("insert");
    }
    last
}

async fn delete_seqs(app: &TestApp, seqs: std::ops::RangeInclusive<i64>) {
    entity::audit_event::Entity::delete_many()
        .filter(entity::audit_event::Column::Seq.between(*seqs.start(), *seqs.end()))
        .exec(app.core().db())
        .await
        .expect("delete");
}

/// Verification reads the chain in pages of 10,000 events, several at once: rows missing at
/// either edge of a page, a whole page missing, and the head are all found where they are.
async fn a_long_chain_is_checked_across_pages(topology: Topology) {
    let (app, admin) = spawn(topology).await;
    activity_sealed(&app, &admin).await;
    for running in &app.running {
        running.stopper().cancel();
    }
    let head = extend_chain(&app, 35_000).await;
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(
        (report.ok, report.checked, report.head_seq),
        (true, head as u64, Some(head))
    );
    // From the end backwards, so that each break is the first one when it is checked.
    for (gone, first_bad) in [
        (head..=head, None), // the head itself: a shorter chain that is still whole
        (30_001..=30_001, Some(30_001)), // a page's first row
        (20_000..=20_000, Some(20_000)), // a page's last row
        (10_001..=19_999, Some(10_001)), // (nearly) a whole page
    ] {
        delete_seqs(&app, gone.clone()).await;
        let report = audit::verify(app.core(), Console).await.expect("verify");
        assert_eq!(report.first_bad_seq, first_bad, "without {gone:?}");
        if let Some(bad) = first_bad {
            assert_eq!((report.ok, report.checked), (false, bad as u64 - 1));
        } else {
            assert_eq!((report.ok, report.head_seq), (true, Some(head - 1)));
        }
    }
    app.stop().await;
}

/// The sealer goes on while an admin verifies: events sealed during the walk, after the page
/// it read last, are the chain growing, not a gap.
async fn verifying_while_the_chain_grows_finds_no_gap(topology: Topology) {
    let (app, admin) = spawn(topology).await;
    activity_sealed(&app, &admin).await;
    for running in &app.running {
        running.stopper().cancel();
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let grow = async {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            extend_chain(&app, 5).await;
        }
    };
    let check = async {
        for round in 0..100 {
            let report = audit::verify(app.core(), Console).await.expect("verify");
            assert!(report.ok, "round {round}: {report:?}");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    tokio::join!(grow, check);
    app.stop().await;
}

async fn admins_query_the_log_with_filters_and_a_cursor(topology: Topology) {
    let (app, admin) = spawn(topology).await;
    activity_sealed(&app, &admin).await;
    let uploads: Value = app
        .get("/api/v1/admin/audit?action=file.uploaded", &admin.token)
        .await
        .json()
        .await
        .expect("json");
    let events = uploads["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(
        |e| e["action"] == "file.uploaded" && e["hash"].as_str().is_some_and(|h| h.len() == 64)
    ));
    let file = events[0]["target_id"].as_str().expect("target");
    let about_file: Value = app
        .get(
            &format!("/api/v1/admin/audit?target_id={file}"),
            &admin.token,
        )
        .await
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> = about_file["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["file.uploaded", "file.validated", "file.encrypted"]
    );

    // Paging: every event once, in chain order.
    let seen: Vec<i64> = every_page(&app, &admin, "limit=4")
        .await
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    let expected: Vec<i64> = (1..=seen.len() as i64).collect();
    assert_eq!(seen, expected);

    let user = app.user().await;
    for path in ["/api/v1/admin/audit", "/api/v1/admin/audit/verify"] {
        problem(
            app.http.get(app.url(path)).send().await.expect("request"),
            StatusCode::UNAUTHORIZED,
        )
        .await;
        problem(app.get(path, &user.token).await, StatusCode::FORBIDDEN).await;
    }
    problem(
        app.get("/api/v1/admin/audit?limit=0", &admin.token).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    app.stop().await;
}

async fn the_cli_checks_the_chain_against_an_anchor(topology: Topology) {
    let (app, admin) = spawn(topology).await;
    let head = activity_sealed(&app, &admin).await;
    let report = verify(&app, &admin).await;
    let anchor = format!("{head}:{}", report["head_hash"].as_str().expect("hash"));
    let run = |expect: &str| {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["audit", "verify", "--expect-head", expect])
            .envs(app.env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("runs")
    };
    let good = run(&anchor);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        String::from_utf8_lossy(&good.stdout).contains("anchor")
            && String::from_utf8_lossy(&good.stdout).contains("matches")
    );
    let forged = run(&format!("{head}:{}", "0".repeat(64)));
    assert!(!forged.status.success());
    assert!(String::from_utf8_lossy(&forged.stderr).contains("rewritten"));
    app.stop().await;
}

/// Every action of DESIGN §5 that Coffer performs, with the actor, target and outcome the row
/// must carry after the API call that causes it.
async fn every_action_is_recorded_with_actor_target_and_outcome(topology: Topology) {
    use crate::common::smtp::SmtpServer;
    let smtp = SmtpServer::start();
    let (app, admin) = spawn_with(topology, &[("COFFER_SMTP_URL", &smtp.url)]).await;
    let user = app.user().await;
    assert_eq!(
        app.login(&user.email, "not the password").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let kept = app.upload(&user, "kept.txt", b"kept".to_vec()).await;
    app.wait_until_settled(&user, &kept).await;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.resize(512, 0);
    let rejected = app.upload(&user, "evil.pdf", exe).await;
    app.wait_until_settled(&user, &rejected).await;
    app.download(&user, &kept)
        .await
        .bytes()
        .await
        .expect("download");

    let body = serde_json::json!({ "recipients": ["reader@example.org", "bounce@example.org"] });
    assert_eq!(
        app.post_json(
            &format!("/api/v1/files/{kept}/shares"),
            &body,
            Some(&user.token)
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    let link = smtp
        .wait_for("reader@example.org", 1)
        .await
        .remove(0)
        .link();
    app.http.get(&link).send().await.expect("view");
    app.http
        .get(format!("{link}/download"))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    let shares: Value = app
        .get(&format!("/api/v1/files/{kept}/shares"), &user.token)
        .await
        .json()
        .await
        .expect("json");
    let reader_share = shares["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .find(|s| s["recipient"] == "reader@example.org")
        .expect("share")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    eventually("the bounce recorded", Duration::from_secs(30), || async {
        if app
            .audit_actions()
            .await
            .iter()
            .any(|(a, _, _)| a == "share.email_failed")
        {
            Ok(())
        } else {
            Err("the bounce was never recorded".to_owned())
        }
    })
    .await;
    app.http
        .delete(app.url(&format!("/api/v1/shares/{reader_share}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(
        app.http.get(&link).send().await.expect("view").status(),
        StatusCode::GONE
    );

    let tampered = app
        .upload(&user, "tampered.txt", b"will be tampered".to_vec())
        .await;
    app.wait_until_settled(&user, &tampered).await;
    app.tamper_blob(&tampered, 1).await;
    app.download(&user, &tampered).await;
    app.http
        .delete(app.url(&format!("/api/v1/files/{tampered}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .expect("delete");

    assert_eq!(
        app.post_json(
            "/api/v1/admin/keys/rotate",
            &serde_json::json!({}),
            Some(&admin.token)
        )
        .await
        .status(),
        StatusCode::ACCEPTED
    );
    eventually("version 1 retired", Duration::from_secs(30), || async {
        if app
            .audit_actions()
            .await
            .iter()
            .any(|(a, _, _)| a == "key.retired")
        {
            Ok(())
        } else {
            Err("rotation did not retire version 1".to_owned())
        }
    })
    .await;
    app.get("/api/v1/admin/audit/export", &admin.token)
        .await
        .bytes()
        .await
        .expect("export");
    let promoted = app.user().await;
    let email = coffer::coffer_core::types::EmailAddress::parse(&promoted.email).expect("email");
    coffer::coffer_core::services::users::create_admin(
        app.core(),
        &email,
        "promoted admin password".to_owned().into(),
        true,
    )
    .await
    .expect("promote");
    app.post_json(
        "/api/v1/auth/logout",
        &serde_json::json!({}),
        Some(&user.token),
    )
    .await;

    let rows = entity::audit_event::Entity::find()
        .all(app.core().db())
        .await
        .expect("rows");
    // (action, actor kind, target kind, outcome)
    let expected = [
        ("user.signup", "user", Some("user"), "success"),
        ("user.login", "user", Some("user"), "success"),
        ("user.login_failed", "anonymous", Some("user"), "denied"),
        ("user.logout", "user", Some("user"), "success"),
        ("file.uploaded", "user", Some("file"), "success"),
        ("file.validated", "system", Some("file"), "success"),
        ("file.rejected", "system", Some("file"), "denied"),
        ("file.encrypted", "system", Some("file"), "success"),
        ("file.downloaded", "user", Some("file"), "success"),
        ("file.deleted", "user", Some("file"), "success"),
        ("file.integrity_failed", "user", Some("file"), "failure"),
        ("share.created", "user", Some("share"), "success"),
        ("share.emailed", "system", Some("share"), "success"),
        ("share.email_failed", "system", Some("share"), "failure"),
        ("share.viewed", "recipient", Some("share"), "success"),
        (
            "share.download_started",
            "recipient",
            Some("share"),
            "success",
        ),
        ("share.downloaded", "recipient", Some("share"), "success"),
        ("share.denied", "recipient", Some("share"), "denied"),
        ("share.revoked", "user", Some("share"), "success"),
        (
            "key.rotation_started",
            "admin",
            Some("key_rotation"),
            "success",
        ),
        ("key.rewrapped", "system", Some("key_rotation"), "success"),
        ("key.retired", "system", Some("key_version"), "success"),
        ("audit.exported", "admin", None, "success"),
        ("admin.user_changed", "system", Some("user"), "success"),
    ];
    for (action, actor, target, outcome) in expected {
        let found = rows.iter().any(|r| {
            r.action == action
                && r.actor_kind == actor
                && r.target_kind.as_deref() == target
                && r.outcome == outcome
        });
        assert!(
            found,
            "no {action} by {actor} on {target:?} with outcome {outcome}"
        );
    }
    // Recipient rows name the share they came through; user rows the user.
    assert!(
        rows.iter().any(|r| r.action == "share.downloaded"
            && r.actor_id.as_deref() == Some(reader_share.as_str()))
    );
    assert!(
        rows.iter()
            .filter(|r| r.action == "file.rejected")
            .all(|r| r.target_id.as_deref() == Some(rejected.as_str()))
    );
    app.stop().await;
}

/// Activity, then a signed checkpoint of the sealed head (written within a second with the
/// interval these tests set), and the `audit.checkpoint` event that records it sealed too;
/// then the workers stop, so that nothing moves while the test tampers. Returns the
/// checkpoint's sequence number.
async fn checkpointed(app: &TestApp, admin: &User) -> i64 {
    activity_sealed(app, admin).await;
    // The activity's last event. A checkpoint written meanwhile records an event of its own
    // after it, which no later checkpoint covers (the sealer does not checkpoint its own
    // records, or it would never stop).
    let head = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.ne("audit.checkpoint"))
        .filter(entity::audit_event::Column::Seq.is_not_null())
        .order_by_desc(entity::audit_event::Column::Seq)
        .one(app.core().db())
        .await
        .expect("query")
        .and_then(|e| e.seq)
        .expect("a sealed event");
    let checkpoint = eventually(
        "a checkpoint of the head",
        Duration::from_secs(30),
        || async {
            let report = audit::verify(app.core(), Console).await.expect("verify");
            if let Some(checkpoint) = report.checkpoint.as_ref().filter(|c| c.seq >= head)
                && report.head_seq > Some(checkpoint.seq)
            {
                assert!(report.ok, "{report:?}");
                return Ok(checkpoint.seq);
            }
            Err(format!("no checkpoint of the head: {report:?}"))
        },
    )
    .await;
    for running in &app.running {
        running.stopper().cancel();
    }
    checkpoint
}

const CHECKPOINT_EVERY_SECOND: (&str, &str) = ("COFFER_AUDIT_CHECKPOINT_INTERVAL", "1s");

async fn delete_after(app: &TestApp, seq: i64) {
    entity::audit_event::Entity::delete_many()
        .filter(entity::audit_event::Column::Seq.gt(seq))
        .exec(app.core().db())
        .await
        .expect("delete");
}

/// `DELETE FROM audit_events WHERE seq > N` leaves a chain that is whole but shorter than
/// the signed checkpoint the database recorded writing: reported as a cut, naming both ends.
async fn a_cut_tail_is_found_against_the_signed_checkpoint(topology: Topology) {
    let (app, admin) = spawn_with(topology, &[CHECKPOINT_EVERY_SECOND]).await;
    let checkpoint = checkpointed(&app, &admin).await;
    delete_after(&app, checkpoint - 3).await;
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(
        (report.ok, report.first_bad_seq, report.head_seq),
        (false, None, Some(checkpoint - 3))
    );
    assert_eq!(
        report.findings,
        vec![audit::Finding::Truncated {
            head_seq: Some(checkpoint - 3),
            checkpoint_seq: checkpoint,
        }]
    );
    app.stop().await;
}

/// The attack the review found: edit an event, then set `seq` and `hash` of it and the tail
/// after it to NULL so the sealer chains them again. The sealer checks each MAC first: it
/// seals none of them from the edited one on, says why, and verify names the forged event
/// and the cut.
async fn an_edited_event_set_back_to_pending_is_never_sealed_again(topology: Topology) {
    let (app, admin) = spawn_with(topology, &[CHECKPOINT_EVERY_SECOND]).await;
    let checkpoint = checkpointed(&app, &admin).await;
    let target = checkpoint - 1;
    let edited = row_at(&app, target).await.id;
    set_details(&app, target, serde_json::json!({ "edited": true })).await;
    entity::audit_event::Entity::update_many()
        .col_expr(
            entity::audit_event::Column::Seq,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(
            entity::audit_event::Column::Hash,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .filter(entity::audit_event::Column::Seq.gte(target))
        .exec(app.core().db())
        .await
        .expect("unseal");
    let sealed = audit::seal(app.core()).await.expect("seal");
    assert_eq!(sealed, 0, "the edited event is the first pending one");
    let alarm = app.core().audit_alarms.sealing.current().expect("an alarm");
    assert!(alarm.contains(&edited.to_string()), "{alarm}");
    assert_eq!(row_at_id(&app, edited).await.seq, None);
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert!(!report.ok);
    assert_eq!(
        report.findings,
        vec![
            audit::Finding::Truncated {
                head_seq: Some(target - 1),
                checkpoint_seq: checkpoint,
            },
            audit::Finding::PendingForged { event_id: edited },
        ]
    );
    app.stop().await;
}

/// An event inserted by someone without the audit key (no MAC, or a made-up one) is never
/// chained, and a sealed event edited in place fails its MAC where it stands.
async fn events_coffer_did_not_write_are_refused(topology: Topology) {
    let (app, admin) = spawn_with(topology, &[CHECKPOINT_EVERY_SECOND]).await;
    let checkpoint = checkpointed(&app, &admin).await;
    // An edit that keeps the chain's hashes right (recomputed from there on, as anyone can:
    // the hash chain has no key) is still found: the MAC does not match.
    let template = row_at(&app, 2).await;
    let previous = row_at(&app, 1).await.hash.expect("hash");
    let edited = entity::audit_event::Model {
        details: serde_json::json!({ "rewritten": true }),
        ..template
    };
    let rehashed = audit::chain_hash(&previous, &edited, 2);
    entity::audit_event::Entity::update_many()
        .col_expr(
            entity::audit_event::Column::Details,
            Expr::value(edited.details.clone()),
        )
        .col_expr(entity::audit_event::Column::Hash, Expr::value(rehashed))
        .filter(entity::audit_event::Column::Id.eq(edited.id))
        .exec(app.core().db())
        .await
        .expect("rewrite");
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(
        report.findings.first(),
        Some(&audit::Finding::Altered { seq: 2 })
    );
    assert_eq!(report.first_bad_seq, Some(2));

    // A pending event with no MAC, and one with a MAC under nobody's key.
    let forged = |mac_version, mac| entity::audit_event::Model {
        id: uuid::Uuid::now_v7(),
        seq: None,
        hash: None,
        mac_version,
        mac,
        action: "user.login".into(),
        ..template_row()
    };
    for row in [forged(None, None), forged(Some(1), Some(vec![0; 32]))] {
        let id = row.id;
        entity::audit_event::Entity::insert(entity::audit_event::ActiveModel::from(row))
            .exec(app.core().db())
            .await
            .expect("insert");
        assert_eq!(audit::seal(app.core()).await.expect("seal"), 0);
        let report = audit::verify(app.core(), Console).await.expect("verify");
        assert!(
            report
                .findings
                .contains(&audit::Finding::PendingForged { event_id: id }),
            "{report:?}"
        );
        entity::audit_event::Entity::delete_by_id(id)
            .exec(app.core().db())
            .await
            .expect("remove");
    }
    assert!(checkpoint > 2);
    app.stop().await;
}

fn template_row() -> entity::audit_event::Model {
    entity::audit_event::Model {
        id: uuid::Uuid::now_v7(),
        occurred_at: chrono::Utc::now(),
        actor_kind: "system".into(),
        actor_id: None,
        ip: None,
        user_agent: None,
        action: "file.deleted".into(),
        target_kind: None,
        target_id: None,
        outcome: "success".into(),
        details: serde_json::json!({}),
        seq: None,
        hash: None,
        mac_version: None,
        mac: None,
    }
}

async fn row_at_id(app: &TestApp, id: uuid::Uuid) -> entity::audit_event::Model {
    entity::audit_event::Entity::find_by_id(id)
        .one(app.core().db())
        .await
        .expect("query")
        .expect("row")
}

/// A database that ends before the newest checkpoint and does not know it wrote that
/// checkpoint is what a restore from an older backup leaves: told apart from a cut. The
/// sealer then writes no checkpoint over the newer one, and says why.
async fn a_database_older_than_the_newest_checkpoint_is_told_apart(topology: Topology) {
    let (app, admin) = spawn_with(topology, &[CHECKPOINT_EVERY_SECOND]).await;
    let checkpoint = checkpointed(&app, &admin).await;
    let latest = app
        .core()
        .storage
        .read_raw(&"audit/checkpoints/latest.json".into())
        .await
        .expect("latest checkpoint");
    // The backup was taken before the checkpoint: neither its events nor its record.
    delete_after(&app, checkpoint - 3).await;
    entity::audit_checkpoint::Entity::delete_many()
        .exec(app.core().db())
        .await
        .expect("forget checkpoints");
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert!(
        matches!(
            report.findings[0],
            audit::Finding::RestoredFromBackup { head_seq: Some(h), checkpoint_seq: c, .. }
                if h == checkpoint - 3 && c == checkpoint
        ),
        "{report:?}"
    );

    // The restored service goes on: its new events are sealed, but no checkpoint replaces
    // the newer one.
    app.core()
        .audit
        .record(coffer::coffer_core::audit::Event::new(
            coffer::coffer_core::audit::Action::AdminUserChanged,
            coffer::coffer_core::audit::Actor::System,
        ))
        .await
        .expect("record");
    // On SQLite the writer sealed it as it committed it; elsewhere this pass does.
    audit::seal(app.core()).await.expect("seal");
    let newest = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq("admin.user_changed"))
        .order_by_desc(entity::audit_event::Column::Id)
        .one(app.core().db())
        .await
        .expect("query")
        .expect("the new event");
    assert!(newest.seq.is_some(), "the new event is sealed");
    let alarm = eventually("the checkpoint alarm", Duration::from_secs(30), || async {
        audit::seal(app.core()).await.expect("seal");
        app.core()
            .audit_alarms
            .checkpoints
            .current()
            .ok_or_else(|| "not raised".to_owned())
    })
    .await;
    assert!(alarm.contains("restored from an older backup"), "{alarm}");
    let still = app
        .core()
        .storage
        .read_raw(&"audit/checkpoints/latest.json".into())
        .await
        .expect("latest checkpoint");
    assert_eq!(still, latest);
    app.stop().await;
}

/// Checkpoints deleted from the blob store, or replaced by ones the audit key did not sign,
/// are reported as such.
async fn missing_and_forged_checkpoints_are_reported(topology: Topology) {
    let (app, admin) = spawn_with(topology, &[CHECKPOINT_EVERY_SECOND]).await;
    let checkpoint = checkpointed(&app, &admin).await;
    let storage = &app.core().storage;
    let latest: object_store::path::Path = "audit/checkpoints/latest.json".into();
    let named: object_store::path::Path = format!("audit/checkpoints/{checkpoint:020}.json").into();
    let genuine = storage.read_raw(&latest).await.expect("latest");

    let mut altered: Value = serde_json::from_slice(&genuine).expect("json");
    altered["seq"] = serde_json::json!(checkpoint + 100);
    storage
        .write_raw(&latest, serde_json::to_vec(&altered).expect("json").into())
        .await
        .expect("forge");
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(
        report.findings,
        vec![audit::Finding::CheckpointForged {
            checkpoint_seq: Some(checkpoint + 100)
        }]
    );
    // The genuine checkpoint the chain names still checks the chain.
    assert_eq!(report.checkpoint.map(|c| c.seq), Some(checkpoint));

    storage.delete(&latest).await.expect("delete");
    storage.delete(&named).await.expect("delete");
    let report = audit::verify(app.core(), Console).await.expect("verify");
    assert_eq!(
        report.findings,
        vec![audit::Finding::CheckpointMissing {
            checkpoint_seq: checkpoint
        }]
    );
    app.stop().await;
}

/// Anyone with the published public key checks a checkpoint with their own Ed25519 code:
/// here Python's `cryptography`, given only the API's public key and the stored object.
async fn a_checkpoint_checks_out_with_an_independent_ed25519(topology: Topology) {
    let (app, admin) = spawn_with(topology, &[CHECKPOINT_EVERY_SECOND]).await;
    let keys: Value = app
        .http
        .get(app.url("/api/v1/audit/public-key"))
        .send()
        .await
        .expect("public key")
        .json()
        .await
        .expect("json");
    checkpointed(&app, &admin).await;
    let stored = app
        .core()
        .storage
        .read_raw(&"audit/checkpoints/latest.json".into())
        .await
        .expect("latest");
    let checkpoint: Value = serde_json::from_slice(&stored).expect("json");
    let public = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["version"] == checkpoint["key_version"])
        .expect("the signing version is published")["public_key"]
        .as_str()
        .expect("hex")
        .to_owned();
    let script = r#"
import json, sys
from datetime import datetime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
c = json.loads(sys.argv[2])
at = datetime.fromisoformat(c["at"].replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
message = f"coffer audit checkpoint v1\n{c['seq']}\n{c['hash']}\n{at}\n{c['key_version']}\n"
key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sys.argv[1]))
for text in (message, message.replace(str(c['seq']), str(c['seq'] + 1), 1)):
    try:
        key.verify(bytes.fromhex(c["signature"]), text.encode())
        print("valid")
    except Exception:
        print("invalid")
"#;
    let output = Command::new("python3")
        .args(["-c", script, &public, &checkpoint.to_string()])
        .output()
        .expect("python3 runs (with the cryptography package, which moto brings)");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "valid\ninvalid\n");
    app.stop().await;
}

/// Every event the admin's query `query` lists, page after page by its cursor.
async fn every_page(app: &TestApp, admin: &User, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(
                &format!("/api/v1/admin/audit?{query}{cursor}"),
                &admin.token,
            )
            .await
            .json()
            .await
            .expect("json");
        events.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_cursor"].as_i64() {
            Some(next) => cursor = format!("&after_seq={next}"),
            None => return events,
        }
    }
}

/// An event sealed after later ones (its transaction committed late) comes in time order when
/// the query names a time range, and paging by cursor still yields each matching event once.
async fn a_time_filtered_query_pages_in_time_order(topology: Topology) {
    use chrono::SubsecRound as _;
    use coffer::coffer_core::audit::{Action, Actor, Event};
    let (app, admin) = spawn(topology).await;
    // Stored times have microseconds.
    let since = chrono::Utc::now().trunc_subsecs(6);
    // The row of an event whose transaction is still open: made now, written later.
    let late = app
        .core()
        .audit
        .row(Event::new(Action::AdminSettingsChanged, Actor::System))
        .expect("row");
    for _ in 0..3 {
        assert_eq!(app.login(ADMIN.0, ADMIN.1).await.status(), StatusCode::OK);
    }
    audit::seal(app.core()).await.expect("seal");
    entity::audit_event::Entity::insert(late)
        .exec(app.core().db())
        .await
        .expect("the late event");
    audit::seal(app.core()).await.expect("seal");

    let since_param = crate::common::percent_encode(&since.to_rfc3339());
    let seen: Vec<(i64, String, String)> =
        every_page(&app, &admin, &format!("since={since_param}&limit=1"))
            .await
            .iter()
            .map(|e| {
                (
                    e["seq"].as_i64().expect("seq"),
                    e["occurred_at"].as_str().expect("time").to_owned(),
                    e["action"].as_str().expect("action").to_owned(),
                )
            })
            .collect();
    let times: Vec<chrono::DateTime<chrono::Utc>> = seen
        .iter()
        .map(|(_, t, _)| t.parse().expect("RFC 3339"))
        .collect();
    assert!(times.is_sorted(), "time order: {seen:?}");
    let first_login = seen.iter().position(|(_, _, a)| a == "user.login");
    let late_at = seen
        .iter()
        .position(|(_, _, a)| a == "admin.settings_changed");
    let (Some(first_login), Some(late_at)) = (first_login, late_at) else {
        panic!("both kinds of event are listed: {seen:?}");
    };
    assert!(
        late_at < first_login,
        "the late event comes first: {seen:?}"
    );
    assert!(
        seen[late_at].0 > seen[first_login].0,
        "though it was sealed after: {seen:?}"
    );

    // The same events as the chain holds them, each once.
    let mut by_chain: Vec<i64> = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Seq.is_not_null())
        .filter(entity::audit_event::Column::OccurredAt.gte(since))
        .all(app.core().db())
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| e.seq)
        .collect();
    by_chain.sort_unstable();
    let mut listed: Vec<i64> = seen.iter().map(|(seq, _, _)| *seq).collect();
    listed.sort_unstable();
    assert_eq!(listed, by_chain);
    app.stop().await;
}

/// The owner's download events of `id`, oldest first.
async fn downloads_of(app: &TestApp, id: &str) -> Vec<entity::audit_event::Model> {
    entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq("file.downloaded"))
        .filter(entity::audit_event::Column::TargetId.eq(id))
        .order_by_asc(entity::audit_event::Column::Id)
        .all(app.core().db())
        .await
        .expect("query")
}

/// On SQLite the audit writer links the events it commits into the chain in the same commit
/// (`core/src/audit/link.rs`): each of twenty downloads' events is sealed by the time its
/// download is answered (the sealer, every 200 ms, would have left most of them pending), and
/// the chain verifies. An event pending ahead of them (here one Coffer did not write, which the
/// sealer refuses) is never chained past: the writer then leaves its events pending behind it,
/// and they are sealed by the sealer once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_writer_links_its_events_unless_one_waits_ahead() {
    let (app, admin) = spawn(Topology::Embedded).await;
    let user = app.user().await;
    let id = app.upload(&user, "linked.txt", b"linked".to_vec()).await;
    app.wait_until_settled(&user, &id).await;
    // Nothing pending from here on.
    activity_sealed(&app, &admin).await;
    for n in 1..=20 {
        assert_eq!(app.download(&user, &id).await.status(), StatusCode::OK);
        let events = downloads_of(&app, &id).await;
        assert_eq!(events.len(), n);
        let last = events.last().expect("the download's event");
        assert!(
            last.seq.is_some(),
            "download {n}'s event was answered unsealed"
        );
    }
    let report = verify(&app, &admin).await;
    assert_eq!(report["ok"], true, "{report}");

    let forged = entity::audit_event::Model {
        id: uuid::Uuid::now_v7(),
        ..template_row()
    };
    entity::audit_event::Entity::insert(entity::audit_event::ActiveModel::from(forged.clone()))
        .exec(app.core().db())
        .await
        .expect("insert");
    assert_eq!(app.download(&user, &id).await.status(), StatusCode::OK);
    let behind = downloads_of(&app, &id).await.pop().expect("the event");
    assert_eq!(behind.seq, None, "chained past a pending event");
    // The sealer stops before the forged event, and so never reaches the download's.
    audit::seal(app.core()).await.expect("seal");
    assert_eq!(row_at_id(&app, behind.id).await.seq, None);

    entity::audit_event::Entity::delete_by_id(forged.id)
        .exec(app.core().db())
        .await
        .expect("remove");
    eventually(
        "the waiting event sealed",
        Duration::from_secs(30),
        || async {
            match row_at_id(&app, behind.id).await.seq {
                Some(seq) => Ok(seq),
                None => Err("still pending".to_owned()),
            }
        },
    )
    .await;
    let report = verify(&app, &admin).await;
    assert_eq!(report["ok"], true, "{report}");
    app.stop().await;
}

/// Downloads that arrive together are recorded together, in the audit writer's batches: each
/// request is still answered only once its own event is committed, none is lost or recorded
/// twice, and the chain verifies. The owner's downloads (events alone) and a link's (each with
/// its download counted) are mixed.
async fn downloads_at_once_are_each_recorded_before_their_answer(topology: Topology) {
    const OWNER: usize = 48;
    const LINK: usize = 16;
    let (app, admin) = spawn(topology).await;
    let user = app.user().await;
    let id = app.upload(&user, "often.txt", b"often".to_vec()).await;
    app.wait_until_settled(&user, &id).await;
    let created = app
        .post_json(
            &format!("/api/v1/files/{id}/shares"),
            &serde_json::json!({ "expires_in_hours": 1 }),
            Some(&user.token),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.expect("json");
    let link = body["shares"][0]["url"]
        .as_str()
        .expect("a link")
        .to_owned();
    let share = body["shares"][0]["id"].as_str().expect("id").to_owned();

    let owner = (0..OWNER).map(|_| {
        let app = &app;
        let (user, id) = (&user, &id);
        async move { app.download(user, id).await.status() }
    });
    let recipients = (0..LINK).map(|_| {
        let (http, link) = (&app.http, &link);
        async move {
            let response = http
                .get(format!("{link}/download"))
                .send()
                .await
                .expect("get");
            let status = response.status();
            // Read to the end: the download's end is recorded with its last byte.
            assert_eq!(response.bytes().await.expect("body").as_ref(), b"often");
            status
        }
    });
    let (owner, recipients) = tokio::join!(
        futures::future::join_all(owner),
        futures::future::join_all(recipients)
    );
    assert!(
        owner
            .iter()
            .chain(&recipients)
            .all(|s| *s == StatusCode::OK)
    );

    // Every owner's download was answered after its event was committed: all are there now.
    let events = downloads_of(&app, &id).await;
    assert_eq!(events.len(), OWNER);
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), OWNER, "an event recorded twice");
    let started = entity::audit_event::Entity::find()
        .filter(entity::audit_event::Column::Action.eq("share.download_started"))
        .filter(entity::audit_event::Column::TargetId.eq(share.as_str()))
        .all(app.core().db())
        .await
        .expect("query");
    assert_eq!(started.len(), LINK);
    eventually(
        "every link download's end recorded",
        Duration::from_secs(30),
        || async {
            let ended = entity::audit_event::Entity::find()
                .filter(entity::audit_event::Column::Action.eq("share.downloaded"))
                .filter(entity::audit_event::Column::TargetId.eq(share.as_str()))
                .all(app.core().db())
                .await
                .expect("query")
                .len();
            if ended == LINK {
                Ok(())
            } else {
                Err(format!("{ended} of {LINK}"))
            }
        },
    )
    .await;
    let counted = entity::share_file::Entity::find()
        .all(app.core().db())
        .await
        .expect("query");
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0].downloads_used, LINK as i32);
    assert_eq!(counted[0].downloads_completed, LINK as i32);
    activity_sealed(&app, &admin).await;
    let report = verify(&app, &admin).await;
    assert_eq!(report["ok"], true, "{report}");
    app.stop().await;
}

both_topologies!(
    a_cut_tail_is_found_against_the_signed_checkpoint,
    an_edited_event_set_back_to_pending_is_never_sealed_again,
    events_coffer_did_not_write_are_refused,
    a_database_older_than_the_newest_checkpoint_is_told_apart,
    missing_and_forged_checkpoints_are_reported,
    a_checkpoint_checks_out_with_an_independent_ed25519,
    verifying_while_the_chain_grows_finds_no_gap,
    tampering_is_found_at_the_right_place,
    a_deleted_row_is_reported,
    a_long_chain_is_checked_across_pages,
    admins_query_the_log_with_filters_and_a_cursor,
    a_time_filtered_query_pages_in_time_order,
    the_cli_checks_the_chain_against_an_anchor,
    every_action_is_recorded_with_actor_target_and_outcome,
    downloads_at_once_are_each_recorded_before_their_answer,
);
