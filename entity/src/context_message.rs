//! A group or channel message: AES-256-GCM under its context's key epoch, AAD = its id.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "context_messages")]
pub struct Model {
    /// UUID v7: ids sort by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub context_id: Uuid,
    pub sender_id: Uuid,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub key_epoch: i32,
    /// nonce (12) || ciphertext || tag (16).
    pub ciphertext: Vec<u8>,
    pub pinned_at: Option<i64>,
    pub pinned_by: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
