use sea_orm::entity::prelude::*;

use crate::states::ShareState;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "shares")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The share's first file (its only one, unless it is a bundle); all of them, with their
    /// downloads, are in `share_files`.
    pub file_id: Uuid,
    pub owner_id: Uuid,
    /// Email address the link goes to; `None` for a link handed to the owner.
    pub recipient: Option<String>,
    /// SHA-256 of the link's token; `None` until the link is issued.
    #[sea_orm(unique)]
    pub token_hash: Option<Vec<u8>>,
    pub state: ShareState,
    pub expires_at: DateTimeUtc,
    /// Complete downloads each file of the share allows (`share_files` counts them).
    pub max_downloads: Option<i32>,
    pub password_hash: Option<String>,
    /// Whether the recipient must prove the address the link was sent to (a code emailed to
    /// it) before downloading; `COFFER_REQUIRE_RECIPIENT_VERIFICATION` asks it of every share.
    pub verify_recipient: bool,
    /// Whether the owner is emailed a receipt when a recipient completes a download.
    pub receipts: bool,
    pub message: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub emailed_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// When an email job last took this share to send its link (a lease, not a lock).
    pub claimed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The shared file (a link is resolved with its file and sender in one query).
    #[sea_orm(
        belongs_to = "super::file::Entity",
        from = "Column::FileId",
        to = "super::file::Column::Id"
    )]
    File,
    /// The sender.
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::OwnerId",
        to = "super::user::Column::Id"
    )]
    Owner,
    /// Its files with their downloads (a link is resolved with its sender and files in one
    /// query).
    #[sea_orm(has_many = "super::share_file::Entity")]
    Files,
}

impl Related<super::file::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::File.def()
    }
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Owner.def()
    }
}

impl Related<super::share_file::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Files.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
