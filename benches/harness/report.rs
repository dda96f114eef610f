//! What a run found, printed and written into BENCHMARKS.md between two markers (the text
//! around them, with the history of what changed, is kept).

use std::fmt::Write as _;
use std::time::Instant;

use super::Scale;
use super::big::{BigFile, mb_per_s};
use super::limits::Limits;
use super::load::{CONCURRENCY, Latency, LoadRun, wrk_command};
use super::logins::{LOGIN_CLIENTS, LoginsRun};
use super::stack::Topology;
use super::store::StoreRun;

const START: &str = "<!-- harness:start: written by bench/run.sh; edit outside the markers -->";
const END: &str = "<!-- harness:end -->";

pub struct Report {
    started: Instant,
    scale: Scale,
    pub limits: Option<Limits>,
    pub big: Vec<(Topology, BigFile)>,
    pub logins: Vec<(Topology, LoginsRun)>,
    pub small: Vec<(Topology, LoadRun)>,
    pub latency: Vec<(Topology, Latency)>,
    pub rewrap: Vec<StoreRun>,
    pub verify: Vec<StoreRun>,
}

fn gb(bytes_per_second: f64) -> String {
    format!("{:.2} GB/s", bytes_per_second / 1e9)
}

/// One core doing `stages` one after another on every byte: their rates add as resistances.
fn serial(stages: &[f64]) -> f64 {
    1.0 / stages.iter().map(|r| 1.0 / r).sum::<f64>()
}

impl Limits {
    /// What bounds an upload: the network, the disk, or one core hashing and sealing each byte.
    pub fn upload_bound(&self) -> (f64, &'static str) {
        [
            (self.loopback, "loopback TCP"),
            (self.disk_write, "disk write"),
            (
                serial(&[self.sha256, self.sealer]),
                "SHA-256 + seal on one core",
            ),
        ]
        .into_iter()
        .fold((f64::MAX, ""), |a, b| if b.0 < a.0 { b } else { a })
    }

