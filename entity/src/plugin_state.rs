//! A moderation plugin's persistent state: one row a key, scoped by plugin name. A key
//! holds either a counter (`state_incr`) or a JSON value (`state_set`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plugin_state")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub plugin: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// JSON text, or `NULL` for a counter.
    pub value: Option<String>,
    pub counter: i64,
    /// `NULL`: kept until overwritten.
    pub expires_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
