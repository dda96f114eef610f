use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MfaTotp {
    Table,
    UserId,
    Secret,
    KekVersion,
    CreatedAt,
    ConfirmedAt,
    LastStep,
}

#[derive(DeriveIden)]
enum MfaRecoveryCodes {
    Table,
    CodeHash,
    UserId,
    UsedAt,
}

#[derive(DeriveIden)]
enum LoginChallenges {
    Table,
    TokenHash,
    UserId,
    CreatedAt,
    ExpiresAt,
    Attempts,
}

/// A second factor (TOTP, RFC 6238): each account's secret wrapped under a master-key version
/// like a file's key (`confirmed_at` NULL while enrolment waits for a first code; `last_step`
/// the time step of the last code accepted, so that no code is accepted twice); its recovery
/// codes, kept as SHA-256; and the sign-ins waiting for their second step (the challenge's
/// hash, so that the step may reach another API instance).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MfaTotp::Table)
                    .col(uuid(MfaTotp::UserId).primary_key())
                    .col(binary(MfaTotp::Secret))
                    .col(integer(MfaTotp::KekVersion))
                    .col(timestamp_with_time_zone(MfaTotp::CreatedAt))
                    .col(timestamp_with_time_zone_null(MfaTotp::ConfirmedAt))
                    .col(big_integer_null(MfaTotp::LastStep))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaRecoveryCodes::Table)
                    .col(binary(MfaRecoveryCodes::CodeHash).primary_key())
                    .col(uuid(MfaRecoveryCodes::UserId))
                    .col(timestamp_with_time_zone_null(MfaRecoveryCodes::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mfa_recovery_codes_user_id")
                    .table(MfaRecoveryCodes::Table)
                    .col(MfaRecoveryCodes::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(LoginChallenges::Table)
                    .col(binary(LoginChallenges::TokenHash).primary_key())
                    .col(uuid(LoginChallenges::UserId))
                    .col(timestamp_with_time_zone(LoginChallenges::CreatedAt))
                    .col(timestamp_with_time_zone(LoginChallenges::ExpiresAt))
                    .col(integer(LoginChallenges::Attempts))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MfaTotp::Table.into_iden(),
            MfaRecoveryCodes::Table.into_iden(),
            LoginChallenges::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
