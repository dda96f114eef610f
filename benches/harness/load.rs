//! Small requests under load (wrk, a C load generator, so that the client takes as little of
//! the two cores as it can), and the latency of a small upload until it is `ready`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::stack::{Stack, Topology};

pub const CONCURRENCY: [usize; 3] = [1, 16, 64];

pub struct LoadRun {
    pub what: &'static str,
    pub concurrency: usize,
    pub requests: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl LoadRun {
    pub fn line(&self, topology: Topology) -> String {
        format!("{}: {}", topology.label(), self.line_alone())
    }

    /// The run without the topology it ran on.
    pub fn line_alone(&self) -> String {
        format!(
            "{} at concurrency {}: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms ({} requests)",
            self.what, self.concurrency, self.per_second, self.p50_ms, self.p99_ms, self.requests
        )
    }
}

/// The wrk command line (also printed into BENCHMARKS.md).
pub fn wrk_command(concurrency: usize, seconds: u64) -> String {
    format!(
        "wrk -t{} -c{concurrency} -d{seconds}s --latency -s bench/wrk-report.lua -H 'Authorization: Bearer …' URL",
        concurrency.min(2)
    )
}

fn wrk(url: &str, header: &str, concurrency: usize, duration: Duration) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/wrk-report.lua");
    let output = std::process::Command::new("wrk")
        .arg(format!("-t{}", concurrency.min(2)))
        .arg(format!("-c{concurrency}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["--latency", "-s", script])
        .args(["-H", header])
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk; bench/run.sh installs it)");
    assert!(output.status.success(), "wrk failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no report from wrk: {text}"));
    serde_json::from_str(line).expect("wrk's JSON line")
}

/// `url` under wrk at each of [`CONCURRENCY`], after a short warm-up (connections, caches and
/// the database's pages), sending `header` (what authenticates) with every request.
pub async fn run_wrk(
    what: &'static str,
    url: &str,
    header: &str,
    duration: Duration,
) -> Vec<LoadRun> {
    let (url, header) = (url.to_owned(), header.to_owned());
    let warm = (url.clone(), header.clone());
    tokio::task::spawn_blocking(move || wrk(&warm.0, &warm.1, 16, Duration::from_secs(1)))
        .await
        .expect("warm-up");
    let mut runs = Vec::new();
    for concurrency in CONCURRENCY {
        let mut run = wrk_report(&url, &header, concurrency, duration).await;
        run.what = what;
        runs.push(run);
    }
    runs
}

