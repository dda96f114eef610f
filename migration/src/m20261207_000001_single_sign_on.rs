use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OidcLogins {
    Table,
    StateHash,
    BindingHash,
    Nonce,
    PkceVerifier,
    ReturnTo,
    Answer,
    LinkUserId,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum OidcIdentities {
    Table,
    Issuer,
    Subject,
    UserId,
    CreatedAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Method,
}

/// Single sign-on (OpenID Connect): the sign-ins sent to the provider and waiting for its
/// answer (kept in the database, keyed by the SHA-256 of their `state`, so that the answer may
/// reach another API instance; `binding_hash` ties each to the browser that started it), the
/// provider accounts linked to Coffer accounts (by issuer and `sub`, never by address), and how
/// each session was opened (`password`, `oidc`; NULL for sessions from before, all password).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OidcLogins::Table)
                    .col(binary(OidcLogins::StateHash).primary_key())
                    .col(binary(OidcLogins::BindingHash))
                    .col(string(OidcLogins::Nonce))
                    .col(string(OidcLogins::PkceVerifier))
                    .col(string_null(OidcLogins::ReturnTo))
                    .col(string(OidcLogins::Answer))
                    .col(uuid_null(OidcLogins::LinkUserId))
                    .col(timestamp_with_time_zone(OidcLogins::CreatedAt))
                    .col(timestamp_with_time_zone(OidcLogins::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OidcIdentities::Table)
                    .col(string(OidcIdentities::Issuer))
                    .col(string(OidcIdentities::Subject))
                    .col(uuid(OidcIdentities::UserId))
                    .col(timestamp_with_time_zone(OidcIdentities::CreatedAt))
                    .col(timestamp_with_time_zone(OidcIdentities::LastLoginAt))
                    .primary_key(
                        Index::create()
                            .col(OidcIdentities::Issuer)
                            .col(OidcIdentities::Subject),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oidc_identities_user_id")
                    .table(OidcIdentities::Table)
                    .col(OidcIdentities::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(string_null(Sessions::Method))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::Method)
                    .to_owned(),
            )
            .await?;
        for table in [
            OidcLogins::Table.into_iden(),
            OidcIdentities::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
