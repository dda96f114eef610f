//! Schema migrations: timestamped, append-only, independent of `entity`.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_init;
mod m20261122_000002_shares;
mod m20261122_000003_keys;
mod m20261202_000001_share_claims;
mod m20261203_000001_key_checks;
mod m20261203_000002_one_rotation;
mod m20261204_000001_file_attempts;
mod m20261204_000002_session_expiry;
mod m20261205_000001_audit_macs;
mod m20261205_000002_signup_policy;
mod m20261205_000003_email_verification;
mod m20261205_000004_password_resets;
mod m20261205_000005_audit_query_indexes;
mod m20261206_000001_api_tokens;
mod m20261206_000002_session_activity;
mod m20261206_000003_second_factor;
mod m20261207_000001_single_sign_on;
mod m20261208_000001_completed_downloads;
mod m20261209_000001_recipient_verification;
mod m20261209_000002_download_receipts;
mod m20261210_000001_share_files;
mod m20261211_000001_kms_wrapped_keys;
mod m20261212_000001_rewrap_in_place;
mod m20261213_000001_pending_audit_events;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_init::Migration),
            Box::new(m20261122_000002_shares::Migration),
            Box::new(m20261122_000003_keys::Migration),
            Box::new(m20261202_000001_share_claims::Migration),
            Box::new(m20261203_000001_key_checks::Migration),
            Box::new(m20261203_000002_one_rotation::Migration),
            Box::new(m20261204_000001_file_attempts::Migration),
            Box::new(m20261204_000002_session_expiry::Migration),
            Box::new(m20261205_000001_audit_macs::Migration),
            Box::new(m20261205_000002_signup_policy::Migration),
            Box::new(m20261205_000003_email_verification::Migration),
            Box::new(m20261205_000004_password_resets::Migration),
            Box::new(m20261205_000005_audit_query_indexes::Migration),
            Box::new(m20261206_000001_api_tokens::Migration),
            Box::new(m20261206_000002_session_activity::Migration),
            Box::new(m20261206_000003_second_factor::Migration),
            Box::new(m20261207_000001_single_sign_on::Migration),
            Box::new(m20261208_000001_completed_downloads::Migration),
            Box::new(m20261209_000001_recipient_verification::Migration),
            Box::new(m20261209_000002_download_receipts::Migration),
            Box::new(m20261210_000001_share_files::Migration),
            Box::new(m20261211_000001_kms_wrapped_keys::Migration),
            Box::new(m20261212_000001_rewrap_in_place::Migration),
            Box::new(m20261213_000001_pending_audit_events::Migration),
        ]
    }
}