/// One wrk run at `concurrency`: every answer must be a 200.
pub async fn wrk_report(
    url: &str,
    header: &str,
    concurrency: usize,
    duration: Duration,
) -> LoadRun {
    let (url, header) = (url.to_owned(), header.to_owned());
    let report = tokio::task::spawn_blocking(move || wrk(&url, &header, concurrency, duration))
        .await
        .expect("wrk");
    let count = |k: &str| report[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(count("socket_errors"), 0, "{report}");
    assert_eq!(count("status_errors"), 0, "every answer was 200: {report}");
    let requests = count("requests");
    LoadRun {
        what: "",
        concurrency,
        requests,
        per_second: requests as f64 / (count("duration_us") as f64 / 1e6),
        p50_ms: count("p50_us") as f64 / 1e3,
        p99_ms: count("p99_us") as f64 / 1e3,
    }
}

pub async fn upload(
    http: &reqwest::Client,
    stack: &Stack,
    token: &str,
    name: &str,
    body: Vec<u8>,
) -> String {
    let response = http
        .put(format!("{}/api/v1/files/{name}", stack.base))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let created: Value = response.json().await.expect("json");
    created["id"].as_str().expect("id").to_owned()
}

pub async fn wait_ready(http: &reqwest::Client, stack: &Stack, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let file = super::big::file(http, stack, token, id).await;
        if file["status"] == "ready" {
            return file;
        }
        assert!(
            file["status"] == "quarantined" || file["status"] == "validated",
            "{file}"
        );
        assert!(Instant::now() < deadline, "not ready: {file}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// 4 KiB downloads by the owner (bearer token) and by a recipient (link), and metadata reads,
/// at each concurrency.
pub async fn small_requests(
    stack: &Stack,
    http: &reqwest::Client,
    token: &str,
    duration: Duration,
) -> Vec<LoadRun> {
    let mut content = super::common::pdf(&super::common::pattern(4096 - 16, 4));
    content.truncate(4096);
    let id = upload(http, stack, token, "small.pdf", content).await;
    wait_ready(http, stack, token, &id).await;
    let targets = [
        (
            "4 KiB download",
            format!("{}/api/v1/files/{id}/content", stack.base),
        ),
        ("metadata GET", format!("{}/api/v1/files/{id}", stack.base)),
    ];
    let header = format!("Authorization: Bearer {token}");
    let mut runs = Vec::new();
    for (what, url) in &targets {
        runs.extend(run_wrk(what, url, &header, duration).await);
    }
    // The same file through a recipient's link (no account; the link is the credential).
    let link = stack.share_link(http, token, &id).await;
    let url = format!("{link}/download");
    runs.extend(run_wrk("recipient 4 KiB download", &url, "Accept: */*", duration).await);
    runs
}

/// The most a small request can reach here: a poem server with nothing behind it (no
/// database, no key, no file) answering 4 KiB from memory on a runtime of its own, as
/// `coffer serve` has, under the same wrk at each of [`CONCURRENCY`] on the same two cores.
pub async fn bare_server(duration: Duration) -> Vec<LoadRun> {
    use poem::listener::{Acceptor as _, Listener as _};
    let (tell_port, port) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
                .into_acceptor()
                .await
                .expect("a port");
            let port = acceptor.local_addr()[0]
                .as_socket_addr()
                .expect("a TCP address")
                .port();
            tell_port
                .send(port)
                .expect("the harness waits for the port");
            let body = bytes::Bytes::from(vec![b'x'; 4096]);
            let app = poem::Route::new().at(
                "/",
                poem::get(poem::endpoint::make_sync(move |_| body.clone())),
            );
            poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, async { drop(stopped.await) }, None)
                .await
                .expect("the bare server");
        });
    });
    let port = tokio::task::spawn_blocking(move || port.recv().expect("a port"))
        .await
        .expect("the port");
    let url = format!("http://127.0.0.1:{port}/");
    let runs = run_wrk(
        "4 KiB from memory, nothing behind it",
        &url,
        "Accept: */*",
        duration,
    )
    .await;
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || server.join().expect("the bare server stops"))
        .await
        .expect("joined");
    runs
}

pub struct Latency {
    pub uploads: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn line(&self, topology: Topology) -> String {
        format!(
            "{}: small upload -> ready over {} uploads: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            topology.label(),
            self.uploads,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One small upload at a time, from the moment the request starts until the `ready_at` the
/// service recorded when encryption committed (the same clock: one machine).
pub async fn upload_to_ready(
    stack: &Stack,
    http: &reqwest::Client,
    token: &str,
    uploads: usize,
) -> Latency {
    let mut millis = Vec::with_capacity(uploads);
    for i in 0..uploads {
        let content = super::common::pdf(&super::common::pattern(4000, i as u8));
        let started = chrono::Utc::now();
        let id = upload(http, stack, token, &format!("latency-{i}.pdf"), content).await;
        let file = wait_ready(http, stack, token, &id).await;
        let ready_at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(file["ready_at"].clone()).expect("ready_at");
        millis.push((ready_at - started).num_microseconds().expect("small") as f64 / 1e3);
    }
    millis.sort_by(f64::total_cmp);
    Latency {
        uploads,
        p50_ms: percentile(&millis, 50.0),
        p99_ms: percentile(&millis, 99.0),
        max_ms: millis.last().copied().unwrap_or(0.0),
    }
}
