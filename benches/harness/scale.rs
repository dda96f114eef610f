//! Cost as the data grows (issue 17, point 4): the service on a database holding a million
//! files, five million shares and twenty million audit events (`scale_seed`), on SQLite
//! (`coffer serve`) and on PostgreSQL + Redis (`coffer api` + `coffer worker`). Reads are timed
//! one at a time through the API under wrk (their p50 and p99); the export through the API;
//! the sweep, a rotation of every data key and a verification of the whole chain in process,
//! on the same store, once the service has stopped. Each read's statement is shown with its
//! plan as the database chose it (`EXPLAIN ANALYZE` on PostgreSQL, `EXPLAIN QUERY PLAN` on
//! SQLite).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use coffer::coffer_core::jobs::{rewrap, sweep};
use coffer::coffer_core::services::{audit, files, rotation};
use coffer::coffer_core::{Config, Core, KeyringUse};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait as _, DbBackend, EntityTrait as _, QueryFilter as _,
    QueryTrait as _,
};

use super::load::{LoadRun, wrk_report};
use super::scale_seed::{self, HISTORY_DAYS, RARE_ACTION, Seeded};
use super::stack::{Stack, Topology, USER};

/// One read, timed one request at a time.
pub struct Read {
    pub what: String,
    pub run: LoadRun,
    /// The issue's target for it, in milliseconds at p99, where it names one.
    pub p99_target_ms: Option<f64>,
}

pub struct ScaleRun {
    pub topology: Topology,
    pub seeded: SeedFigures,
    pub reads: Vec<Read>,
    /// Events per second through `GET /api/v1/admin/audit/export?format=jsonl`.
    pub export_per_second: f64,
    pub export_events: u64,
    pub sweep_seconds: f64,
    pub rotation: (u64, f64),
    pub verify: (u64, f64),
    /// Each read's statement and its plan.
    pub plans: Vec<(String, String, String)>,
}

pub struct SeedFigures {
    pub files: u64,
    pub shares: u64,
    pub events: u64,
    pub seconds: f64,
}

impl ScaleRun {
    pub fn lines(&self) -> Vec<String> {
        let label = self.topology.label();
        let mut lines = vec![format!(
            "{label}: seeded {} files, {} shares, {} events in {:.0} s",
            self.seeded.files, self.seeded.shares, self.seeded.events, self.seeded.seconds
        )];
        for r in &self.reads {
            lines.push(format!(
                "{label}: {}: p50 {:.2} ms, p99 {:.2} ms, {:.0}/s",
                r.what, r.run.p50_ms, r.run.p99_ms, r.run.per_second
            ));
        }
        lines.push(format!(
            "{label}: export {} events at {:.0}/s; sweep {:.2} s; rotation {}/s; verify {}/s",
            self.export_events,
            self.export_per_second,
            self.sweep_seconds,
            rate(self.rotation),
            rate(self.verify)
        ));
        lines
    }

    pub fn rotation_per_second(&self) -> f64 {
        self.rotation.0 as f64 / self.rotation.1
    }

    pub fn verify_per_second(&self) -> f64 {
        self.verify.0 as f64 / self.verify.1
    }
}

fn rate((count, seconds): (u64, f64)) -> String {
    format!("{:.0}", count as f64 / seconds)
}

