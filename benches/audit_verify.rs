//! Audit-chain verification speed over 1,000,000 sealed events, on SQLite and (when reachable)
//! PostgreSQL. Run with `cargo bench --bench audit_verify`; figures go into BENCHMARKS.md.

use std::time::Instant;

use coffer::coffer_core::services::audit;
use coffer::coffer_core::{Config, Core};
use sea_orm::{ActiveValue::Set, ConnectionTrait as _, EntityTrait as _};

const EVENTS: i64 = 1_000_000;

/// Inserts a valid sealed chain of `EVENTS` events, computed here.
async fn seed(core: &Core) {
    let mut previous = audit::GENESIS.to_vec();
    let now = chrono::Utc::now();
    let mut seq = 0i64;
    while seq < EVENTS {
        let mut rows = Vec::with_capacity(1000);
        for _ in 0..1000 {
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
            };
            let hash = audit::chain_hash(&previous, &event, seq);
            event.seq = Some(seq);
            event.hash = Some(hash.clone());
            previous = hash;
            rows.push(entity::audit_event::ActiveModel {
                id: Set(event.id),
                occurred_at: Set(event.occurred_at),
                actor_kind: Set(event.actor_kind),
                actor_id: Set(event.actor_id),
                ip: Set(event.ip),
                user_agent: Set(event.user_agent),
                action: Set(event.action),
                target_kind: Set(event.target_kind),
                target_id: Set(event.target_id),
                outcome: Set(event.outcome),
                details: Set(event.details),
                seq: Set(event.seq),
                hash: Set(event.hash),
            });
        }
        entity::audit_event::Entity::insert_many(rows)
            .exec(&core.db)
            .await
            .expect("insert");
    }
}

async fn measure(label: &str, vars: Vec<(String, String)>) {
    let core = Core::build(Config::from_vars(vars).expect("config"), true)
        .await
        .expect("core");
    seed(&core).await;
    let started = Instant::now();
    let report = audit::verify(&core.db).await.expect("verify");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(report.ok && report.checked == EVENTS as u64, "{report:?}");
    println!(
        "{label}: verified {EVENTS} events in {elapsed:.2} s = {:.0} events/s",
        EVENTS as f64 / elapsed
    );
}

#[tokio::main]
async fn main() {
    let data = tempfile::tempdir().expect("tempdir");
    measure(
        "SQLite",
        vec![(
            "COFFER_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        )],
    )
    .await;
    let admin_url = std::env::var("COFFER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("coffer_bench_{}", uuid::Uuid::new_v4().simple());
    match sea_orm::Database::connect(format!("{admin_url}/postgres")).await {
        Ok(admin) => {
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create db");
            let pg_data = tempfile::tempdir().expect("tempdir");
            measure(
                "PostgreSQL",
                vec![
                    (
                        "COFFER_DATA_DIR".to_owned(),
                        pg_data.path().display().to_string(),
                    ),
                    (
                        "COFFER_DATABASE_URL".to_owned(),
                        format!("{admin_url}/{name}"),
                    ),
                ],
            )
            .await;
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
        Err(err) => println!("PostgreSQL: skipped ({err})"),
    }
}
