use sea_orm::entity::prelude::*;

/// A recipient's complete download of a share that asks for receipts, waiting for (or past) the
/// email that tells the share's owner.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "download_receipts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    pub share_id: Uuid,
    pub file_name: String,
    /// The share's recipient; `None` for a link handed to the owner.
    pub recipient: Option<String>,
    pub downloaded_at: DateTimeUtc,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// When the email that told the owner went out; `None` while it waits.
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
