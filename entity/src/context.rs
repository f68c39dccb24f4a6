//! A group or a channel: the shared parts of both ("context" as events name it).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contexts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `group` or `channel`.
    pub kind: String,
    pub name: String,
    /// Channels only: the name again, under a unique index (`NULL` for groups).
    pub unique_name: Option<String>,
    pub creator_id: Uuid,
    pub created_at: i64,
    /// Time of the newest message; `NULL` when there is none.
    pub last_message_at: Option<i64>,
    /// Sort key of lists: the newest message's time, or the creation time.
    pub activity_at: i64,
    /// The highest message id ever issued here; new ids are always above it.
    pub last_issued_id: Option<Uuid>,
    /// The key epoch new messages are encrypted with.
    pub current_epoch: i32,
    /// Groups made from a direct conversation.
    pub promoted_from: Option<Uuid>,
    /// Channels: topic, visibility and whether newcomers see earlier history.
    pub topic: Option<String>,
    pub visibility: Option<String>,
    pub history_visible: bool,
    /// A moderation lock: joins and invite redemptions are refused until then.
    pub locked_until: Option<i64>,
    pub lock_reason: Option<String>,
    /// Slow mode: members below moderator send at most one message per this many seconds,
    /// until `slow_mode_until`.
    pub slow_mode_secs: Option<i32>,
    pub slow_mode_until: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
