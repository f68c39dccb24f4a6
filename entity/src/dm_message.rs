//! A direct message, stored as three ECIES copies: for the sender, the recipient and
//! the server. No plaintext is ever stored.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dm_messages")]
pub struct Model {
    /// UUID v7: ids sort by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub recipient_id: Uuid,
    pub created_at: i64,
    pub ciphertext_sender: Vec<u8>,
    pub ciphertext_recipient: Vec<u8>,
    pub ciphertext_server: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
