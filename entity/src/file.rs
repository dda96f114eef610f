use sea_orm::entity::prelude::*;

use crate::states::FileStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "files")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub size: i64,
    pub content_type: Option<String>,
    pub sha256: String,
    pub status: FileStatus,
    pub reject_reason: Option<String>,
    pub quarantine_key: Option<Vec<u8>>,
    pub quarantine_kek_version: Option<i32>,
    pub dek: Option<Vec<u8>>,
    pub dek_kek_version: Option<i32>,
    /// Names the object this file's current blob lives in: `blobs/{id}/{blob_id}`.
    pub blob_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub ready_at: Option<DateTimeUtc>,
    /// Runs of validate and encrypt so far; past `COFFER_JOB_MAX_ATTEMPTS` the file is rejected.
    pub attempts: i32,
    /// The run working on the file now, and until when its lease holds unless renewed.
    pub lease_holder: Option<Uuid>,
    pub lease_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
