//! Master keys in an HSM against a keyring file (issue 20): the same 4 KiB and big downloads, in
//! the same run, the two settings taking turns so that the machine's drift falls on both. With
//! `COFFER_KMS` a download makes no call to the HSM (docs/SECURITY.md), so the figures should
//! match; this shows by how much they do.

use std::time::Duration;

use super::big::{self, mb_per_s};
use super::common::kms::SoftHsm;
use super::load;
use super::stack::{Stack, Topology};

/// Turns each setting takes; each figure is the best of its turns.
pub const ROUNDS: usize = 3;

#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// 4 KiB downloads at concurrency 16.
    pub small_per_s: f64,
    pub small_p99_ms: f64,
    pub big_mb_s: f64,
}

impl Figures {
    fn best(self, other: Self) -> Self {
        Self {
            small_per_s: self.small_per_s.max(other.small_per_s),
            small_p99_ms: if self.small_p99_ms == 0.0 {
                other.small_p99_ms
            } else {
                self.small_p99_ms.min(other.small_p99_ms)
            },
            big_mb_s: self.big_mb_s.max(other.big_mb_s),
        }
    }
}

pub struct KmsRun {
    pub big_size: u64,
    pub keyring: Figures,
    pub hsm: Figures,
}

impl KmsRun {
    /// The HSM's 4 KiB rate and big-download rate as percentages of the keyring's.
    pub fn ratios(&self) -> (f64, f64) {
        (
            100.0 * self.hsm.small_per_s / self.keyring.small_per_s,
            100.0 * self.hsm.big_mb_s / self.keyring.big_mb_s,
        )
    }

    pub fn line(&self, topology: Topology) -> String {
        let (small, big) = self.ratios();
        format!(
            "{}: keys in SoftHSM2 against a keyring file: 4 KiB downloads at concurrency 16 {:.0}/s (p99 {:.2} ms) against {:.0}/s (p99 {:.2} ms), {small:.1} %; {} MiB download {:.0} MB/s against {:.0} MB/s, {big:.1} %",
            topology.label(),
            self.hsm.small_per_s,
            self.hsm.small_p99_ms,
            self.keyring.small_per_s,
            self.keyring.small_p99_ms,
            self.big_size >> 20,
            self.hsm.big_mb_s,
            self.keyring.big_mb_s,
        )
    }
}

/// One setting's turn: a fresh service, a 4 KiB file under wrk, a big file downloaded.
async fn turn(
    topology: Topology,
    keys: &[(String, String)],
    duration: Duration,
    big_size: u64,
) -> Figures {
    let stack = Stack::start_with(topology, keys).await;
    let http = reqwest::Client::new();
    let token = stack.user_token(&http).await;
    let mut content = super::common::pdf(&super::common::pattern(4096 - 16, 4));
    content.truncate(4096);
    let id = load::upload(&http, &stack, &token, "small.pdf", content).await;
    load::wait_ready(&http, &stack, &token, &id).await;
    let url = format!("{}/api/v1/files/{id}/content", stack.base);
    let header = format!("Authorization: Bearer {token}");
    load::wrk_report(&url, &header, 16, Duration::from_secs(1)).await;
    let small = load::wrk_report(&url, &header, 16, duration).await;
    let run = big::round_trip(&stack, &http, &token, big_size).await;
    stack.stop().await;
    Figures {
        small_per_s: small.per_second,
        small_p99_ms: small.p99_ms,
        big_mb_s: mb_per_s(run.size, run.download),
    }
}

pub async fn compare(topology: Topology, duration: Duration, big_size: u64) -> KmsRun {
    let hsm = SoftHsm::with_key("coffer-bench", "coffer-kek-1");
    let held = hsm.vars("coffer-bench", "coffer-kek-1");
    let mut run = KmsRun {
        big_size,
        keyring: Figures::default(),
        hsm: Figures::default(),
    };
    for _ in 0..ROUNDS {
        run.keyring = run
            .keyring
            .best(turn(topology, &[], duration, big_size).await);
        run.hsm = run
            .hsm
            .best(turn(topology, &held, duration, big_size).await);
    }
    run
}
