//! The benchmark harness (issue 8): the machine's limits first, then the service against them,
//! in one run. `bench/run.sh` runs it all and rewrites BENCHMARKS.md; `cargo bench --bench
//! harness -- <section…>` runs some sections and only prints (sections: limits, big, small,
//! concurrent, bundle, latency, logins, rewrap, verify, reference, kms, scale; `--quick` shrinks the
//! sizes for a smoke run; `--topology embedded|postgres` measures the service on one only).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark stops at the first thing that does not work, saying what"
)]

#[path = "../../tests/e2e/common/mod.rs"]
#[allow(
    dead_code,
    reason = "the harness uses the part of the tests' one it needs"
)]
mod common;

mod big;
mod bulk;
mod bundle;
mod concurrent;
mod kms;
mod limits;
mod load;
mod logins;
mod reference;
mod report;
mod scale;
mod scale_seed;
mod stack;
mod store;

use std::time::Duration;

use report::Report;
use stack::{Stack, Topology};

const SECTIONS: [&str; 12] = [
    "limits",
    "big",
    "concurrent",
    "bundle",
    "small",
    "latency",
    "logins",
    "rewrap",
    "verify",
    "reference",
    "kms",
    "scale",
];

/// What one run covers; `--quick` is for checking the harness itself, not for figures.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub big_sizes: [u64; 2],
    /// Each file's size when [`concurrent::STREAMS`] transfers run at once.
    pub concurrent_size: u64,
    /// Each file's size in the bundle whose "Download all" is timed.
    pub bundle_size: u64,
    pub load_duration: Duration,
    pub small_uploads: usize,
    pub rewrap_keys: usize,
    pub audit_events: i64,
    /// Files in the `scale` section's store (five shares and twenty audit events each).
    pub scale_files: u64,
}

const FULL: Scale = Scale {
    big_sizes: [1 << 30, 4 << 30],
    concurrent_size: 256 << 20,
    bundle_size: 1 << 30,
    load_duration: Duration::from_secs(8),
    small_uploads: 200,
    rewrap_keys: 100_000,
    audit_events: 1_000_000,
    scale_files: 1_000_000,
};

const QUICK: Scale = Scale {
    big_sizes: [64 << 20, 128 << 20],
    concurrent_size: 16 << 20,
    bundle_size: 32 << 20,
    load_duration: Duration::from_secs(1),
    small_uploads: 20,
    rewrap_keys: 5_000,
    audit_events: 20_000,
    scale_files: 10_000,
};

