use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    Role,
    Disabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Files {
    Table,
    Id,
    OwnerId,
    Name,
    Size,
    ContentType,
    Sha256,
    Status,
    RejectReason,
    QuarantineKey,
    QuarantineKekVersion,
    Dek,
    DekKekVersion,
    BlobId,
    CreatedAt,
    UpdatedAt,
    ReadyAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    ActorKind,
    ActorId,
    Ip,
    UserAgent,
    Action,
    TargetKind,
    TargetId,
    Outcome,
    Details,
    Seq,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(string_uniq(Users::Email))
                    .col(string(Users::PasswordHash))
                    .col(string(Users::Role))
                    .col(boolean(Users::Disabled).default(false))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(pk_uuid(Sessions::Id))
                    .col(uuid(Sessions::UserId))
                    .col(binary_uniq(Sessions::TokenHash))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Files::Table)
                    .col(pk_uuid(Files::Id))
                    .col(uuid(Files::OwnerId))
                    .col(string(Files::Name))
                    .col(big_integer(Files::Size))
                    .col(string_null(Files::ContentType))
                    .col(string(Files::Sha256))
                    .col(string(Files::Status))
                    .col(string_null(Files::RejectReason))
                    .col(binary_null(Files::QuarantineKey))
                    .col(integer_null(Files::QuarantineKekVersion))
                    .col(binary_null(Files::Dek))
                    .col(integer_null(Files::DekKekVersion))
                    .col(uuid_null(Files::BlobId))
                    .col(timestamp_with_time_zone(Files::CreatedAt))
                    .col(timestamp_with_time_zone(Files::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Files::ReadyAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Files::Table, Files::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_files_owner_id")
                    .table(Files::Table)
                    .col(Files::OwnerId)
                    .col(Files::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_files_status_updated")
                    .table(Files::Table)
                    .col(Files::Status)
                    .col(Files::UpdatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(pk_uuid(AuditEvents::Id))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .col(string(AuditEvents::ActorKind))
                    .col(string_null(AuditEvents::ActorId))
                    .col(string_null(AuditEvents::Ip))
                    .col(string_null(AuditEvents::UserAgent))
                    .col(string(AuditEvents::Action))
                    .col(string_null(AuditEvents::TargetKind))
                    .col(string_null(AuditEvents::TargetId))
                    .col(string(AuditEvents::Outcome))
                    .col(json(AuditEvents::Details))
                    .col(big_integer_null(AuditEvents::Seq).unique_key())
                    .col(binary_null(AuditEvents::Hash))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_audit_action", AuditEvents::Action),
            ("idx_audit_actor", AuditEvents::ActorId),
            ("idx_audit_target", AuditEvents::TargetId),
            ("idx_audit_occurred", AuditEvents::OccurredAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditEvents::Table.into_iden(),
            Files::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
