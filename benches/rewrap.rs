//! Rewrap throughput for master-key rotation: 100,000 data keys on SQLite and, when reachable,
//! on PostgreSQL. Run with `cargo bench --bench rewrap`; figures go into BENCHMARKS.md.

use std::time::Instant;

#[path = "../tests/common/seed.rs"]
mod seed;

use coffer::coffer_core::audit::Actor;
use coffer::coffer_core::services::keys;
use coffer::coffer_core::{Config, Core};
use sea_orm::ConnectionTrait as _;

const KEYS: usize = 100_000;

async fn measure(label: &str, vars: Vec<(String, String)>) -> f64 {
    let config = Config::from_vars(vars).expect("config");
    let core = Core::build(config, true).await.expect("core");
    seed::ready_files(&core, KEYS, 1).await;
    let started = Instant::now();
    let rotation = keys::rotate(&core, Actor::System, &Default::default())
        .await
        .expect("rotate");
    keys::run_rotation(&core, rotation.id)
        .await
        .expect("rewrap");
    let elapsed = started.elapsed().as_secs_f64();
    let done = keys::progress(&core)
        .await
        .expect("progress")
        .expect("rotation");
    assert_eq!(done.done as usize, KEYS);
    let rate = KEYS as f64 / elapsed;
    println!("{label}: rewrapped {KEYS} DEKs in {elapsed:.2} s = {rate:.0} DEKs/s");
    rate
}

#[tokio::main]
async fn main() {
    let data = tempfile::tempdir().expect("tempdir");
    let base = vec![
        (
            "COFFER_DATA_DIR".to_owned(),
            data.path().display().to_string(),
        ),
        ("COFFER_LOG".to_owned(), "warn".to_owned()),
    ];
    measure("SQLite", base.clone()).await;

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
            let vars = vec![
                (
                    "COFFER_DATA_DIR".to_owned(),
                    pg_data.path().display().to_string(),
                ),
                (
                    "COFFER_DATABASE_URL".to_owned(),
                    format!("{admin_url}/{name}"),
                ),
            ];
            measure("PostgreSQL", vars).await;
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
        Err(err) => println!("PostgreSQL: skipped ({err})"),
    }
}
