//! Outages of the services Coffer depends on: what it reports and how it recovers.

use std::time::{Duration, Instant};

use crate::common::{Client, Environment, Process, Topology, pdf};
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
    let bucket_url = format!("{}/{bucket}", crate::common::s3_endpoint());
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
    let admin = sea_orm::Database::connect(format!("{}/postgres", crate::common::pg_admin_url()))
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

/// Makes PostgreSQL refuse `database` and drops its open connections, or lets it in again.
async fn postgres_refuses(database: &str, refuse: bool) {
    let admin = sea_orm::Database::connect(format!("{}/postgres", crate::common::pg_admin_url()))
        .await
        .expect("PostgreSQL");
    let run = |sql: String| {
        let admin = admin.clone();
        async move {
            sea_orm::ConnectionTrait::execute_unprepared(&admin, &sql)
                .await
                .expect("admin statement");
        }
    };
    run(format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS {}",
        !refuse
    ))
    .await;
    if refuse {
        run(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        ))
        .await;
    }
    admin.close().await.ok();
}

/// The name of the test's PostgreSQL database.
fn database_name(env: &Environment) -> String {
    var(env, "COFFER_DATABASE_URL")
        .rsplit('/')
        .next()
        .expect("name")
        .to_owned()
}

fn var(env: &Environment, name: &str) -> String {
    env.vars
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .expect(name)
}

