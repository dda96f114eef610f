//! A big file up, through validation and encryption, and down again, with each process's peak
//! memory.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;
use sha2::Digest as _;

use super::stack::{Stack, Topology};

const PIECE: usize = 1 << 20;

pub struct BigFile {
    pub id: String,
    pub size: u64,
    /// From the first byte sent until the 202.
    pub upload: Duration,
    /// From the 202 until the file is `ready` (validated, then encrypted).
    pub ready: Duration,
    /// The whole plaintext back.
    pub download: Duration,
    pub rss_mib: Vec<(&'static str, f64)>,
}

pub fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e6
}

impl BigFile {
    pub fn line(&self, topology: Topology) -> String {
        let rss: Vec<String> = self
            .rss_mib
            .iter()
            .map(|(role, mib)| format!("{role} {mib:.0} MiB"))
            .collect();
        format!(
            "{}: {} MiB: upload {:.2} s ({:.0} MB/s), ready after {:.2} s ({:.0} MB/s), download {:.2} s ({:.0} MB/s); peak RSS {}",
            topology.label(),
            self.size >> 20,
            self.upload.as_secs_f64(),
            mb_per_s(self.size, self.upload),
            self.ready.as_secs_f64(),
            mb_per_s(self.size, self.ready),
            self.download.as_secs_f64(),
            mb_per_s(self.size, self.download),
            rss.join(", ")
        )
    }
}

/// Piece `i` of the file's content: a random 1 MiB block stamped with its index, the first
/// one starting like a ZIP archive (an allowed type).
fn piece(block: &[u8], size: u64, i: u64) -> Bytes {
    let mut piece = block.to_vec();
    piece[..8].copy_from_slice(&i.to_be_bytes());
    if i == 0 {
        piece[..4].copy_from_slice(b"PK\x03\x04");
    }
    piece.truncate((size - i * PIECE as u64).min(PIECE as u64) as usize);
    Bytes::from(piece)
}

fn content(size: u64) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    let block = super::common::pattern(PIECE, 9);
    let count = size.div_ceil(PIECE as u64);
    futures::stream::iter(0..count).map(move |i| Ok(piece(&block, size, i)))
}

/// The SHA-256 of [`content`] of `size` bytes.
pub fn content_sha256(size: u64) -> String {
    let block = super::common::pattern(PIECE, 9);
    let mut hasher = sha2::Sha256::new();
    for i in 0..size.div_ceil(PIECE as u64) {
        hasher.update(piece(&block, size, i));
    }
    hex::encode(hasher.finalize())
}

pub async fn file(http: &reqwest::Client, stack: &Stack, token: &str, id: &str) -> Value {
    http.get(format!("{}/api/v1/files/{id}", stack.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("file")
        .json()
        .await
        .expect("json")
}

/// Times one download of the whole file, checking its length (tests/e2e/large.rs checks content).
pub async fn download(
    http: &reqwest::Client,
    stack: &Stack,
    token: &str,
    id: &str,
) -> (u64, Duration) {
    let started = Instant::now();
    let response = http
        .get(format!("{}/api/v1/files/{id}/content", stack.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let mut body = response.bytes_stream();
    let mut got = 0u64;
    while let Some(piece) = body.next().await {
        got += piece.expect("body").len() as u64;
    }
    (got, started.elapsed())
}

/// Uploads [`content`] of `size` bytes as `name`; returns the file's id and how long the
/// upload took until its 202. Making a piece while sending costs one 1 MiB copy.
pub async fn put(
    stack: &Stack,
    http: &reqwest::Client,
    token: &str,
    name: &str,
    size: u64,
) -> (String, Duration) {
    let started = Instant::now();
    let body = reqwest::Body::wrap_stream(content(size));
    let response = http
        .put(format!("{}/api/v1/files/{name}", stack.base))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("upload");
    let upload = started.elapsed();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let created: Value = response.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    (id, upload)
}

/// Waits until file `id` is `ready` and checks its digest; returns how long that took.
pub async fn until_ready(
    stack: &Stack,
    http: &reqwest::Client,
    token: &str,
    id: &str,
    sha256: &str,
) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    loop {
        let file = file(http, stack, token, id).await;
        match file["status"].as_str() {
            Some("ready") => {
                assert_eq!(file["sha256"], sha256, "the stored file is what was sent");
                return started.elapsed();
            }
            Some("quarantined" | "validated") => {}
            other => panic!("the big file ended {other:?}: {file}"),
        }
        assert!(Instant::now() < deadline, "not ready within 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn round_trip(stack: &Stack, http: &reqwest::Client, token: &str, size: u64) -> BigFile {
    // A quiet disk to start from: what earlier rounds wrote (and deleted) is flushed first.
    crate::quiet_disk();
    let sha256 = content_sha256(size);
    let name = format!("big-{}.zip", size >> 20);
    let (id, upload) = put(stack, http, token, &name, size).await;
    let ready = until_ready(stack, http, token, &id, &sha256).await;
    let (got, download) = download(http, stack, token, &id).await;
    assert_eq!(got, size, "the download has the file's length");
    BigFile {
        id,
        size,
        upload,
        ready,
        download,
        rss_mib: stack.peak_rss_mib(),
    }
}
