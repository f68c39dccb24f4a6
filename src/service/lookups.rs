//! Caches of facts that never change once written, so hot paths skip their queries: a
//! member's public key (set at registration, never changed, members are never deleted) and
//! the conversation of a pair of members (unique per pair, never deleted). Only what
//! exists is cached; a miss is always asked of the database.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::error::ServiceResult;

/// The caches, per node.
pub struct Lookups {
    public_keys: quick_cache::sync::Cache<Uuid, Arc<[u8]>>,
    conversations: quick_cache::sync::Cache<(Uuid, Uuid), Uuid>,
}

impl Default for Lookups {
    fn default() -> Self {
        Self {
            public_keys: quick_cache::sync::Cache::new(100_000),
            conversations: quick_cache::sync::Cache::new(100_000),
        }
    }
}

impl Lookups {
    /// A member's compressed public key, or `None` for no such member.
    pub async fn public_key(
        &self,
        db: &impl ConnectionTrait,
        member: Uuid,
    ) -> ServiceResult<Option<Arc<[u8]>>> {
        if let Some(key) = self.public_keys.get(&member) {
            return Ok(Some(key));
        }
        let Some(row) = super::members::find(db, member).await? else {
            return Ok(None);
        };
        let key: Arc<[u8]> = row.public_key.into();
        self.public_keys.insert(member, key.clone());
        Ok(Some(key))
    }

    /// The conversation between `a` and `b` if one is known here.
    pub fn conversation(&self, a: Uuid, b: Uuid) -> Option<Uuid> {
        self.conversations.get(&pair(a, b))
    }

    /// Remembers the conversation between `a` and `b`.
    pub fn remember_conversation(&self, a: Uuid, b: Uuid, id: Uuid) {
        self.conversations.insert(pair(a, b), id);
    }
}

fn pair(a: Uuid, b: Uuid) -> (Uuid, Uuid) {
    if a < b { (a, b) } else { (b, a) }
}
