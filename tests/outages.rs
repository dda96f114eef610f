//! Outages of the services Coffer depends on: what it reports and how it recovers.

mod common;

use std::time::{Duration, Instant};

use common::{Environment, Topology};
use reqwest::StatusCode;
use serde_json::Value;

/// A Redis server of the test's own, so that it can be stopped and started again.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        Self { child, port }
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `/readyz` until it answers `status` with the given component down (or all up), and
/// checks that no answer takes long: a probe must not hang on a dead dependency.
async fn ready_until(http: &reqwest::Client, base: &str, status: StatusCode, down: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let asked = Instant::now();
        let response = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "/readyz took {:?}",
            asked.elapsed()
        );
        let code = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let body: Value = response.json().await.expect("json");
        let expected_parts = ["database", "queue", "storage"].iter().all(|part| {
            body[part]
                == if Some(*part) == down {
                    "unavailable"
                } else {
                    "ok"
                }
        });
        if code == status && expected_parts {
            assert_eq!(retry_after, status == StatusCode::SERVICE_UNAVAILABLE);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "wanted {status} with {down:?} down, got {code}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/readyz` names each dependency that is down (503 with `Retry-After`), answers quickly while
/// it is, and recovers when it returns: PostgreSQL refusing connections, Redis stopped, the
/// bucket gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432, redis-server and an S3 server at 127.0.0.1:9000"]
async fn readiness_names_each_outage_and_recovers() {
    let mut redis = PrivateRedis::start();
    redis.wait_up().await;
    let env = Environment::new(Topology::Production, &[("COFFER_REDIS_URL", &redis.url())]).await;
    let var = |name: &str| {
        env.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .expect(name)
    };
    let database = var("COFFER_DATABASE_URL")
        .rsplit('/')
        .next()
        .expect("name")
        .to_owned();
    let bucket = var("COFFER_STORAGE_URL")
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .expect("bucket")
        .to_owned();
    let running = env.start(coffer::Roles::API).await;
    let base = format!("http://{}", running.addr.expect("listens"));
    let http = reqwest::Client::new();
    ready_until(&http, &base, StatusCode::OK, None).await;

    // The bucket disappears, then comes back.
    let bucket_url = format!("{}/{bucket}", common::s3_endpoint());
    let deleted = http
        .delete(&bucket_url)
        .send()
        .await
        .expect("delete bucket");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    ready_until(
        &http,
        &base,
        StatusCode::SERVICE_UNAVAILABLE,
        Some("storage"),
    )
    .await;
    let created = http.put(&bucket_url).send().await.expect("create bucket");
    assert!(created.status().is_success());
    ready_until(&http, &base, StatusCode::OK, None).await;

    // PostgreSQL refuses the database and drops its connections, then lets them in again.
    let admin = sea_orm::Database::connect(format!("{}/postgres", common::pg_admin_url()))
        .await
        .expect("PostgreSQL");
    let sql = |statement: String| {
        let admin = admin.clone();
        async move {
            sea_orm::ConnectionTrait::execute_unprepared(&admin, &statement)
                .await
                .expect("admin statement");
        }
    };
    sql(format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false"
    ))
    .await;
    sql(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    ))
    .await;
    ready_until(
        &http,
        &base,
        StatusCode::SERVICE_UNAVAILABLE,
        Some("database"),
    )
    .await;
    sql(format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true"
    ))
    .await;
    ready_until(&http, &base, StatusCode::OK, None).await;

    // Redis stops, then starts again on the same port.
    redis.stop();
    ready_until(&http, &base, StatusCode::SERVICE_UNAVAILABLE, Some("queue")).await;
    let port = redis.port;
    let restarted = PrivateRedis::start_on(port);
    restarted.wait_up().await;
    ready_until(&http, &base, StatusCode::OK, None).await;

    running.stop().await.expect("clean shutdown");
    admin.close().await.ok();
    env.cleanup().await;
    drop(restarted);
}
