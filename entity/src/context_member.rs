//! Membership of a group or channel, with the member's role and mute.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "context_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub context_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub member_id: Uuid,
    /// `owner`, `admin`, `moderator` or `member`.
    pub role: String,
    pub joined_at: i64,
    /// Muted until this time (ms), if muted.
    pub muted_until: Option<i64>,
    /// Messages with ids above this are visible to the member; `NULL`: all of them. Set at
    /// join time for channels that hide earlier history from newcomers.
    pub history_after: Option<Uuid>,
    /// The first key epoch the member is entitled to: it may read every epoch from this one
    /// to the context's current epoch. Its wrapped copies are made on its first read of
    /// `…/keys` (see `member_keys`).
    pub key_epoch_from: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