    /// Validation opens and hashes every byte, encryption opens, hashes and seals it again.
    pub fn ready_bound(&self) -> (f64, &'static str) {
        let cpu = serial(&[
            self.opener,
            self.sha256,
            self.opener,
            self.sha256,
            self.sealer,
        ]);
        if self.disk_write < cpu {
            (self.disk_write, "disk write")
        } else {
            (cpu, "open + hash, then open + hash + seal, on one core")
        }
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
            logins: Vec::new(),
            small: Vec::new(),
            latency: Vec::new(),
            rewrap: Vec::new(),
            verify: Vec::new(),
        }
    }

    pub fn print_limits(&self) {
        if let Some(l) = &self.limits {
            println!(
                "limits: AES-256-GCM {} (Sealer {}, opener {}), SHA-256 {}, loopback {}, disk write {}",
                gb(l.aes_gcm),
                gb(l.sealer),
                gb(l.opener),
                gb(l.sha256),
                gb(l.loopback),
                gb(l.disk_write)
            );
        }
    }

    fn targets(&self, out: &mut String) {
        let one_gib = |t: Topology| {
            self.big
                .iter()
                .find(|(topology, b)| *topology == t && b.size == self.scale.big_sizes[0])
        };
        let mut rows: Vec<(String, String, bool)> = Vec::new();
        let mut download = Vec::new();
        let mut upload = Vec::new();
        for t in [Topology::Embedded, Topology::Postgres] {
            if let Some((_, b)) = one_gib(t) {
                download.push((t, mb_per_s(b.size, b.download)));
                upload.push((t, mb_per_s(b.size, b.upload)));
            }
        }
        let list = |v: &[(Topology, f64)], unit: &str| {
            v.iter()
                .map(|(t, x)| format!("{}: {x:.0} {unit}", t.label()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        rows.push((
            "1 GiB download ≥ 500 MB/s".into(),
            list(&download, "MB/s"),
            download.iter().all(|(_, x)| *x >= 500.0),
        ));
        rows.push((
            "1 GiB upload ingest ≥ 400 MB/s".into(),
            list(&upload, "MB/s"),
            upload.iter().all(|(_, x)| *x >= 400.0),
        ));
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
            rss.iter().all(|(_, _, mib)| *mib <= 64.0),
        ));
        let c16: Vec<&(Topology, LoadRun)> = self
            .small
            .iter()
            .filter(|(_, r)| r.what == "4 KiB download" && r.concurrency == 16)
            .collect();
        rows.push((
            "4 KiB downloads: p99 ≤ 10 ms at concurrency 16".into(),
            c16.iter()
                .map(|(t, r)| format!("{}: {:.2} ms", t.label(), r.p99_ms))
                .collect::<Vec<_>>()
                .join("; "),
            c16.iter().all(|(_, r)| r.p99_ms <= 10.0),
        ));
        let best: Vec<(Topology, f64)> = [Topology::Embedded, Topology::Postgres]
            .into_iter()
            .filter_map(|t| {
                self.small
                    .iter()
                    .filter(|(tt, r)| *tt == t && r.what == "4 KiB download")
                    .map(|(_, r)| r.per_second)
                    .reduce(f64::max)
                    .map(|x| (t, x))
            })
            .collect();
        rows.push((
            "4 KiB downloads ≥ 8,000 requests/s".into(),
            list(&best, "requests/s (best concurrency)"),
            best.iter().all(|(_, x)| *x >= 8000.0),
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
            redis.iter().all(|(_, l)| l.p50_ms <= 50.0),
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
            pg_rewrap.iter().all(|r| r.per_second() >= 20_000.0),
        ));
        rows.push((
            "verify ≥ 200,000 audit events/s".into(),
            self.verify
                .iter()
                .filter(|r| r.what == "verify audit events")
                .map(|r| format!("{}: {:.0}/s", r.database, r.per_second()))
                .collect::<Vec<_>>()
                .join("; "),
            self.verify
                .iter()
                .filter(|r| r.what == "verify audit events")
                .all(|r| r.per_second() >= 200_000.0),
        ));
        let _ = writeln!(out, "| target | this run | |\n|---|---|---|");
        for (target, measured, met) in rows {
            let _ = writeln!(out, "| {target} | {measured} | {} |", yes(met));
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
        ] {
            let _ = writeln!(out, "| {name} | {how} | {} |", gb(rate));
        }

        let (up, up_why) = limits.upload_bound();
        let (ready, ready_why) = limits.ready_bound();
        let (down, down_why) = limits.download_bound();
        let _ = writeln!(
            out,
            "\n### 2. Big files\n\nThe release binary over loopback: `coffer serve`, or `coffer api` + \
             `coffer worker` on PostgreSQL + Redis (blobs on the local disk in both). Each figure \
             is also given as a share of the limit that bounds it: upload {} ({}), ready {} ({}), \
             download {} ({}). Peak RSS is each process's `VmHWM` after the file. \
             `cargo bench --bench harness -- big`.\n\n\
             | topology | size | upload returns | of bound | ready after | of bound | download | of bound | peak RSS |\n\
             |---|---|---|---|---|---|---|---|---|",
            gb(up),
            up_why,
            gb(ready),
            ready_why,
            gb(down),
            down_why
        );
        for (t, b) in &self.big {
            let share = |time, bound: f64| 100.0 * mb_per_s(b.size, time) * 1e6 / bound;
            let rss: Vec<String> = b
                .rss_mib
                .iter()
                .map(|(role, mib)| format!("{role} {mib:.0} MiB"))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} GiB | {:.2} s, {:.0} MB/s | {:.0} % | {:.2} s, {:.0} MB/s | {:.0} % | {:.2} s, {:.0} MB/s | {:.0} % | {} |",
                t.label(),
                b.size as f64 / (1u64 << 30) as f64,
                b.upload.as_secs_f64(),
                mb_per_s(b.size, b.upload),
                share(b.upload, up),
                b.ready.as_secs_f64(),
                mb_per_s(b.size, b.ready),
                share(b.ready, ready),
                b.download.as_secs_f64(),
                mb_per_s(b.size, b.download),
                share(b.download, down),
                rss.join(", ")
            );
        }

        let seconds = self.scale.load_duration.as_secs();
        let _ = writeln!(
            out,
            "\n### 3. Small requests\n\nOne 4 KiB file's content, and its metadata, as its owner \
             (bearer token). wrk with {seconds} s per row after a 1 s warm-up: `{}` (concurrency {:?}). \
             wrk shares the two cores with the service. `cargo bench --bench harness -- small`.\n\n\
             | topology | request | concurrency | requests/s | p50 | p99 |\n|---|---|---|---|---|---|",
            wrk_command(16, seconds),
            CONCURRENCY
        );
        for (t, r) in &self.small {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms |",
                t.label(),
                r.what,
                r.concurrency,
                r.per_second,
                r.p50_ms,
                r.p99_ms
            );
        }

        let _ = writeln!(
            out,
            "\n### 4. Small upload → ready\n\nOne 4 KiB PDF at a time, from the request's start \
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
            "\n### 5. Logins during a big download\n\nThe biggest file downloaded alone, then again \
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
            "\n### 6. Rotation and the audit chain\n\nIn process. Rewrap: {} ready files' data keys \
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
