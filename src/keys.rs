//! `coffer keys …`: new key lines, rotation with a progress bar, rewrapping under a new HSM or
//! KMS key, and moving the keys between a keyring and an HSM or KMS.

use clap::Subcommand;
use coffer::coffer_core;
use coffer_core::Config;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new key line (`version:base64`) to add to COFFER_MASTER_KEYS / _FILE
    Generate {
        /// An audit key line (`audit:version:base64`) instead of a master key; with COFFER_KMS,
        /// the next audit key, made, wrapped and stored
        #[arg(long)]
        audit: bool,
    },
    /// Rotate to a new master-key version and wait, with a progress bar, until every key is rewrapped
    Rotate,
    /// Rewrap the master and audit keys under the HSM or KMS key COFFER_KMS names now (after
    /// pointing it at a new one); no data key or file is touched
    KmsRewrap {
        /// Every key, also those the configured key wrapped already (after the KMS rotated
        /// that key's material)
        #[arg(long)]
        all: bool,
    },
    /// Move the master and audit keys from the keyring into an HSM or KMS, or back into a new
    /// keyring file; resumable, and every file stays downloadable meanwhile
    Migrate {
        /// `pkcs11:token=…;object=…?module-path=…` (the PIN from COFFER_KMS_PIN_FILE),
        /// `aws-kms:<key ARN or alias/…>[?region=…&endpoint=…]`, or `file:/path/to/new/keyring`
        #[arg(long)]
        to: String,
    },
}

/// Runs `coffer keys …`.
pub async fn run(command: KeysCommand, config: Config) -> anyhow::Result<()> {
    use coffer_core::crypto::SecretKey;
    use coffer_core::jobs::rewrap;
    use coffer_core::services::rotation;
    match command {
        KeysCommand::Generate { audit } if held_by_kms(&config) => {
            if !audit {
                anyhow::bail!(
                    "with COFFER_KMS, Coffer generates master keys itself and the HSM or KMS wraps them: `coffer keys rotate` makes a new version"
                );
            }
            let core = coffer_core::Core::build(config, true).await?;
            let version = coffer_core::services::keys::kms::add_audit_key(
                &core,
                coffer_core::principal::Operator::Console,
            )
            .await?;
            println!(
                "audit key version {version} made and stored, wrapped by the HSM or KMS: restart every process, and new events are MACed and checkpoints signed with it (every older audit key stays, to check older events)"
            );
            Ok(())
        }
        KeysCommand::Generate { audit: true } => {
            let next = coffer::newest_audit_key_version(&config).map_or(1, |v| v + 1);
            eprintln!(
                "add this line to COFFER_MASTER_KEYS (comma-separated) or COFFER_MASTER_KEYS_FILE on every process and restart them; new events are then MACed and checkpoints signed with it (keep every older audit key: it still checks older events):"
            );
            println!("audit:{next}:{}", SecretKey::generate().to_base64());
            Ok(())
        }
        KeysCommand::Generate { audit: false } => {
            // Number it after the newest version this configuration's keyring holds.
            let next = coffer::newest_key_version(&config).map_or(1, |v| v + 1);
            eprintln!(
                "add this line to COFFER_MASTER_KEYS (comma-separated) or COFFER_MASTER_KEYS_FILE on every process, restart them, then run `coffer keys rotate`:"
            );
            println!("{next}:{}", SecretKey::generate().to_base64());
            Ok(())
        }
        KeysCommand::KmsRewrap { all } => {
            let core = coffer_core::Core::build(config, true).await?;
            let done = coffer_core::services::keys::kms::rewrap(
                &core,
                coffer_core::principal::Operator::Console,
                all,
                |now| eprintln!("rewrapped {} of {} keys", now.rewrapped, now.total),
            )
            .await?;
            println!(
                "{} of {} keys rewrapped under the configured HSM or KMS key",
                done.rewrapped, done.total
            );
            Ok(())
        }
        KeysCommand::Migrate { to } => {
            use coffer_core::services::keys::migrate::{self, Destination};
            let destination = Destination::parse(&to, config.kms_pin.clone())
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let core = coffer_core::Core::build(config, true).await?;
            let console = coffer_core::principal::Operator::Console;
            match destination {
                Destination::Kms(spec) => {
                    let done = migrate::to_kms(&core, console, &spec, |name, stored| {
                        let what = if stored {
                            "wrapped and stored"
                        } else {
                            "there already"
                        };
                        eprintln!("{name}: {what}");
                    })
                    .await?;
                    println!(
                        "{} keys wrapped by {spec} ({} there already). Now give every process COFFER_KMS={to} instead of its keyring and restart it; then `coffer keys rotate`, so that the keyring (and its copies) open nothing stored from then on.",
                        done.stored, done.already
                    );
                }
                Destination::File(path) => {
                    let done = migrate::to_file(&core, console, &path).await?;
                    println!(
                        "{} keys written to {} (mode 0600). Now give every process COFFER_MASTER_KEYS_FILE={} instead of COFFER_KMS and restart it.",
                        done.stored,
                        path.display(),
                        path.display()
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Rotate => {
            let core = coffer_core::Core::build(config, true).await?;
            let rotation = rotation::rotate(
                &core,
                coffer_core::principal::Operator::Console,
                &Default::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "rotating from version {} to {}: {} keys to rewrap",
                rotation.from, rotation.to, rotation.total
            );
            let bar = indicatif::ProgressBar::new(u64::try_from(rotation.total).unwrap_or(0));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} keys ({per_sec}, {eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            // Drive the batches here too: with workers running they share the work safely.
            let mut after = None;
            while let rewrap::Batch::More(next) = rewrap::rewrap_batch(&core, rotation.id, after)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                after = next;
                if let Some(now) =
                    rotation::progress(&core, coffer_core::principal::Operator::Console)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                {
                    bar.set_position(u64::try_from(now.done).unwrap_or(0));
                }
            }
            bar.finish();
            println!(
                "rotation to version {} finished; retired versions can now be removed from the keyring",
                rotation.to
            );
            Ok(())
        }
    }
}

fn held_by_kms(config: &Config) -> bool {
    matches!(
        config.master_keys,
        coffer_core::config::MasterKeySource::Kms(_)
    )
}
