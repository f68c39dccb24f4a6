//! One entry of a group's or channel's moderation audit log.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// UUID v7: entries sort by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub context_id: Uuid,
    /// `group` or `channel`.
    pub context_type: String,
    /// `mute`, `unmute`, `kick`, `remove`, `role_change`, `invite_create`, … (the contract's list).
    pub action: String,
    pub actor_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    /// `allowed`, `denied`, `modified` or `simulated`.
    pub outcome: String,
    pub reason: Option<String>,
    /// The plugin that decided, where one did.
    pub plugin: Option<String>,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
