use sea_orm::entity::prelude::*;

/// A file of a share, in the order the recipient sees them, with its downloads: each file of a
/// share counts its own against the share's `max_downloads`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "share_files")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub share_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub file_id: Uuid,
    pub position: i32,
    /// Complete downloads of the file through the share, and those under way (each claims its
    /// place at its start and gives it back if it stops short): never more than the share's
    /// `max_downloads`.
    pub downloads_used: i32,
    /// Downloads that delivered the file to its last byte.
    pub downloads_completed: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::share::Entity",
        from = "Column::ShareId",
        to = "super::share::Column::Id"
    )]
    Share,
    #[sea_orm(
        belongs_to = "super::file::Entity",
        from = "Column::FileId",
        to = "super::file::Column::Id"
    )]
    File,
}

impl Related<super::share::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Share.def()
    }
}

impl Related<super::file::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::File.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