/// PostgreSQL stops taking connections while a user works: each request gets a prompt 503 with
/// `Retry-After` (never a hang, never a 500), and everything works again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432, Redis at 127.0.0.1:6379 and an S3 server at 127.0.0.1:9000"]
async fn a_database_outage_is_a_prompt_503_and_recovers() {
    let app = crate::common::TestApp::spawn(Topology::Production).await;
    let user = app.user().await;
    let id = app
        .upload(&user, "before.txt", b"written before".to_vec())
        .await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    let database = database_name(&app.env);

    postgres_refuses(&database, true).await;
    for path in ["/api/v1/files", &format!("/api/v1/files/{id}/content")] {
        let asked = Instant::now();
        let response = app.get(path, &user.token).await;
        assert!(
            asked.elapsed() < Duration::from_secs(15),
            "{path} took {:?}",
            asked.elapsed()
        );
        assert!(response.headers().contains_key("retry-after"), "{path}");
        crate::common::problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    let upload = app.put_file(&user, "during.txt", b"refused".to_vec()).await;
    crate::common::problem(upload, StatusCode::SERVICE_UNAVAILABLE).await;

    postgres_refuses(&database, false).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = app.get("/api/v1/files", &user.token).await;
        if response.status() == StatusCode::OK {
            let body: Value = response.json().await.expect("json");
            let names: Vec<_> = body["files"]
                .as_array()
                .expect("files")
                .iter()
                .filter_map(|f| f["name"].as_str())
                .collect();
            assert_eq!(
                names,
                vec!["before.txt"],
                "nothing from the outage was kept"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let download = app.download(&user, &id).await;
    assert_eq!(download.status(), StatusCode::OK);
    app.stop().await;
}

/// PostgreSQL drops the API's connections between two requests (a restart, an administrator's
/// `pg_terminate_backend`): a pooled connection in use a moment ago is not tested before it is
/// used again, so the request that meets a dropped one gets a prompt 503 with `Retry-After`
/// (never a 500), and the requests after it are answered again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432, Redis at 127.0.0.1:6379 and an S3 server at 127.0.0.1:9000"]
async fn a_dropped_database_connection_is_a_503_then_recovers() {
    let app = crate::common::TestApp::spawn(Topology::Production).await;
    let user = app.user().await;
    let id = app.upload(&user, "kept.txt", b"kept".to_vec()).await;
    assert_eq!(app.wait_until_settled(&user, &id).await["status"], "ready");
    let database = database_name(&app.env);
    let path = format!("/api/v1/files/{id}");
    let admin = sea_orm::Database::connect(format!("{}/postgres", crate::common::pg_admin_url()))
        .await
        .expect("PostgreSQL");

    assert_eq!(app.get(&path, &user.token).await.status(), StatusCode::OK);
    // Every backend of the database ends (waiting up to 5 s for each to be gone) while the
    // API's pool still holds their connections, idle for less than a second.
    sea_orm::ConnectionTrait::execute_unprepared(
        &admin,
        &format!(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ),
    )
    .await
    .expect("terminate the backends");
    let met = app.get(&path, &user.token).await;
    assert!(met.headers().contains_key("retry-after"));
    crate::common::problem(met, StatusCode::SERVICE_UNAVAILABLE).await;

    // Each request that meets a dropped connection takes it out of the pool; never a 500.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.get(&path, &user.token).await;
        match response.status() {
            StatusCode::OK => {
                let file: Value = response.json().await.expect("json");
                assert_eq!(file["name"], "kept.txt");
                break;
            }
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("a dropped connection answered {other}"),
        }
        assert!(Instant::now() < deadline, "no recovery");
    }
    admin.close().await.ok();
    app.stop().await;
}

/// Redis restarts with its data wiped while uploads are under way: the sweep re-enqueues what
/// the queue lost, and every file becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432, redis-server and an S3 server at 127.0.0.1:9000"]
async fn a_wiped_redis_loses_no_file() {
    let mut redis = PrivateRedis::start();
    redis.wait_up().await;
    let url = redis.url();
    let settings = [
        ("COFFER_REDIS_URL", url.as_str()),
        ("COFFER_SWEEP_INTERVAL_SECS", "1"),
        ("COFFER_SWEEP_STUCK_AFTER_SECS", "2"),
    ];
    let app =
        crate::common::TestApp::spawn_with(Topology::Production, &settings, coffer::Roles::ALL)
            .await;
    let user = app.user().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        if i == 15 {
            // Mid-way: Redis goes down and comes back empty (it keeps nothing on disk).
            let port = redis.port;
            redis.stop();
            redis = PrivateRedis::start_on(port);
            redis.wait_up().await;
        }
        let response = app
            .put_file(
                &user,
                &format!("n{i}.txt"),
                format!("note {i}").into_bytes(),
            )
            .await;
        if response.status() == StatusCode::ACCEPTED {
            let body: Value = response.json().await.expect("json");
            ids.push(body["id"].as_str().expect("id").to_owned());
        } else {
            // Refused while Redis was away: a clear answer, and nothing kept.
            assert!(response.status().is_client_error() || response.status().is_server_error());
        }
    }
    assert!(ids.len() >= 15, "{} uploads accepted", ids.len());
    for id in &ids {
        let file = app.wait_until_settled(&user, id).await;
        assert_eq!(file["status"], "ready", "{file}");
    }
    app.stop().await;
    drop(redis);
}

/// A worker process hears of uploads queued by the API process through a Redis subscription
/// and starts on each at once; after Redis restarts, it subscribes again. With a ten-minute poll
/// interval only the wake-up makes a file ready within seconds (without it the worker looked
/// only at apalis's 30 s heartbeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL at 127.0.0.1:5432, redis-server and an S3 server at 127.0.0.1:9000"]
async fn the_worker_s_wake_up_outlives_a_redis_restart() {
    let mut redis = PrivateRedis::start();
    redis.wait_up().await;
    let url = redis.url();
    let env = Environment::new(
        Topology::Production,
        &[
            ("COFFER_REDIS_URL", url.as_str()),
            ("COFFER_POLL_INTERVAL_MS", "600000"),
        ],
    )
    .await;
    let api = Process::start("api", &env.vars);
    let worker = Process::start("worker", &env.vars);
    let base = api.base.clone().expect("the API listens");
    let client = Client::new(&base);
    let http = client.http.clone();
    let token = client
        .sign_in("restart@example.org", "correct horse battery", true)
        .await;
    // Three uploads in a row, each ready within seconds.
    let each_at_once = |stage: &'static str| {
        let (client, token) = (&client, &token);
        async move {
            for i in 0..3 {
                let name = format!("{stage}-{i}.pdf");
                let id = client.put_upload(token, &name, pdf(stage.as_bytes())).await;
                client
                    .wait_ready_within(token, &id, Duration::from_secs(5))
                    .await;
            }
        }
    };

    each_at_once("before").await;

    let port = redis.port;
    redis.stop();
    redis = PrivateRedis::start_on(port);
    redis.wait_up().await;
    // The API's connection to Redis comes back once it is used (readiness pings it).
    ready_until(&http, &base, StatusCode::OK, None).await;
    let id = client.put_upload(&token, "after.pdf", pdf(b"after")).await;
    // The worker resubscribes within its backoff (at most 10 s) and then looks for what was
    // queued meanwhile; after that, each upload is started at once again.
    client
        .wait_ready_within(&token, &id, Duration::from_secs(20))
        .await;
    each_at_once("again").await;
    drop(worker);
    drop(api);
    env.cleanup().await;
    drop(redis);
}
