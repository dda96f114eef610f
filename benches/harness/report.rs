//! What a run found, printed and written into BENCHMARKS.md between two markers (the text
//! around them, with the history of what changed, is kept).

use std::fmt::Write as _;
use std::time::Instant;

use super::Scale;
use super::big::{BigFile, mb_per_s};
use super::bundle::{BundleRun, FILES};
use super::concurrent::{ConcurrentRun, STREAMS};
use super::kms::KmsRun;
use super::limits::Limits;
use super::load::{CONCURRENCY, Latency, LoadRun, wrk_command};
use super::logins::{LOGIN_CLIENTS, LoginsRun};
use super::reference::ReferenceRun;
use super::stack::Topology;
use super::store::StoreRun;

const START: &str = "<!-- harness:start: written by bench/run.sh; edit outside the markers -->";
const END: &str = "<!-- harness:end -->";

pub struct Report {
    started: Instant,
    scale: Scale,
    pub limits: Option<Limits>,
    pub big: Vec<(Topology, BigFile)>,
    pub concurrent: Vec<(Topology, ConcurrentRun)>,
    pub bundle: Vec<(Topology, BundleRun)>,
    pub kms: Vec<(Topology, KmsRun)>,
    pub logins: Vec<(Topology, LoginsRun)>,
    pub small: Vec<(Topology, LoadRun)>,
    /// A bare poem server's 4 KiB answers under the same wrk: the small requests' limit.
    pub bare: Vec<LoadRun>,
    pub latency: Vec<(Topology, Latency)>,
    pub rewrap: Vec<StoreRun>,
    pub verify: Vec<StoreRun>,
    pub reference: Option<ReferenceRun>,
    pub at_scale: Vec<super::scale::ScaleRun>,
}

fn gb(bytes_per_second: f64) -> String {
    format!("{:.2} GB/s", bytes_per_second / 1e9)
}

/// One core doing `stages` one after another on every byte: their rates add as resistances.
fn serial(stages: &[f64]) -> f64 {
    1.0 / stages.iter().map(|r| 1.0 / r).sum::<f64>()
}

impl Limits {
    /// What bounds an upload: the network, the disk, or the slower of the two cores, one
    /// sealing each byte while the other hashes it.
    pub fn upload_bound(&self) -> (f64, &'static str) {
        [
            (self.loopback, "loopback TCP"),
            (self.disk_write, "disk write"),
            (
                self.sha256.min(self.sealer),
                "seal on one core, SHA-256 on the other",
            ),
        ]
        .into_iter()
        .fold((f64::MAX, ""), |a, b| if b.0 < a.0 { b } else { a })
    }

    /// After the upload, validation reads the object back (the upload's writer dropped its
    /// pages from the cache) and opens every byte, half of them on each core (it does not hash
    /// them again); encryption keeps the sealed object as it is (no second read).
    pub fn ready_bound(&self) -> (f64, &'static str) {
        if self.disk_read < 2.0 * self.opener {
            (self.disk_read, "disk read")
        } else {
            (2.0 * self.opener, "open on both cores")
        }
    }

    /// From the first byte sent until `ready`: the upload, then validation.
    pub fn end_to_end_bound(&self) -> f64 {
        serial(&[self.upload_bound().0, self.ready_bound().0])
    }

    pub fn download_bound(&self) -> (f64, &'static str) {
        if self.loopback < self.opener {
            (self.loopback, "loopback TCP")
        } else {
            (self.opener, "open (decrypt) on one core")
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| format!(", {} GiB", kib >> 20));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores{memory}, Linux {}", kernel.trim())
}

/// `120 MiB`, `1 GiB`.
fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

fn yes(met: bool) -> &'static str {
    if met { "**met**" } else { "**not met**" }
}

impl Report {
    pub fn new(scale: Scale) -> Self {
        Self {
            started: Instant::now(),
            scale,
            limits: None,
            big: Vec::new(),
            concurrent: Vec::new(),
            bundle: Vec::new(),
            kms: Vec::new(),
            logins: Vec::new(),
            small: Vec::new(),
            bare: Vec::new(),
            latency: Vec::new(),
            rewrap: Vec::new(),
            verify: Vec::new(),
            at_scale: Vec::new(),
            reference: None,
        }
    }

