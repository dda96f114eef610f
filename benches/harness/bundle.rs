//! "Download all" of a bundle: four 1 GiB files shared as one link, streamed back as one ZIP,
//! against the same four downloaded one by one through the same link (the same bytes, so the
//! two rates compare), with the service's peak memory before and after.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};

use super::big::{content_sha256, mb_per_s, put, until_ready};
use super::stack::{Stack, Topology};

/// Files in the bundle.
pub const FILES: usize = 4;

pub struct BundleRun {
    /// Each file's size.
    pub size: u64,
    /// Each file of the bundle through the link (`/s/{token}/files/{id}`), one after another.
    pub each: Duration,
    /// The whole ZIP (`/s/{token}/zip`), and its length.
    pub zip: Duration,
    pub zip_bytes: u64,
    /// The service's summed `VmHWM` before the ZIP, and after it.
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
}

impl BundleRun {
    /// The files' bytes, all of them.
    pub fn total(&self) -> u64 {
        self.size * FILES as u64
    }

    /// "Download all" against the files downloaded one by one, in per cent of the rate.
    pub fn ratio(&self) -> f64 {
        100.0 * mb_per_s(self.zip_bytes, self.zip) / mb_per_s(self.total(), self.each)
    }

    pub fn line(&self, topology: Topology) -> String {
        format!(
            "{}: bundle of {FILES} × {} MiB: each file on its own {:.2} s ({:.0} MB/s), Download all {:.2} s ({:.0} MB/s, {:.0} % of the rate file by file); peak RSS {:.0} MiB before the ZIP, {:.0} MiB after",
            topology.label(),
            self.size >> 20,
            self.each.as_secs_f64(),
            mb_per_s(self.total(), self.each),
            self.zip.as_secs_f64(),
            mb_per_s(self.zip_bytes, self.zip),
            self.ratio(),
            self.rss_before_mib,
            self.rss_after_mib,
        )
    }
}

/// Reads a whole answer of `url`, timing it from the request: (bytes, time).
async fn fetch(http: &reqwest::Client, url: &str) -> (u64, Duration) {
    let started = Instant::now();
    let response = http.get(url).send().await.expect("download");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    let mut body = response.bytes_stream();
    let mut got = 0u64;
    while let Some(piece) = body.next().await {
        got += piece.expect("body").len() as u64;
    }
    (got, started.elapsed())
}

fn total_rss(stack: &Stack) -> f64 {
    stack.peak_rss_mib().iter().map(|(_, mib)| mib).sum()
}

pub async fn download_all(
    stack: &Stack,
    http: &reqwest::Client,
    token: &str,
    size: u64,
) -> BundleRun {
    let sha256 = content_sha256(size);
    let mut ids = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let (id, _) = put(stack, http, token, &format!("part-{i}.zip"), size).await;
        until_ready(stack, http, token, &id, &sha256).await;
        ids.push(id);
    }
    let made: Value = http
        .post(format!("{}/api/v1/shares", stack.base))
        .bearer_auth(token)
        .json(&json!({ "file_ids": ids, "expires_in_hours": 24 }))
        .send()
        .await
        .expect("share")
        .json()
        .await
        .expect("json");
    let link = made["shares"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a link: {made}"))
        .to_owned();
    crate::quiet_disk();
    // Each file through the link, one after another, then all of them as one ZIP.
    let mut each = Duration::ZERO;
    for id in &ids {
        let (got, time) = fetch(http, &format!("{link}/files/{id}")).await;
        assert_eq!(got, size, "each file has its length");
        each += time;
    }
    let rss_before_mib = total_rss(stack);
    let (zip_bytes, zip) = fetch(http, &format!("{link}/zip")).await;
    assert!(
        zip_bytes > size * FILES as u64,
        "the ZIP holds every file: {zip_bytes} bytes"
    );
    BundleRun {
        size,
        each,
        zip,
        zip_bytes,
        rss_before_mib,
        rss_after_mib: total_rss(stack),
    }
}
