//! One key epoch of a context: its AES-256-GCM key wrapped (ECIES) for the server key.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "epoch_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub context_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub epoch: i32,
    pub created_at: i64,
    pub wrapped_for_server: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
