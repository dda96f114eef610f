//! `coffer`: one binary for every role. CLI wiring only.

use std::io::BufRead as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer::{Roles, coffer_core};
use coffer_core::Config;
use coffer_core::crypto::KeyringSource;
use secrecy::SecretString;

mod keys;
use keys::KeysCommand;

#[derive(Parser)]
#[command(name = "coffer", version, about = "Self-hosted secure file sharing")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// API and workers in one process (the default)
    Serve,
    /// Only the HTTP API
    Api,
    /// Only the background workers
    Worker,
    /// Apply database migrations and exit
    Migrate,
    /// Administer accounts
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Master keys
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The audit log
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exit 1 if it is broken or does not contain the expected head
    Verify {
        /// An anchor kept outside Coffer, `seq:hash` (as printed by an earlier verify)
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account; reads the password from stdin
    Create {
        #[arg(long)]
        email: String,
        /// Make an existing account an admin, with the password given (it is signed out
        /// everywhere); without it an existing account is refused
        #[arg(long)]
        promote: bool,
    },
}

/// Logs go to stderr: human-readable, or one JSON object a line with `COFFER_LOG_FORMAT=json`.
/// Colours only on a terminal: a log file or journal gets plain text to grep.
fn init_tracing() -> Result<(), String> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("COFFER_LOG") {
        Ok(directives) => EnvFilter::try_new(&directives).map_err(|e| {
            format!("COFFER_LOG: a filter such as `info` or `info,coffer_api=debug` ({e})")
        })?,
        Err(_) => EnvFilter::new("info,sqlx=warn,sea_orm=warn,apalis=warn,apalis_core=warn"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match std::env::var("COFFER_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().init(),
        Ok("text") | Ok("") | Err(_) => builder.init(),
        Ok(_) => return Err("COFFER_LOG_FORMAT: `text` or `json`".into()),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
    tracing::info!("shutting down: finishing in-flight work");
}

fn banner(running: &coffer::Running) {
    let config = &running.core.config;
    if let Some(addr) = running.addr {
        let base = config.public_url.as_str().trim_end_matches('/');
        println!("Coffer is listening on http://{addr}");
        println!(
            "  web app:     {base}/   (sign up or in, upload, share; admins: the audit log, keys, users)"
        );
        println!("  Swagger UI:  {base}/docs   (OpenAPI document: {base}/openapi.json)");
    }
    if let Some(addr) = running.metrics_addr {
        println!("  metrics:     http://{addr}/metrics   (and /healthz, /readyz)");
    }
    println!("  database:    {}", redact(&config.database_url));
    println!("  storage:     {}", config.storage_url);
    if !running.core.mailer.sends() {
        println!(
            "  mail:        NOT SENT (COFFER_SMTP_URL is unset): emails wait in {}",
            config.data_dir.join("outbox").display()
        );
    }
    println!(
        "  queue:       {}",
        if config.redis_url.is_some() {
            "Redis"
        } else {
            "embedded (SQLite in the data dir)"
        }
    );
    match &running.core.keys.source {
        KeyringSource::Environment => println!("  master keys: COFFER_MASTER_KEYS"),
        KeyringSource::File(path) => println!("  master keys: {}", path.display()),
        KeyringSource::Kms(kms) => println!("  master keys: wrapped by {kms}"),
        KeyringSource::Generated(path) => {
            println!(
                "  master keys: {} (NEW: generated now; back this file up, it cannot be recovered)",
                path.display()
            );
        }
    }
    if config.is_embedded_database() {
        println!(
            "  data dir:    {}",
            std::path::absolute(&config.data_dir)
                .unwrap_or_else(|_| config.data_dir.clone())
                .display()
        );
    }
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let roles = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Roles::ALL,
        Command::Api => Roles::API,
        Command::Worker => Roles::WORKERS,
        Command::Migrate => {
            let db = coffer_core::db::connect(&config.database_url).await?;
            coffer_core::db::migrate(&db).await?;
            println!("migrations applied");
            return Ok(());
        }
        Command::Admin {
            command: AdminCommand::Create { email, promote },
        } => {
            let email = coffer_core::types::EmailAddress::parse(&email)
                .map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            eprintln!("password for {email} (one line on stdin):");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned());
            let core = coffer_core::Core::build(config, true).await?;
            let user = coffer_core::services::users::create_admin(&core, &email, password, promote)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{} is an admin (id {})", user.email, user.id);
            return Ok(());
        }
        Command::Keys { command } => return keys::run(command, config).await,
        Command::Audit {
            command: AuditCommand::Verify { expect_head },
        } => return verify_audit(config, expect_head).await,
    };
    let running = coffer::start(config, roles).await?;
    banner(&running);
    let stopper = running.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.cancel();
    });
    running.wait().await
}

