//! Database-bound work: rewrapping data keys in a master-key rotation, and verifying the audit
//! chain, in-process on SQLite and on PostgreSQL.

use std::time::Instant;

use coffer::coffer_core::jobs::rewrap;
use coffer::coffer_core::services::{audit, rotation};
// A scratch store of the harness's own: its keyring is generated in its scratch data dir.
use coffer::coffer_core::{Config, Core, KeyringUse};
use sea_orm::{ConnectionTrait as _, EntityTrait as _};

use super::common::{pg_admin_url, seed};
use super::stack::{database_url, scratch_dir};

pub struct StoreRun {
    pub what: &'static str,
    pub database: &'static str,
    pub count: u64,
    pub seconds: f64,
}

impl StoreRun {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.seconds
    }

    pub fn line(&self) -> String {
        format!(
            "{} on {}: {} in {:.2} s = {:.0}/s",
            self.what,
            self.database,
            self.count,
            self.seconds,
            self.per_second()
        )
    }
}

/// A core on a fresh SQLite data dir, then on a fresh PostgreSQL database, for `run`.
async fn on_both<F, Fut>(run: F) -> Vec<StoreRun>
where
    F: Fn(Core, &'static str) -> Fut,
    Fut: Future<Output = StoreRun>,
{
    let mut runs = Vec::new();
    let data = scratch_dir();
    let vars = vec![
        (
            "COFFER_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        ("COFFER_LOG".to_owned(), "warn".to_owned()),
    ];
    let core = Core::build_with(
        Config::from_vars(vars.clone()).expect("config"),
        true,
        KeyringUse::MayGenerate,
    )
    .await
    .expect("core");
    runs.push(run(core, "SQLite").await);

    let admin = sea_orm::Database::connect(format!("{}/postgres", pg_admin_url()))
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (COFFER_TEST_POSTGRES)");
    let name = format!("coffer_bench_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create db");
    let pg_data = scratch_dir();
    let vars = vec![
        (
            "COFFER_DATA_DIR".to_owned(),
            pg_data.path().display().to_string(),
        ),
        ("COFFER_DATABASE_URL".to_owned(), database_url(&name)),
    ];
    let core = Core::build_with(
        Config::from_vars(vars).expect("config"),
        true,
        KeyringUse::MayGenerate,
    )
    .await
    .expect("core");
    runs.push(run(core.clone(), "PostgreSQL").await);
    drop(core);
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    runs
}

/// Seeds `count` ready files with data keys under version 1, then times a full rotation to
/// version 2 (`rotation::rotate` + `rewrap::run`, batches of `COFFER_REWRAP_BATCH`).
pub async fn rewrap(count: usize) -> Vec<StoreRun> {
    on_both(|core, database| async move {
        seed::ready_files(&core, count, 1).await;
        let started = Instant::now();
        let rotation = rotation::rotate(
            &core,
            coffer::coffer_core::principal::Operator::Console,
            &Default::default(),
        )
        .await
        .expect("rotate");
        rewrap::run(&core, rotation.id).await.expect("rewrap");
        let seconds = started.elapsed().as_secs_f64();
        let done = rotation::progress(&core, coffer::coffer_core::principal::Operator::Console)
            .await
            .expect("progress")
            .expect("rotation");
        assert_eq!(done.done as usize, count, "every key was rewrapped");
        StoreRun {
            what: "rewrap DEKs",
            database,
            count: count as u64,
            seconds,
        }
    })
    .await
}

/// Inserts a valid sealed chain of `events` events (computed here), then times `audit::verify`:
/// the chain as Coffer writes it now (each event with its MAC), and, for the MAC's cost in the
/// same run, a chain in the encoding of events written before MACs existed.
pub async fn verify(events: i64) -> Vec<StoreRun> {
    let mut runs = verify_chain(events, true, "verify audit events").await;
    runs.extend(verify_chain(events, false, "verify audit events without MACs (v1)").await);
    runs
}

async fn verify_chain(events: i64, macs: bool, what: &'static str) -> Vec<StoreRun> {
    on_both(|core, database| async move {
        seed_chain(&core, events, macs).await;
        let started = Instant::now();
        let report = audit::verify(&core, coffer::coffer_core::principal::Operator::Console)
            .await
            .expect("verify");
        let seconds = started.elapsed().as_secs_f64();
        assert!(report.ok && report.checked == events as u64, "{report:?}");
        StoreRun {
            what,
            database,
            count: events as u64,
            seconds,
        }
    })
    .await
}

/// Events as Coffer writes them now, each with its MAC under the audit key (or, without
/// `macs`, as events written before MACs existed).
async fn seed_chain(core: &Core, events: i64, macs: bool) {
    let ring = core.keys.ring();
    let key = ring.newest_audit_key().expect("an audit key");
    let mut previous = audit::GENESIS.to_vec();
    let now = chrono::Utc::now();
    let mut seq = 0i64;
    while seq < events {
        let mut rows = Vec::with_capacity(1000);
        for _ in 0..1000.min(events - seq) {
            seq += 1;
            let mut event = entity::audit_event::Model {
                id: uuid::Uuid::now_v7(),
                occurred_at: now,
                actor_kind: "user".into(),
                actor_id: Some(uuid::Uuid::now_v7().to_string()),
                ip: Some("127.0.0.1".into()),
                user_agent: Some("bench".into()),
                action: "file.downloaded".into(),
                target_kind: Some("file".into()),
                target_id: Some(uuid::Uuid::now_v7().to_string()),
                outcome: "success".into(),
                details: serde_json::json!({ "range": [0, seq] }),
                seq: None,
                hash: None,
                mac_version: None,
                mac: None,
            };
            if macs {
                coffer::coffer_core::audit::encoding::authenticate(&mut event, key);
            }
            let hash = audit::chain_hash(&previous, &event, seq);
            event.seq = Some(seq);
            event.hash = Some(hash.clone());
            previous = hash;
            rows.push(entity::audit_event::ActiveModel::from(event));
        }
        entity::audit_event::Entity::insert_many(rows)
            .exec(core.db())
            .await
            .expect("insert");
    }
}
