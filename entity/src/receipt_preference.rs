use sea_orm::entity::prelude::*;

/// How an account wants download receipts; an account without a row: new shares ask for none,
/// and a share that asks gets one email per download.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "receipt_preferences")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Whether new shares ask for receipts unless told otherwise.
    pub on_new_shares: bool,
    /// One email a day listing the receipts, instead of one per download.
    pub daily: bool,
    /// When the last daily email went out.
    pub digest_sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
