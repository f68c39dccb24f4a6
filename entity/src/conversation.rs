//! A direct-message conversation between two members (`member_low` < `member_high`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub member_low: Uuid,
    pub member_high: Uuid,
    pub created_at: i64,
    /// Time of the newest message (creation time when there is none); the list's sort key.
    pub last_message_at: i64,
    /// The newest message still present, for the list preview.
    pub last_message_id: Option<Uuid>,
    /// The highest message id ever issued here; new ids are always above it.
    pub last_issued_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
