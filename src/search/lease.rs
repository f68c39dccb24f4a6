//! One indexer for a shared search backend.
//!
//! Every node keeps an embedded index of its own, but Meilisearch is one service for the
//! whole deployment: if every node's indexer wrote every event to it, N nodes would index
//! everything N times. So the indexer of a shared backend runs on the node holding a lease:
//! the `server_meta` row [`KEY`], `<holder>:<until ms>`, taken when free or expired with one
//! compare-and-swap `UPDATE` and renewed while held. The checkpoint lives in the index
//! itself, so a node that takes over (its holder stopped or died: at most [`TERM_MS`])
//! carries on from where the other stopped.

use std::sync::Mutex;

use entity::server_meta;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::error::ServiceResult;
use crate::time::now_ms;

/// The `server_meta` row of the lease.
pub const KEY: &str = "search.indexer";
/// How long a lease lasts without renewal.
pub const TERM_MS: i64 = 15_000;

/// This process's side of the lease.
pub struct Lease {
    holder: String,
    /// Until when this process holds it (as last written), or when to look again.
    state: Mutex<(bool, i64)>,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            holder: Uuid::new_v4().simple().to_string(),
            state: Mutex::new((false, 0)),
        }
    }
}

impl Lease {
    /// Whether this node should index now: takes the lease when free or expired, renews it
    /// when half spent, and otherwise answers from memory (so most turns cost nothing).
    pub async fn hold(&self, db: &impl ConnectionTrait) -> ServiceResult<bool> {
        let now = now_ms();
        let (held, until) = *self.state.lock().unwrap_or_else(|p| p.into_inner());
        if held && now < until - TERM_MS / 2 {
            return Ok(true);
        }
        if !held && now < until {
            return Ok(false);
        }
        let mine = format!("{}:{}", self.holder, now + TERM_MS);
        let current = server_meta::Entity::find_by_id(KEY.to_owned())
            .one(db)
            .await?;
        let taken = match current {
            None => {
                server_meta::Entity::insert(server_meta::ActiveModel {
                    name: Set(KEY.to_owned()),
                    value: Set(mine.clone()),
                })
                .on_conflict(
                    OnConflict::column(server_meta::Column::Name)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await?
                    == 1
            }
            Some(row) => {
                let (who, expires) = row.value.split_once(':').unwrap_or(("", "0"));
                let expires: i64 = expires.parse().unwrap_or(0);
                if who == self.holder || expires <= now {
                    server_meta::Entity::update_many()
                        .col_expr(server_meta::Column::Value, mine.clone().into())
                        .filter(server_meta::Column::Name.eq(KEY))
                        .filter(server_meta::Column::Value.eq(row.value))
                        .exec(db)
                        .await?
                        .rows_affected
                        == 1
                } else {
                    false
                }
            }
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = if taken {
            (true, now + TERM_MS)
        } else {
            // Someone else holds it: look again in a third of a term.
            (false, now + TERM_MS / 3)
        };
        Ok(taken)
    }
}