#[tokio::main]
async fn main() {
    let mut write = None;
    let mut wanted = Vec::new();
    let mut scale = FULL;
    let mut topologies = vec![Topology::Embedded, Topology::Postgres];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {} // cargo bench passes this to every target
            "--quick" => scale = QUICK,
            "--write" => write = Some(args.next().expect("--write needs a file")),
            "--topology" => {
                topologies = match args.next().as_deref() {
                    Some("embedded") => vec![Topology::Embedded],
                    Some("postgres") => vec![Topology::Postgres],
                    other => panic!("--topology takes embedded or postgres, not {other:?}"),
                }
            }
            section if SECTIONS.contains(&section) => wanted.push(section.to_owned()),
            other => panic!("unknown argument {other}; sections are {SECTIONS:?}"),
        }
    }
    if wanted.is_empty() {
        wanted = SECTIONS.iter().map(|s| (*s).to_owned()).collect();
    }
    let all = wanted.len() == SECTIONS.len();
    let wants = |s: &str| wanted.iter().any(|w| w == s);
    let mut report = Report::new(scale);

    // `cargo bench` has just written the build's output (560 MB after a change in core), and
    // the kernel writes it back about 30 s later: the SQLite commits of the first section
    // measured then waited 24–36 ms for their syncs, where 6 ms was the most otherwise. Written
    // back now, before anything is measured.
    quiet_disk();

    // Limits first: every later figure is read against them.
    if wants("limits") || wants("big") || wants("concurrent") || wants("bundle") || wants("logins")
    {
        report.limits = Some(limits::measure().await);
        report.print_limits();
    }
    if wants("small") {
        // The small requests' limit on this machine, before any service runs.
        for run in load::bare_server(scale.load_duration).await {
            println!("limit: {}", run.line_alone());
            report.bare.push(run);
        }
    }
    for &topology in &topologies {
        if !(wants("big")
            || wants("concurrent")
            || wants("bundle")
            || wants("small")
            || wants("latency")
            || wants("logins"))
        {
            break;
        }
        let mut stack = Stack::start(topology).await;
        let http = reqwest::Client::new();
        let token = stack.user_token(&http).await;
        if wants("big") || wants("logins") {
            let mut biggest = None;
            // First the size the reference implementation is measured at, then the big ones.
            for size in std::iter::once(reference::SIZE).chain(scale.big_sizes) {
                let run = big::round_trip(&stack, &http, &token, size).await;
                println!("{}", run.line(topology));
                biggest = Some(run.id.clone());
                report.big.push((topology, run));
            }
            if wants("logins")
                && let Some(id) = biggest
            {
                let run = logins::during_download(&stack, &http, &token, &id).await;
                println!("{}", run.line(topology));
                report.logins.push((topology, run));
            }
        }
        if wants("concurrent") {
            // Processes of its own: their peak memory is then the sixteen transfers', not the
            // 4 GiB file's of section 2 (measured there, per process).
            stack.stop_processes();
            stack.restart_processes();
            let run = concurrent::transfers(&stack, &http, &token, scale.concurrent_size).await;
            println!("{}", run.line(topology));
            report.concurrent.push((topology, run));
        }
        if wants("bundle") {
            let run = bundle::download_all(&stack, &http, &token, scale.bundle_size).await;
            println!("{}", run.line(topology));
            report.bundle.push((topology, run));
        }
        if wants("small") {
            // Whatever the sections before wrote after their own sync is written back first.
            quiet_disk();
            for run in load::small_requests(&stack, &http, &token, scale.load_duration).await {
                println!("{}", run.line(topology));
                report.small.push((topology, run));
            }
        }
        if wants("latency") {
            let run = load::upload_to_ready(&stack, &http, &token, scale.small_uploads).await;
            println!("{}", run.line(topology));
            report.latency.push((topology, run));
        }
        stack.stop().await;
    }
    if wants("reference") {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // gunicorn closes idle connections after 2 s; a new one per request is what it
            // expects (a reused one it had closed once failed the run).
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        if let Some(app) = reference::Reference::start(&http).await {
            let run = app.measure(&http, scale.load_duration).await;
            for line in run.lines() {
                println!("{line}");
            }
            report.reference = Some(run);
        }
    }
    if wants("rewrap") {
        for run in store::rewrap(scale.rewrap_keys).await {
            println!("{}", run.line());
            report.rewrap.push(run);
        }
    }
    if wants("verify") {
        for run in store::verify(scale.audit_events).await {
            println!("{}", run.line());
            report.verify.push(run);
        }
    }
    if wants("kms") {
        for &topology in &topologies {
            let run = kms::compare(topology, scale.load_duration, scale.big_sizes[0]).await;
            println!("{}", run.line(topology));
            report.kms.push((topology, run));
        }
    }
    if wants("scale") {
        for &topology in &topologies {
            let duration = scale.load_duration.min(Duration::from_secs(5));
            let run = scale::measure(topology, scale.scale_files, duration).await;
            for line in run.lines() {
                println!("{line}");
            }
            report.at_scale.push(run);
        }
        // The section as BENCHMARKS.md shows it, plans and all.
        let mut section = String::new();
        scale::render(&report.at_scale, &mut section);
        println!("{section}");
    }

    if let Some(path) = write {
        assert!(
            all && topologies.len() == 2,
            "--write rewrites the whole results section: run every section on both topologies"
        );
        report.write(std::path::Path::new(&path));
        println!("wrote {path}");
    }
}

/// Writes back what earlier work left dirty in the page cache (a build, an earlier section's
/// files), so that the kernel's write-back, about 30 s later, does not land in a measurement.
pub fn quiet_disk() {
    let synced = std::process::Command::new("sync").status();
    assert!(
        synced.as_ref().is_ok_and(|s| s.success()),
        "sync failed: {synced:?}"
    );
}