/// Seeds, measures and removes one topology's store.
pub async fn measure(topology: Topology, files: u64, duration: Duration) -> ScaleRun {
    let mut stack = Stack::start(topology).await;
    let http = reqwest::Client::new();
    let token = stack.user_token(&http).await;
    // The seeded chain continues from what the service sealed; the service stops meanwhile,
    // or its own events (a checkpoint, say) would take the next numbers.
    let core = in_process(&stack).await;
    wait_sealed(&core).await;
    stack.stop_processes();
    let seeded = scale_seed::seed(&core, USER.0, files).await;
    stack.restart_processes();
    // The role is read at each request; the same session now acts as an admin.
    let reads = reads(&stack, &http, &token, &seeded, duration).await;
    let (export_events, export_per_second) = export(&stack, &http, &token).await;
    let plans = plans(&core, &seeded).await;
    stack.stop_processes();

    let started = Instant::now();
    sweep::sweep(&core).await.expect("sweep");
    let sweep_seconds = started.elapsed().as_secs_f64();
    let rotation = rotate(&stack, &core).await;
    let started = Instant::now();
    let report = audit::verify(&core, coffer::coffer_core::principal::Operator::Console)
        .await
        .expect("verify");
    let verify = (report.checked, started.elapsed().as_secs_f64());
    assert!(report.ok, "the seeded chain verifies: {report:?}");
    drop(core);
    stack.stop().await;
    ScaleRun {
        topology,
        seeded: SeedFigures {
            files: seeded.files,
            shares: seeded.shares,
            events: seeded.events,
            seconds: seeded.seconds,
        },
        reads,
        export_per_second,
        export_events,
        sweep_seconds,
        rotation,
        verify,
        plans,
    }
}

/// A core in the harness's process on the service's store, with the service's keyring.
async fn in_process(stack: &Stack) -> Core {
    let mut vars = stack.vars().to_vec();
    vars.push(("COFFER_LOG".into(), "warn".into()));
    Core::build_with(
        Config::from_vars(vars).expect("config"),
        false,
        KeyringUse::MustExist,
    )
    .await
    .expect("a core on the service's store")
}

async fn wait_sealed(core: &Core) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let unsealed = entity::audit_event::Entity::find()
            .filter(entity::audit_event::Column::Seq.is_null())
            .all(core.db())
            .await
            .expect("unsealed events");
        if unsealed.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "events left unsealed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reads(
    stack: &Stack,
    http: &reqwest::Client,
    token: &str,
    seeded: &Seeded,
    duration: Duration,
) -> Vec<Read> {
    let newest = seeded.bench_files.last().expect("bench files").to_string();
    let middle = seeded.bench_files[seeded.bench_files.len() / 2].to_string();
    // A real share of the bench user's newest file, among millions of seeded ones.
    let link = stack.share_link(http, token, &newest).await;
    let week_ago = (chrono::Utc::now() - chrono::Duration::days(7)).to_rfc3339();
    let (day_from, day_to) = (
        chrono::Utc::now() - chrono::Duration::days(HISTORY_DAYS / 2),
        chrono::Utc::now() - chrono::Duration::days(HISTORY_DAYS / 2 - 1),
    );
    let audit = "/api/v1/admin/audit";
    let enc = |t: chrono::DateTime<chrono::Utc>| super::common::percent_encode(&t.to_rfc3339());
    let wanted: Vec<(String, String, Option<f64>)> = vec![
        (
            "list own files, first page".into(),
            "/api/v1/files".into(),
            Some(5.0),
        ),
        (
            "list own files, a page halfway".into(),
            format!("/api/v1/files?cursor={middle}"),
            Some(5.0),
        ),
        (
            "file metadata".into(),
            format!("/api/v1/files/{newest}"),
            None,
        ),
        ("audit: no filter".into(), audit.into(), Some(50.0)),
        (
            "audit: action (common)".into(),
            format!("{audit}?action=file.uploaded"),
            Some(50.0),
        ),
        (
            "audit: action (rare)".into(),
            format!("{audit}?action={RARE_ACTION}"),
            Some(50.0),
        ),
        (
            "audit: actor".into(),
            format!("{audit}?actor_id={}", seeded.actor),
            Some(50.0),
        ),
        (
            "audit: target".into(),
            format!("{audit}?target_id={}", seeded.target),
            Some(50.0),
        ),
        (
            "audit: since a week ago".into(),
            format!("{audit}?since={}", super::common::percent_encode(&week_ago)),
            Some(50.0),
        ),
        (
            "audit: one day, half a year ago".into(),
            format!("{audit}?since={}&until={}", enc(day_from), enc(day_to)),
            Some(50.0),
        ),
        (
            "audit: a page halfway (cursor)".into(),
            format!("{audit}?after_seq={}", seeded.events / 2),
            Some(50.0),
        ),
    ];
    let bearer = format!("Authorization: Bearer {token}");
    let mut reads = Vec::new();
    for (what, path, target) in wanted {
        let url = format!("{}{path}", stack.base);
        // A second first, for the connection and the pages this read touches.
        wrk_report(&url, &bearer, 1, Duration::from_secs(1)).await;
        let run = wrk_report(&url, &bearer, 1, duration).await;
        reads.push(Read {
            what,
            run,
            p99_target_ms: target,
        });
    }
    wrk_report(&link, "Accept: text/html", 1, Duration::from_secs(1)).await;
    let run = wrk_report(&link, "Accept: text/html", 1, duration).await;
    reads.push(Read {
        what: "recipient page".into(),
        run,
        p99_target_ms: None,
    });
    reads
}

