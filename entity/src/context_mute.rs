//! A mute in a group or channel. It belongs to the member and the context until it
//! expires, whatever membership does in between; joining again restores it onto the new
//! membership row (`context_members.muted_until`, which the send path reads).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "context_mutes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub context_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub member_id: Uuid,
    /// Muted until this time (ms).
    pub muted_until: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