    pub fn print_limits(&self) {
        if let Some(l) = &self.limits {
            println!(
                "limits: AES-256-GCM {} (Sealer {}, opener {}), SHA-256 {}, loopback {}, disk write {}, disk read {}",
                gb(l.aes_gcm),
                gb(l.sealer),
                gb(l.opener),
                gb(l.sha256),
                gb(l.loopback),
                gb(l.disk_write),
                gb(l.disk_read)
            );
        }
    }

    /// The big file of the first big size (1 GiB) on `topology`: the one stream the targets
    /// and the concurrent section compare with.
    fn first_big(&self, topology: Topology) -> Option<&BigFile> {
        self.big
            .iter()
            .find(|(t, b)| *t == topology && b.size == self.scale.big_sizes[0])
            .map(|(_, b)| b)
    }

    fn targets(&self, out: &mut String) {
        let topologies = [Topology::Embedded, Topology::Postgres];
        let one_gib: Vec<(Topology, &BigFile)> = topologies
            .iter()
            .filter_map(|t| self.first_big(*t).map(|b| (*t, b)))
            .collect();
        let rate = |pick: &dyn Fn(&BigFile) -> f64| -> Vec<(Topology, f64)> {
            one_gib.iter().map(|(t, b)| (*t, pick(b))).collect()
        };
        let list = |v: &[(Topology, f64)], unit: &str| {
            v.iter()
                .map(|(t, x)| format!("{}: {x:.0} {unit}", t.label()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let at_least =
            |v: &[(Topology, f64)], floor: f64| !v.is_empty() && v.iter().all(|(_, x)| *x >= floor);
        let mut rows: Vec<(String, String, bool)> = Vec::new();
        let gib = self.scale.big_sizes[0] >> 30;
        let end_to_end = rate(&|b| mb_per_s(b.size, b.upload + b.ready));
        rows.push((
            format!("{gib} GiB upload → ready ≥ 450 MB/s end to end"),
            list(&end_to_end, "MB/s"),
            at_least(&end_to_end, 450.0),
        ));
        let download = rate(&|b| mb_per_s(b.size, b.download));
        rows.push((
            format!("{gib} GiB download ≥ 1.3 GB/s"),
            list(&download, "MB/s"),
            at_least(&download, 1300.0),
        ));
        let upload = rate(&|b| mb_per_s(b.size, b.upload));
        rows.push((
            format!("{gib} GiB upload ingest ≥ 800 MB/s"),
            list(&upload, "MB/s"),
            at_least(&upload, 800.0),
        ));
        // Many streams at once against one alone (the 1 GiB run of the same topology).
        struct Together {
            topology: Topology,
            /// Percent of one stream's rate.
            uploads: f64,
            downloads: f64,
            /// The uploads' rate, in percent of the same files written without Coffer.
            uploads_of_disk: f64,
            rss_mib: f64,
        }
        let together: Vec<Together> = self
            .concurrent
            .iter()
            .filter_map(|(t, c)| {
                let one = self.first_big(*t)?;
                let up = mb_per_s(c.total(), c.upload);
                Some(Together {
                    topology: *t,
                    uploads: 100.0 * up / mb_per_s(one.size, one.upload),
                    downloads: 100.0 * mb_per_s(c.total(), c.download)
                        / mb_per_s(one.size, one.download),
                    uploads_of_disk: c.uploads_of_disk(),
                    rss_mib: c.total_rss_mib,
                })
            })
            .collect();
        let mib = self.scale.concurrent_size >> 20;
        rows.push((
            format!(
                "{STREAMS} uploads of {mib} MiB at once, then {STREAMS} downloads: together ≥ 80 % of one stream"
            ),
            together
                .iter()
                .map(|g| {
                    format!(
                        "{}: uploads {:.0} % ({:.0} % of the disk path's own rate for the same files), downloads {:.0} %",
                        g.topology.label(),
                        g.uploads,
                        g.uploads_of_disk,
                        g.downloads
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            !together.is_empty()
                && together
                    .iter()
                    .all(|g| g.uploads >= 80.0 && g.downloads >= 80.0),
        ));
        rows.push((
            format!("total peak RSS ≤ 128 MiB with {STREAMS} transfers at once"),
            together
                .iter()
                .map(|g| format!("{}: {:.0} MiB", g.topology.label(), g.rss_mib))
                .collect::<Vec<_>>()
                .join("; "),
            !together.is_empty() && together.iter().all(|g| g.rss_mib <= 128.0),
        ));
        rows.extend(self.bundle_targets());
        rows.extend(self.kms_targets());
        let biggest = self.scale.big_sizes[1];
        let rss: Vec<(Topology, &'static str, f64)> = self
            .big
            .iter()
            .filter(|(_, b)| b.size == biggest)
            .flat_map(|(t, b)| b.rss_mib.iter().map(move |(role, mib)| (*t, *role, *mib)))
            .collect();
        rows.push((
            format!("peak RSS ≤ 64 MiB per process, {} GiB file", biggest >> 30),
            rss.iter()
                .map(|(t, role, mib)| format!("{} {role}: {mib:.0} MiB", t.label()))
                .collect::<Vec<_>>()
                .join("; "),
            !rss.is_empty() && rss.iter().all(|(_, _, mib)| *mib <= 64.0),
        ));
        let c16 = |what: &str| -> Vec<(Topology, &LoadRun)> {
            self.small
                .iter()
                .filter(|(_, r)| r.what == what && r.concurrency == 16)
                .map(|(t, r)| (*t, r))
                .collect()
        };
        let downloads = c16("4 KiB download");
        // What a bare server reached at the same concurrency, said beside the figures it bounds.
        let bare = self.bare.iter().find(|r| r.concurrency == 16);
        let bare_p99 = bare.map_or_else(String::new, |b| {
            format!(" (a bare server: {:.2} ms)", b.p99_ms)
        });
        let bare_rate = |runs: &[(Topology, f64)]| {
            bare.map_or_else(String::new, |b| {
                let shares = runs
                    .iter()
                    .map(|(_, rate)| format!("{:.0} %", 100.0 * rate / b.per_second))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    " (a bare server: {:.0} requests/s; these are {shares} of it)",
                    b.per_second
                )
            })
        };
        rows.push((
            "4 KiB downloads: p99 ≤ 10 ms at concurrency 16".into(),
            downloads
                .iter()
                .map(|(t, r)| format!("{}: {:.2} ms", t.label(), r.p99_ms))
                .collect::<Vec<_>>()
                .join("; ")
                + &bare_p99,
            !downloads.is_empty() && downloads.iter().all(|(_, r)| r.p99_ms <= 10.0),
        ));
        let per_second = |runs: &[(Topology, &LoadRun)]| -> Vec<(Topology, f64)> {
            runs.iter().map(|(t, r)| (*t, r.per_second)).collect()
        };
        rows.push((
            "4 KiB downloads ≥ 8,000 requests/s at concurrency 16".into(),
            list(&per_second(&downloads), "requests/s") + &bare_rate(&per_second(&downloads)),
            at_least(&per_second(&downloads), 8000.0),
        ));
        let metadata = per_second(&c16("metadata GET"));
        rows.push((
            "metadata GET ≥ 15,000 requests/s at concurrency 16".into(),
            list(&metadata, "requests/s") + &bare_rate(&metadata),
            at_least(&metadata, 15_000.0),
        ));
        let recipient: Vec<(Topology, f64)> = c16("recipient 4 KiB download")
            .iter()
            .filter_map(|(t, r)| {
                let owner = downloads.iter().find(|(o, _)| o == t)?.1;
                Some((*t, 100.0 * r.per_second / owner.per_second))
            })
            .collect();
        rows.push((
            "recipient's 4 KiB download within 20 % of the owner's (concurrency 16)".into(),
            list(&recipient, "% of the owner's rate"),
            at_least(&recipient, 80.0),
        ));
        let redis: Vec<&(Topology, Latency)> = self
            .latency
            .iter()
            .filter(|(t, _)| *t == Topology::Postgres)
            .collect();
        rows.push((
            "small upload → ready: p50 ≤ 50 ms with Redis".into(),
            redis
                .iter()
                .map(|(_, l)| format!("{:.1} ms", l.p50_ms))
                .collect::<Vec<_>>()
                .join("; "),
            !redis.is_empty() && redis.iter().all(|(_, l)| l.p50_ms <= 50.0),
        ));
        let pg_rewrap: Vec<&StoreRun> = self
            .rewrap
            .iter()
            .filter(|r| r.database == "PostgreSQL")
            .collect();
        rows.push((
            "rewrap ≥ 20,000 DEKs/s on PostgreSQL".into(),
            pg_rewrap
                .iter()
                .map(|r| format!("{:.0}/s", r.per_second()))
                .collect::<Vec<_>>()
                .join("; "),
            !pg_rewrap.is_empty() && pg_rewrap.iter().all(|r| r.per_second() >= 20_000.0),
        ));
        let verify: Vec<&StoreRun> = self
            .verify
            .iter()
            .filter(|r| r.what == "verify audit events")
            .collect();
        rows.push((
            "verify ≥ 200,000 audit events/s".into(),
            verify
                .iter()
                .map(|r| format!("{}: {:.0}/s", r.database, r.per_second()))
                .collect::<Vec<_>>()
                .join("; "),
            !verify.is_empty() && verify.iter().all(|r| r.per_second() >= 200_000.0),
        ));
        rows.extend(super::scale::targets(&self.at_scale));
        let _ = writeln!(out, "| target | this run | |\n|---|---|---|");
        for (target, measured, met) in rows {
            let _ = writeln!(out, "| {target} | {measured} | {} |", yes(met));
        }
    }

    /// "Download all" against the same files one by one through the same link, and the memory
    /// it takes.
    fn bundle_targets(&self) -> Vec<(String, String, bool)> {
        let runs = &self.bundle;
        let gib = self.scale.bundle_size >> 30;
        vec![
            (
                format!(
                    "\"Download all\" of {FILES} × {gib} GiB ≥ 80 % of the single-file download rate"
                ),
                runs.iter()
                    .map(|(t, r)| format!("{}: {:.0} %", t.label(), r.ratio()))
                    .collect::<Vec<_>>()
                    .join("; "),
                !runs.is_empty() && runs.iter().all(|(_, r)| r.ratio() >= 80.0),
            ),
            (
                "\"Download all\": peak RSS unchanged (within 8 MiB)".into(),
                runs.iter()
                    .map(|(t, r)| {
                        format!(
                            "{}: {:.0} → {:.0} MiB",
                            t.label(),
                            r.rss_before_mib,
                            r.rss_after_mib
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                !runs.is_empty()
                    && runs
                        .iter()
                        .all(|(_, r)| r.rss_after_mib <= r.rss_before_mib + 8.0),
            ),
        ]
    }

    /// Keys in an HSM: downloads within 5 % of the keyring's, in the same run.
    fn kms_targets(&self) -> Vec<(String, String, bool)> {
        let runs = &self.kms;
        let within =
            |f: fn(&KmsRun) -> f64| !runs.is_empty() && runs.iter().all(|(_, r)| f(r) >= 95.0);
        let shown = |f: fn(&KmsRun) -> f64| {
            runs.iter()
                .map(|(t, r)| format!("{}: {:.1} %", t.label(), f(r)))
                .collect::<Vec<_>>()
                .join("; ")
        };
        vec![
            (
                "Keys in SoftHSM2 (`COFFER_KMS`): 4 KiB downloads at concurrency 16 within 5 % of a keyring file's".into(),
                shown(|r| r.ratios().0),
                within(|r| r.ratios().0),
            ),
            (
                format!(
                    "Keys in SoftHSM2: {} GiB download within 5 % of a keyring file's",
                    self.scale.big_sizes[0] >> 30
                ),
                shown(|r| r.ratios().1),
                within(|r| r.ratios().1),
            ),
        ]
    }

    fn kms_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nMaster keys in an HSM (SoftHSM2 through PKCS#11, `COFFER_KMS`) against a keyring \
             file: a fresh service with each, taking turns ({} turns each, the best of each \
             kept), a 4 KiB download under wrk at concurrency 16 and a {} MiB download. \
             `cargo bench --bench harness -- kms`.\n\n\
             | topology | 4 KiB, keyring | 4 KiB, HSM | ratio | big, keyring | big, HSM | ratio |\n\
             |---|---|---|---|---|---|---|",
            super::kms::ROUNDS,
            self.scale.big_sizes[0] >> 20
        );
        for (t, r) in &self.kms {
            let (small, big) = r.ratios();
            let _ = writeln!(
                out,
                "| {} | {:.0}/s, p99 {:.2} ms | {:.0}/s, p99 {:.2} ms | {small:.1} % | {:.0} MB/s | {:.0} MB/s | {big:.1} % |",
                t.label(),
                r.keyring.small_per_s,
                r.keyring.small_p99_ms,
                r.hsm.small_per_s,
                r.hsm.small_p99_ms,
                r.keyring.big_mb_s,
                r.hsm.big_mb_s,
            );
        }
    }

    fn bundle_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n\"Download all\" of a bundle: {FILES} files of {} MiB shared as one link, each \
             downloaded through it on its own, one after another (`/s/{{token}}/files/{{id}}`), \
             then all of them as one ZIP (`/s/{{token}}/zip`, streamed as it is written): the same \
             bytes both ways. Peak RSS is the sum of the service's processes' `VmHWM` before the \
             ZIP and after it. `cargo bench --bench harness -- bundle`.\n\n\
             | topology | file by file | Download all | of the rate file by file | peak RSS before → after |\n\
             |---|---|---|---|---|",
            self.scale.bundle_size >> 20
        );
        for (t, r) in &self.bundle {
            let _ = writeln!(
                out,
                "| {} | {:.2} s, {:.0} MB/s | {:.2} s, {:.0} MB/s | {:.0} % | {:.0} → {:.0} MiB |",
                t.label(),
                r.each.as_secs_f64(),
                mb_per_s(r.total(), r.each),
                r.zip.as_secs_f64(),
                mb_per_s(r.zip_bytes, r.zip),
                r.ratio(),
                r.rss_before_mib,
                r.rss_after_mib
            );
        }
    }

    fn render(&self) -> String {
        let limits = self.limits.expect("limits measured");
        let mut out = String::new();
        let _ = writeln!(out, "{START}");
        let _ = writeln!(
            out,
            "## Latest run: {}\n\nMachine: {}. Whole run: {:.0} min. Command: `bench/run.sh`.\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            machine(),
            self.started.elapsed().as_secs_f64() / 60.0
        );
        let _ = writeln!(out, "### Targets\n");
        self.targets(&mut out);

        let _ = writeln!(
            out,
            "\n### 1. The machine's limits\n\nBest of three on one core (the network and disk: one stream). \
             `cargo bench --bench harness -- limits`.\n\n| limit | how | rate |\n|---|---|---|"
        );
        for (name, how, rate) in [
            (
                "AES-256-GCM",
                "aes-gcm, 64 KiB chunks sealed in place, 256 MiB",
                limits.aes_gcm,
            ),
            (
                "sealing",
                "Coffer's `Sealer` (STREAM), fed 256 KiB pieces, 256 MiB",
                limits.sealer,
            ),
            (
                "opening",
                "Coffer's `ChunkReader`, fed 256 KiB pieces, 256 MiB",
                limits.opener,
            ),
            ("SHA-256", "sha2 (SHA-NI), 256 MiB", limits.sha256),
            (
                "loopback TCP",
                "one stream, 256 KiB writes, 4 GiB",
                limits.loopback,
            ),
            (
                "disk write",
                "256 KiB writes then fdatasync, 2 GiB",
                limits.disk_write,
            ),
            (
                "disk read",
                "256 KiB reads of a synced file, its pages dropped from the cache, 2 GiB",
                limits.disk_read,
            ),
        ] {
            let _ = writeln!(out, "| {name} | {how} | {} |", gb(rate));
        }
        if let Some(bare) = self.bare.iter().find(|r| r.concurrency == 16) {
            let _ = writeln!(
                out,
                "| small requests | a bare poem server answering 4 KiB from memory, wrk at \
                 concurrency 16 on the same cores (measured in `small`) | {:.0} requests/s, p99 \
                 {:.2} ms |",
                bare.per_second, bare.p99_ms
            );
        }

        let (up, up_why) = limits.upload_bound();
        let (ready, ready_why) = limits.ready_bound();
        let end_to_end = limits.end_to_end_bound();
        let (down, down_why) = limits.download_bound();
        let _ = writeln!(
            out,
            "\n### 2. Big files\n\nThe release binary over loopback: `coffer serve`, or `coffer api` + \
             `coffer worker` on PostgreSQL + Redis (blobs on the local disk in both). \
             \"Ready after\" runs from the 202 until the file is `ready` (validated and encrypted); \
             \"usable\" from the first byte sent until then. Each figure is also given as a share \
             of the limit that bounds it: upload {} ({}), ready {} ({}), usable {} (the two in \
             turn), download {} ({}). Peak RSS is each process's `VmHWM` after the file. The \
             reference Flask implementation (gunicorn, 2 workers × 4 threads) encrypts in memory \
             during the upload, so its file is usable when the upload returns; it refuses bodies \
             over 128 MiB. `cargo bench --bench harness -- big reference`.\n\n\
             | topology | size | upload returns | of bound | ready after | of bound | usable after | of bound | download | of bound | × reference (usable, download) | peak RSS |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|",
            gb(up),
            up_why,
            gb(ready),
            ready_why,
            gb(end_to_end),
            gb(down),
            down_why
        );
        let timed = |size: u64, time: std::time::Duration, bound: f64| {
            let rate = mb_per_s(size, time);
            (
                format!("{:.2} s, {rate:.0} MB/s", time.as_secs_f64()),
                format!("{:.0} %", 100.0 * rate * 1e6 / bound),
            )
        };
        for (t, b) in &self.big {
            let rss: Vec<String> = b
                .rss_mib
                .iter()
                .map(|(role, mib)| format!("{role} {mib:.0} MiB"))
                .collect();
            let (u, us) = timed(b.size, b.upload, up);
            let (r, rs) = timed(b.size, b.ready, ready);
            let (e, es) = timed(b.size, b.upload + b.ready, end_to_end);
            let (d, ds) = timed(b.size, b.download, down);
            // Against the reference at the same size: how many times as fast.
            let versus = match &self.reference {
                Some(r) if r.size == b.size => format!(
                    "{:.1}×, {:.1}×",
                    r.upload.as_secs_f64() / (b.upload + b.ready).as_secs_f64(),
                    r.download.as_secs_f64() / b.download.as_secs_f64()
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {u} | {us} | {r} | {rs} | {e} | {es} | {d} | {ds} | {versus} | {} |",
                t.label(),
                size_label(b.size),
                rss.join(", ")
            );
        }
        if let Some(r) = &self.reference {
            let (u, us) = timed(r.size, r.upload, up);
            let (d, ds) = timed(r.size, r.download, down);
            let _ = writeln!(
                out,
                "| reference Flask (SQLite) | {} | {u} | {us} | — | | {u} | {us} | {d} | {ds} | 1× | largest worker {:.0} MiB |",
                size_label(r.size),
                r.peak_rss_mib
            );
        }

        let _ = writeln!(
            out,
            "\n### 3. Many big transfers at once\n\n{STREAMS} uploads of {} MiB each started together, \
             then (once all are ready) {STREAMS} downloads of them together; the rates are the \
             total bytes over the wall time, and \"of one stream\" compares them with the 1 GiB \
             file of section 2. \"The disk path alone\" is the same number of files of the same \
             size written at once by the harness itself (a thread each, 256 KiB writes, then \
             fdatasync), right after the uploads, with the uploaded files still in the page \
             cache: the uploads' bound at that moment. Peak RSS is the sum of the service's \
             processes' `VmHWM`, the processes started afresh for this section. \
             `cargo bench --bench harness -- big concurrent`.\n\n\
             | topology | uploads together | of one stream | the disk path alone | of it | downloads together | of one stream | total peak RSS |\n\
             |---|---|---|---|---|---|---|---|",
            self.scale.concurrent_size >> 20
        );
        for (t, c) in &self.concurrent {
            let one = self.first_big(*t);
            let share = |together: f64, alone: Option<f64>| {
                alone.map_or_else(String::new, |a| format!("{:.0} %", 100.0 * together / a))
            };
            let (up, down) = (
                mb_per_s(c.total(), c.upload),
                mb_per_s(c.total(), c.download),
            );
            let _ = writeln!(
                out,
                "| {} | {:.2} s, {up:.0} MB/s | {} | {:.0} MB/s | {:.0} % | {:.2} s, {down:.0} MB/s | {} | {:.0} MiB |",
                t.label(),
                c.upload.as_secs_f64(),
                share(up, one.map(|b| mb_per_s(b.size, b.upload))),
                c.disk_at_once / 1e6,
                c.uploads_of_disk(),
                c.download.as_secs_f64(),
                share(down, one.map(|b| mb_per_s(b.size, b.download))),
                c.total_rss_mib
            );
        }

        self.bundle_table(&mut out);
        self.kms_table(&mut out);

        let seconds = self.scale.load_duration.as_secs();
        let _ = writeln!(
            out,
            "\n### 4. Small requests\n\nOne 4 KiB file's content, and its metadata, as its owner \
             (bearer token); the same content through a recipient's emailed link; and the \
             reference Flask implementation's 4 KiB download (session cookie). wrk with {seconds} s per row after a 1 s warm-up: `{}` (concurrency {:?}). \
             wrk shares the two cores with the service. \
             The limit is a bare poem server (Coffer's framework) answering 4 KiB from memory on a \
             runtime of its own, with nothing behind it, under the same wrk. \
             `cargo bench --bench harness -- small`.\n\n\
             | topology | request | concurrency | requests/s | of the limit | × reference | p50 | p99 |\n|---|---|---|---|---|---|---|---|",
            wrk_command(16, seconds),
            CONCURRENCY
        );
        let reference = self.reference.iter().flat_map(|r| &r.small);
        let rows = self
            .bare
            .iter()
            .map(|r| ("the limit: a bare server", r))
            .chain(self.small.iter().map(|(t, r)| (t.label(), r)))
            .chain(reference.map(|r| ("reference Flask (SQLite)", r)));
        for (label, r) in rows {
            // Downloads against the reference's 4 KiB download at the same concurrency.
            let versus = self
                .reference
                .iter()
                .flat_map(|reference| &reference.small)
                .find(|x| x.concurrency == r.concurrency && r.what.ends_with("4 KiB download"))
                .map_or_else(String::new, |x| {
                    format!("{:.1}×", r.per_second / x.per_second)
                });
            let limit = self
                .bare
                .iter()
                .find(|b| b.concurrency == r.concurrency)
                .map_or_else(String::new, |b| {
                    format!("{:.0} %", 100.0 * r.per_second / b.per_second)
                });
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {:.0} | {limit} | {versus} | {:.2} ms | {:.2} ms |",
                r.what, r.concurrency, r.per_second, r.p50_ms, r.p99_ms
            );
        }

        let _ = writeln!(
            out,
            "\n### 5. Small upload → ready\n\nOne 4 KiB PDF at a time, from the request's start \
             until the `ready_at` the service recorded (validate and encrypt jobs through the \
             queue, default `COFFER_POLL_INTERVAL_MS`). `cargo bench --bench harness -- latency`.\n\n\
             | topology | uploads | p50 | p99 | max |\n|---|---|---|---|---|"
        );
        for (t, l) in &self.latency {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
                t.label(),
                l.uploads,
                l.p50_ms,
                l.p99_ms,
                l.max_ms
            );
        }

        let _ = writeln!(
            out,
            "\n### 6. Logins during a big download\n\nThe biggest file downloaded alone, then again \
             while {LOGIN_CLIENTS} clients sign in back to back (argon2id, 19 MiB, t=2). \
             `cargo bench --bench harness -- logins`.\n\n\
             | topology | size | download alone | during logins | share kept | logins/s meanwhile |\n\
             |---|---|---|---|---|---|"
        );
        for (t, l) in &self.logins {
            let _ = writeln!(
                out,
                "| {} | {} GiB | {:.0} MB/s | {:.0} MB/s | {:.0} % | {:.1} |",
                t.label(),
                l.size >> 30,
                mb_per_s(l.size, l.alone),
                mb_per_s(l.size, l.with_logins),
                100.0 * l.alone.as_secs_f64() / l.with_logins.as_secs_f64(),
                l.logins_per_second
            );
        }

        let _ = writeln!(
            out,
            "\n### 7. Rotation and the audit chain\n\nIn process. Rewrap: {} ready files' data keys \
             rewrapped from master-key version 1 to 2 (`rotation::rotate` + `rewrap::run`). \
             Verify: a sealed chain of {} events recomputed (`audit::verify`), each with its \
             MAC checked, and the same without MACs (encoding v1) for the MAC's cost. \
             `cargo bench --bench harness -- rewrap verify`.\n\n\
             | what | database | count | time | per second |\n|---|---|---|---|---|",
            self.scale.rewrap_keys, self.scale.audit_events
        );
        for r in self.rewrap.iter().chain(&self.verify) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} s | {:.0} |",
                r.what,
                r.database,
                r.count,
                r.seconds,
                r.per_second()
            );
        }
        super::scale::render(&self.at_scale, &mut out);
        let _ = write!(out, "{END}");
        out
    }

    /// Replaces the text between the markers (or appends it when the file has none).
    pub fn write(&self, path: &std::path::Path) {
        let rendered = self.render();
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let new = match (old.find(START), old.find(END)) {
            (Some(start), Some(end)) if start < end => {
                format!("{}{rendered}{}", &old[..start], &old[end + END.len()..])
            }
            _ => format!("{}\n{rendered}\n", old.trim_end()),
        };
        std::fs::write(path, new).expect("write the report");
    }
}
