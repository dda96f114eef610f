use sea_orm::entity::prelude::*;

/// What proves a share's recipient holds the address the link was sent to: a six-digit code
/// emailed on request (`kind` "code"), and, once it is typed in, that browser's verified session
/// of the link ("session"). Only SHA-256 of either is kept.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "recipient_verifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub share_id: Uuid,
    pub kind: String,
    pub secret_hash: Vec<u8>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    /// Wrong codes typed against this one; it stops working after a few.
    pub failures: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
