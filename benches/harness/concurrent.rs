//! Many big transfers at once: 16 uploads together, then 16 downloads together, against one
//! stream alone, with the service's total peak memory.

use std::time::{Duration, Instant};

use super::big::{content_sha256, download, mb_per_s, put, until_ready};
use super::stack::{Stack, Topology};

/// Transfers running at once.
pub const STREAMS: usize = 16;

pub struct ConcurrentRun {
    pub streams: usize,
    /// Each file's size.
    pub size: u64,
    /// From the first upload's start until the last one's 202.
    pub upload: Duration,
    /// The same files written at once without Coffer, right after the uploads (bytes/s).
    pub disk_at_once: f64,
    /// From the first download's start until the last one's last byte.
    pub download: Duration,
    /// The sum of the service's processes' `VmHWM` afterwards.
    pub total_rss_mib: f64,
}

impl ConcurrentRun {
    pub fn total(&self) -> u64 {
        self.size * self.streams as u64
    }

    /// The uploads' rate together, in percent of the disk path's for the same files.
    pub fn uploads_of_disk(&self) -> f64 {
        100.0 * mb_per_s(self.total(), self.upload) / (self.disk_at_once / 1e6)
    }

    pub fn line(&self, topology: Topology) -> String {
        format!(
            "{}: {} × {} MiB at once: uploads {:.2} s ({:.0} MB/s together; the disk path alone, the same writes: {:.0} MB/s), downloads {:.2} s ({:.0} MB/s together); total peak RSS {:.0} MiB",
            topology.label(),
            self.streams,
            self.size >> 20,
            self.upload.as_secs_f64(),
            mb_per_s(self.total(), self.upload),
            self.disk_at_once / 1e6,
            self.download.as_secs_f64(),
            mb_per_s(self.total(), self.download),
            self.total_rss_mib
        )
    }
}

pub async fn transfers(
    stack: &Stack,
    http: &reqwest::Client,
    token: &str,
    size: u64,
) -> ConcurrentRun {
    let sha256 = content_sha256(size);
    crate::quiet_disk();
    let started = Instant::now();
    let uploads = (0..STREAMS).map(|i| {
        let (http, token) = (http.clone(), token.to_owned());
        async move {
            let name = format!("together-{i}.zip");
            put(stack, &http, &token, &name, size).await
        }
    });
    let uploaded = futures::future::join_all(uploads).await;
    let upload = started.elapsed();
    for (id, _) in &uploaded {
        until_ready(stack, http, token, id, &sha256).await;
    }
    // The bound of the uploads together: the same bytes, as many files, written at once by the
    // harness itself, with the uploaded files still in the page cache as they were.
    crate::quiet_disk();
    let disk_at_once =
        tokio::task::spawn_blocking(move || super::limits::write_at_once(STREAMS, size))
            .await
            .expect("the disk path alone");
    crate::quiet_disk();

    let started = Instant::now();
    let downloads = uploaded.iter().map(|(id, _)| {
        let (http, token) = (http.clone(), token.to_owned());
        async move { download(&http, stack, &token, id).await }
    });
    for (got, _) in futures::future::join_all(downloads).await {
        assert_eq!(got, size, "each download has the file's length");
    }
    let download = started.elapsed();
    ConcurrentRun {
        streams: STREAMS,
        size,
        upload,
        disk_at_once,
        download,
        total_rss_mib: stack.peak_rss_mib().iter().map(|(_, mib)| mib).sum(),
    }
}
