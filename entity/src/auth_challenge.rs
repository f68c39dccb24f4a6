//! A sign-in challenge: single use, short-lived.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_challenges")]
pub struct Model {
    /// The 32 challenge bytes.
    #[sea_orm(primary_key, auto_increment = false)]
    pub challenge: Vec<u8>,
    pub member_id: Uuid,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