async fn verify_audit(config: Config, expect_head: Option<String>) -> anyhow::Result<()> {
    use coffer_core::services::audit;
    let anchor = match expect_head.as_deref().map(|a| a.split_once(':')) {
        None => None,
        Some(Some((seq, hash))) => Some((
            seq.parse::<i64>()
                .map_err(|_| anyhow::anyhow!("--expect-head: SEQ must be a number"))?,
            hash.to_ascii_lowercase(),
        )),
        Some(None) => anyhow::bail!("--expect-head: expected SEQ:HASH"),
    };
    let core = coffer_core::Core::build(config, false).await?;
    let report = audit::verify(&core, coffer_core::principal::Operator::Console).await?;
    println!(
        "ok: {}\nchecked: {}\nhead: {}:{}\ncheckpoint: {}",
        report.ok,
        report.checked,
        report.head_seq.map_or("-".into(), |s| s.to_string()),
        report.head_hash.as_deref().unwrap_or("-"),
        report.checkpoint.as_ref().map_or("-".into(), |c| format!(
            "{}:{} at {} (audit key {})",
            c.seq, c.hash, c.at, c.key_version
        )),
    );
    for finding in &report.findings {
        println!("finding: {}: {}", finding.kind(), finding.describe());
    }
    if let Some(bad) = report.first_bad_seq {
        anyhow::bail!("the chain is broken at sequence number {bad}");
    }
    if !report.ok {
        anyhow::bail!(
            "the audit log is not intact ({} findings)",
            report.findings.len()
        );
    }
    if let Some((seq, hash)) = anchor {
        match audit::hash_at(&core, coffer_core::principal::Operator::Console, seq).await? {
            Some(stored) if stored == hash => println!("anchor {seq}: matches"),
            Some(_) => {
                anyhow::bail!("anchor {seq}: the stored hash differs: the log was rewritten")
            }
            None => {
                anyhow::bail!("anchor {seq}: no such event: the log was truncated or rewritten")
            }
        }
    }
    Ok(())
}

/// glibc's malloc gives each thread that finds the other arenas busy an arena of its own, up to
/// eight per core, and each keeps the memory freed in it: sixteen transfers at once held
/// 119–143 MiB with the default and 84–120 MiB with two arenas, at the same speed
/// (BENCHMARKS.md, "Memory with 16 transfers at once"). glibc reads the limit when a program
/// starts, and setting it from inside (`mallopt`) would need `unsafe`; so a service role
/// started without `MALLOC_ARENA_MAX` starts itself again with it, as the same program with
/// the same arguments and process id. An operator's own value is kept.
fn with_two_malloc_arenas(cli: &Cli) {
    use std::os::unix::process::CommandExt as _;
    let service = matches!(
        cli.command,
        None | Some(Command::Serve | Command::Api | Command::Worker)
    );
    if !service || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| "coffer".into());
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(program)
        .args(args)
        .env("MALLOC_ARENA_MAX", "2")
        .exec();
    // Reached only if it could not: the service runs on, with glibc's default arenas.
    eprintln!(
        "coffer: could not start again with MALLOC_ARENA_MAX=2 ({error}); running with glibc's default malloc arenas"
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    with_two_malloc_arenas(&cli);
    if let Err(err) = init_tracing() {
        eprintln!("coffer: configuration error: {err}");
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("coffer: configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("coffer: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("coffer: {err:#}");
            ExitCode::FAILURE
        }
    }
}
