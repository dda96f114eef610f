use sea_orm::entity::prelude::*;

/// An account's TOTP secret, wrapped under a master-key version (the account's id is the
/// wrap's associated data).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mfa_totp")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub secret: Vec<u8>,
    pub kek_version: i32,
    pub created_at: DateTimeUtc,
    /// `None` while enrolment waits for the first code.
    pub confirmed_at: Option<DateTimeUtc>,
    /// The time step of the last code accepted: no code of it or before is accepted again.
    pub last_step: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
