//! Logins while a big download runs: password hashing (argon2id) must not take the download's
//! CPU on the async threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::big::{download, mb_per_s};
use super::stack::{Stack, Topology, USER};

/// Clients signing in back to back during the download.
pub const LOGIN_CLIENTS: usize = 8;

pub struct LoginsRun {
    pub size: u64,
    pub alone: Duration,
    pub with_logins: Duration,
    pub logins: u64,
    pub logins_per_second: f64,
}

impl LoginsRun {
    pub fn line(&self, topology: Topology) -> String {
        format!(
            "{}: {} MiB download alone {:.0} MB/s, during {} clients' logins {:.0} MB/s ({:.0} %); {} logins meanwhile, {:.1}/s",
            topology.label(),
            self.size >> 20,
            mb_per_s(self.size, self.alone),
            LOGIN_CLIENTS,
            mb_per_s(self.size, self.with_logins),
            100.0 * self.alone.as_secs_f64() / self.with_logins.as_secs_f64(),
            self.logins,
            self.logins_per_second
        )
    }
}

pub async fn during_download(
    stack: &Stack,
    http: &reqwest::Client,
    token: &str,
    id: &str,
) -> LoginsRun {
    let (size, alone) = download(http, stack, token, id).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..LOGIN_CLIENTS {
        let (http, url) = (http.clone(), format!("{}/api/v1/auth/login", stack.base));
        let (stop, done) = (stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let body = serde_json::json!({ "email": USER.0, "password": USER.1 });
            while !stop.load(Ordering::Relaxed) {
                let response = http.post(&url).json(&body).send().await.expect("login");
                assert_eq!(response.status(), reqwest::StatusCode::OK, "login");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the logins reach their pace before the download starts.
    let warm = Instant::now();
    while done.load(Ordering::Relaxed) < LOGIN_CLIENTS as u64 {
        assert!(
            warm.elapsed() < Duration::from_secs(30),
            "no login finished"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = done.load(Ordering::Relaxed);
    let (got, with_logins) = download(http, stack, token, id).await;
    let logins = done.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("login client");
    }
    assert_eq!(got, size);
    LoginsRun {
        size,
        alone,
        with_logins,
        logins,
        logins_per_second: logins as f64 / with_logins.as_secs_f64(),
    }
}