/// The whole log through the API, as an admin exports it.
async fn export(stack: &Stack, http: &reqwest::Client, token: &str) -> (u64, f64) {
    use futures::StreamExt as _;
    let started = Instant::now();
    let response = http
        .get(format!(
            "{}/api/v1/admin/audit/export?format=jsonl",
            stack.base
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("export");
    assert!(response.status().is_success(), "{}", response.status());
    let mut lines = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        lines += bytecount(&chunk.expect("export body"));
    }
    (lines, lines as f64 / started.elapsed().as_secs_f64())
}

fn bytecount(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

/// A rotation of every data key to a new master-key version, as `coffer keys rotate` starts
/// it and the rewrap job runs it.
async fn rotate(stack: &Stack, core: &Core) -> (u64, f64) {
    let file = stack
        .vars()
        .iter()
        .find(|(k, _)| k == "COFFER_MASTER_KEYS_FILE")
        .map(|(_, v)| v.clone());
    if let Some(file) = file {
        // The operator's step on a keyring file: add the next version, then rotate.
        let mut text = std::fs::read_to_string(&file).expect("keyring");
        let _ = writeln!(
            text,
            "2:{}",
            coffer::coffer_core::crypto::SecretKey::generate().to_base64()
        );
        std::fs::write(&file, text).expect("keyring");
    }
    let started = Instant::now();
    let rotation = rotation::rotate(
        core,
        coffer::coffer_core::principal::Operator::Console,
        &Default::default(),
    )
    .await
    .expect("rotate");
    rewrap::run(core, rotation.id).await.expect("rewrap");
    let seconds = started.elapsed().as_secs_f64();
    let done = rotation::progress(core, coffer::coffer_core::principal::Operator::Console)
        .await
        .expect("progress")
        .expect("rotation");
    (done.done as u64, seconds)
}

/// Each read's statement, as the service builds it, and the plan the database chose.
async fn plans(core: &Core, seeded: &Seeded) -> Vec<(String, String, String)> {
    use entity::{file, share, user};
    let db = core.db();
    let backend = db.get_database_backend();
    let owner = bench_owner(core, seeded).await;
    let newest = *seeded.bench_files.last().expect("bench files");
    let middle = seeded.bench_files[seeded.bench_files.len() / 2];
    let query = |f: fn(&mut audit::Query)| {
        let mut q = audit::Query {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let (actor, target) = (seeded.actor.to_string(), seeded.target.to_string());
    let mut statements: Vec<(String, sea_orm::Statement)> = vec![
        (
            "list own files, first page".into(),
            files::list_select(owner, None, 50).build(backend),
        ),
        (
            "list own files, a page halfway".into(),
            files::list_select(owner, Some(middle), 50).build(backend),
        ),
        (
            "file metadata".into(),
            file::Entity::find_by_id(newest)
                .filter(file::Column::OwnerId.eq(owner))
                .filter(file::Column::Status.ne(entity::FileStatus::Deleted))
                .build(backend),
        ),
        (
            "recipient page".into(),
            share::Entity::find()
                .filter(share::Column::TokenHash.eq(vec![7u8; 32]))
                .find_also_related(file::Entity)
                .find_also_related(user::Entity)
                .build(backend),
        ),
        (
            "audit: no filter".into(),
            audit::select(&query(|_| {}), None).build(backend),
        ),
        (
            "audit: action (common)".into(),
            audit::select(&query(|q| q.action = Some("file.uploaded".into())), None).build(backend),
        ),
        (
            "audit: action (rare)".into(),
            audit::select(&query(|q| q.action = Some(RARE_ACTION.into())), None).build(backend),
        ),
    ];
    let mut with = |what: &str, q: audit::Query| {
        statements.push((what.into(), audit::select(&q, None).build(backend)));
    };
    let base = query(|_| {});
    with(
        "audit: actor",
        audit::Query {
            actor_id: Some(actor),
            ..base.clone()
        },
    );
    with(
        "audit: target",
        audit::Query {
            target_id: Some(target),
            ..base.clone()
        },
    );
    with(
        "audit: since a week ago",
        audit::Query {
            since: Some(chrono::Utc::now() - chrono::Duration::days(7)),
            ..base.clone()
        },
    );
    with(
        "audit: one day, half a year ago",
        audit::Query {
            since: Some(chrono::Utc::now() - chrono::Duration::days(HISTORY_DAYS / 2)),
            until: Some(chrono::Utc::now() - chrono::Duration::days(HISTORY_DAYS / 2 - 1)),
            ..base.clone()
        },
    );
    with(
        "audit: a page halfway (cursor)",
        audit::Query {
            after_seq: Some(seeded.events as i64 / 2),
            ..base
        },
    );
    let mut plans = Vec::new();
    for (what, statement) in statements {
        let sql = statement.to_string();
        // The column list says nothing about the plan.
        let shown = match (sql.find("SELECT "), sql.find(" FROM ")) {
            (Some(0), Some(from)) => format!("SELECT …{}", &sql[from..]),
            _ => sql.clone(),
        };
        let explain = match backend {
            DbBackend::Postgres => format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"),
            _ => format!("EXPLAIN QUERY PLAN {sql}"),
        };
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(backend, explain))
            .await
            .expect("explain");
        let plan: Vec<String> = rows
            .iter()
            .map(|row| match backend {
                DbBackend::Postgres => row.try_get::<String>("", "QUERY PLAN").unwrap_or_default(),
                _ => row.try_get::<String>("", "detail").unwrap_or_default(),
            })
            .collect();
        plans.push((what, shown, plan.join("\n")));
    }
    plans
}

async fn bench_owner(core: &Core, seeded: &Seeded) -> uuid::Uuid {
    let newest = *seeded.bench_files.last().expect("bench files");
    entity::file::Entity::find_by_id(newest)
        .one(core.db())
        .await
        .expect("a bench file")
        .expect("a bench file")
        .owner_id
}

/// The section in BENCHMARKS.md.
pub fn render(runs: &[ScaleRun], out: &mut String) {
    let Some(first) = runs.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n### 8. Cost as the data grows\n\nA store of {} files (a tenth of them the bench \
         user's), {} shares (a tenth live) and {} audit events over {HISTORY_DAYS} days, \
         generated straight into the database (`benches/harness/scale_seed.rs`) beside what \
         the service wrote itself, the secondary indexes built once the rows were in (as a \
         bulk load does; those of constraints kept throughout); PostgreSQL's statistics \
         gathered once after the load (autovacuum's job), SQLite's never (Coffer does not \
         ask). Reads one at a time through \
         the API under wrk; export through the API; sweep, rotation and verify in process \
         once the service stopped. `cargo bench --bench harness -- scale`.\n",
        first.seeded.files, first.seeded.shares, first.seeded.events
    );
    let _ = writeln!(
        out,
        "| read | target p99 | {} |\n|---|---|{}",
        runs.iter()
            .map(|r| format!("{} p50 / p99", r.topology.label()))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(runs.len())
    );
    for (i, read) in first.reads.iter().enumerate() {
        let cells: Vec<String> = runs
            .iter()
            .filter_map(|r| r.reads.get(i))
            .map(|r| format!("{:.2} / {:.2} ms", r.run.p50_ms, r.run.p99_ms))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            read.what,
            read.p99_target_ms
                .map_or("—".to_owned(), |t| format!("≤ {t:.0} ms")),
            cells.join(" | ")
        );
    }
    let _ = writeln!(
        out,
        "\n| work | {} |\n|---|{}",
        runs.iter()
            .map(|r| r.topology.label())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(runs.len())
    );
    let row = |what: &str, cell: &dyn Fn(&ScaleRun) -> String| {
        format!(
            "| {what} | {} |",
            runs.iter().map(cell).collect::<Vec<_>>().join(" | ")
        )
    };
    for line in [
        row("seeding (harness)", &|r| {
            format!("{:.0} s", r.seeded.seconds)
        }),
        row("audit export (JSON lines)", &|r| {
            format!("{} events, {:.0}/s", r.export_events, r.export_per_second)
        }),
        row("sweep", &|r| format!("{:.2} s", r.sweep_seconds)),
        row("rotation of every data key", &|r| {
            format!(
                "{} in {:.1} s = {:.0}/s",
                r.rotation.0,
                r.rotation.1,
                r.rotation_per_second()
            )
        }),
        row("verify the whole chain", &|r| {
            format!(
                "{} in {:.1} s = {:.0}/s",
                r.verify.0,
                r.verify.1,
                r.verify_per_second()
            )
        }),
    ] {
        let _ = writeln!(out, "{line}");
    }
    for run in runs {
        let _ = writeln!(
            out,
            "\n<details><summary>Plans on {}</summary>\n",
            run.topology.label()
        );
        for (what, sql, plan) in &run.plans {
            let _ = writeln!(
                out,
                "**{what}**\n\n```sql\n{sql}\n```\n\n```\n{plan}\n```\n"
            );
        }
        let _ = writeln!(out, "</details>");
    }
}

/// Issue 17's point-4 targets: (target, this run, met).
pub fn targets(runs: &[ScaleRun]) -> Vec<(String, String, bool)> {
    if runs.is_empty() {
        return Vec::new();
    }
    let p99 = |pick: &dyn Fn(&Read) -> bool| -> (String, bool) {
        let mut cells = Vec::new();
        let mut met = true;
        for run in runs {
            let worst = run
                .reads
                .iter()
                .filter(|r| pick(r))
                .max_by(|a, b| a.run.p99_ms.total_cmp(&b.run.p99_ms));
            if let Some(r) = worst {
                met &= r.p99_target_ms.is_none_or(|t| r.run.p99_ms <= t);
                cells.push(format!(
                    "{}: {:.2} ms ({})",
                    run.topology.label(),
                    r.run.p99_ms,
                    r.what
                ));
            }
        }
        (cells.join("; "), met)
    };
    let (files, files_met) = p99(&|r| r.what.starts_with("list own files"));
    let (audit, audit_met) = p99(&|r| r.what.starts_with("audit:"));
    let pg: Vec<&ScaleRun> = runs
        .iter()
        .filter(|r| r.topology == Topology::Postgres)
        .collect();
    let rotation = pg
        .iter()
        .map(|r| format!("{:.0}/s", r.rotation_per_second()))
        .collect::<Vec<_>>()
        .join("; ");
    let verify = runs
        .iter()
        .map(|r| format!("{}: {:.0}/s", r.topology.label(), r.verify_per_second()))
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        (
            "at scale: list own files p99 ≤ 5 ms".into(),
            files,
            files_met,
        ),
        (
            "at scale: audit query, each filter, p99 ≤ 50 ms (worst shown)".into(),
            audit,
            audit_met,
        ),
        (
            "at scale: rotation of every data key ≥ 50,000/s on PostgreSQL".into(),
            rotation,
            !pg.is_empty() && pg.iter().all(|r| r.rotation_per_second() >= 50_000.0),
        ),
        (
            "at scale: verify ≥ 200,000 events/s on both".into(),
            verify,
            runs.iter().all(|r| r.verify_per_second() >= 200_000.0),
        ),
    ]
}
