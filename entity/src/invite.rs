//! A channel invite. Only the token's SHA-256 is stored.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invites")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: Vec<u8>,
    pub channel_id: Uuid,
    pub created_by: Uuid,
    pub created_at: i64,
    /// `NULL`: unlimited.
    pub max_uses: Option<i32>,
    pub uses: i32,
    /// `NULL`: never expires.
    pub expires_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
