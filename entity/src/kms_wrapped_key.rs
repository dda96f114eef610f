use sea_orm::entity::prelude::*;

/// A master or audit key wrapped by the HSM or KMS of `COFFER_KMS`: never the key itself.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kms_wrapped_keys")]
pub struct Model {
    /// `master` or `audit`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i32,
    /// The HSM or KMS key that wrapped it: `pkcs11:token=…;object=…` or `aws-kms:<ARN>`.
    pub wrapped_by: String,
    pub wrapped: Vec<u8>,
    pub wrapped_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
