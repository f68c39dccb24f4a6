//! The facts a hook's `ctx` carries, gathered cheaply, so that a plugin on every message
//! costs no query in the steady state:
//! - member profiles (display name, registration time) are kept for a minute, and
//!   forgotten at once when the member renames itself on this node;
//! - a context's name, visibility, member count and joins in the last minute are kept for
//!   two seconds;
//! - a member's standing in a context (role, join time, message count, newest message) is
//!   kept for thirty seconds and brought forward by each message it sends, here or (through
//!   the event stream) on another node.
//!
//! Every membership, role, deletion or settings change of a context, seen locally or in the
//! event stream, starts a new generation for that context, which drops everything kept of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use entity::{context, member};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
};
use uuid::Uuid;

use crate::error::ServiceResult;
use crate::plugins::MemberFacts;

/// How long a context's name, visibility and counts are reused.
const CONTEXT_TTL: Duration = Duration::from_secs(2);
/// How long a member's profile is reused (a change on this node is seen at once; one on
/// another node within this).
const PROFILE_TTL: Duration = Duration::from_secs(60);
/// How long a member's standing in a context is reused.
const STANDING_TTL: Duration = Duration::from_secs(30);
/// Messages counted at most for `message_count` (so counting stays cheap).
pub const MESSAGE_COUNT_CAP: i64 = 1_000;

/// A context as hooks see it, kept for a moment.
#[derive(Clone, Debug)]
pub struct ContextInfo {
    pub kind: String,
    pub name: String,
    pub visibility: Option<String>,
    pub member_count: i64,
    pub joins_last_minute: i64,
    read_at: Instant,
    generation: u64,
}

#[derive(Clone, Debug)]
struct KeptStanding {
    standing: Standing,
    last_id: Option<Uuid>,
    read_at: Instant,
    generation: u64,
}

/// Per-node memory of facts.
pub struct FactsCache {
    profiles: quick_cache::sync::Cache<Uuid, (String, i64, Instant)>,
    contexts: quick_cache::sync::Cache<Uuid, ContextInfo>,
    standings: quick_cache::sync::Cache<(Uuid, Uuid), KeptStanding>,
    generations: quick_cache::sync::Cache<Uuid, u64>,
    next_generation: AtomicU64,
}

impl Default for FactsCache {
    fn default() -> Self {
        Self {
            profiles: quick_cache::sync::Cache::new(50_000),
            contexts: quick_cache::sync::Cache::new(10_000),
            standings: quick_cache::sync::Cache::new(100_000),
            generations: quick_cache::sync::Cache::new(10_000),
            next_generation: AtomicU64::new(1),
        }
    }
}

impl FactsCache {
    /// Forgets a member's profile (its display name changed here).
    pub fn forget_profile(&self, member: Uuid) {
        self.profiles.remove(&member);
    }

    /// Drops everything kept of a context (its members, roles, messages or settings
    /// changed).
    pub fn forget(&self, context_id: Uuid) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        self.generations.insert(context_id, generation);
        self.contexts.remove(&context_id);
    }

    fn generation(&self, context_id: Uuid) -> u64 {
        self.generations.get(&context_id).unwrap_or(0)
    }

    /// A member's kept standing in a context, while it is fresh.
    pub fn standing(&self, context_id: Uuid, member: Uuid) -> Option<Standing> {
        let kept = self.standings.get(&(context_id, member))?;
        (kept.generation == self.generation(context_id) && kept.read_at.elapsed() < STANDING_TTL)
            .then_some(kept.standing)
    }

    fn keep_standing(
        &self,
        context_id: Uuid,
        member: Uuid,
        standing: Standing,
        last_id: Option<Uuid>,
        generation: u64,
    ) {
        self.standings.insert(
            (context_id, member),
            KeptStanding {
                standing,
                last_id,
                read_at: Instant::now(),
                generation,
            },
        );
    }

    /// A message was sent (here, or on another node as the event stream tells): the
    /// sender's kept standing counts it. Idempotent per message, so the request path and
    /// the event stream may both report it.
    pub fn note_message(&self, context_id: Uuid, sender: Uuid, id: Uuid, created_at: i64) {
        let key = (context_id, sender);
        let Some(mut kept) = self.standings.get(&key) else {
            return;
        };
        if kept.generation != self.generation(context_id) || kept.last_id.is_some_and(|l| l >= id) {
            return;
        }
        kept.standing.message_count =
            std::cmp::min(kept.standing.message_count + 1, MESSAGE_COUNT_CAP);
        kept.standing.last_message_at = Some(created_at);
        kept.last_id = Some(id);
        self.standings.insert(key, kept);
    }

    /// Display names and registration times of members, from memory or one query.
    pub async fn profiles(
        &self,
        db: &impl ConnectionTrait,
        ids: &[Uuid],
    ) -> ServiceResult<Vec<MemberFacts>> {
        let missing: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.profiles
                    .get(id)
                    .is_none_or(|(_, _, read_at)| read_at.elapsed() > PROFILE_TTL)
            })
            .collect();
        if !missing.is_empty() {
            let rows = member::Entity::find()
                .filter(member::Column::Id.is_in(missing))
                .all(db)
                .await?;
            for row in rows {
                self.profiles
                    .insert(row.id, (row.display_name, row.created_at, Instant::now()));
            }
        }
        Ok(ids
            .iter()
            .filter_map(|id| {
                self.profiles.get(id).map(|(name, at, _)| MemberFacts {
                    id: id.to_string(),
                    display_name: name,
                    registered_at_ms: at,
                    ..MemberFacts::default()
                })
            })
            .collect())
    }

    /// A context's name, visibility and member count: `None` when it does not exist.
    pub async fn context(
        &self,
        db: &impl ConnectionTrait,
        id: Uuid,
        now: i64,
    ) -> ServiceResult<Option<ContextInfo>> {
        let generation = self.generation(id);
        if let Some(info) = self.contexts.get(&id)
            && info.generation == generation
            && info.read_at.elapsed() < CONTEXT_TTL
        {
            return Ok(Some(info));
        }
        let Some(row) = context::Entity::find_by_id(id).one(db).await? else {
            return Ok(None);
        };
        let count = |after: Option<i64>| {
            let mut query = entity::context_member::Entity::find()
                .select_only()
                .column_as(
                    Expr::col(entity::context_member::Column::MemberId).count(),
                    "n",
                )
                .filter(entity::context_member::Column::ContextId.eq(id));
            if let Some(after) = after {
                query = query.filter(entity::context_member::Column::JoinedAt.gt(after));
            }
            query.into_tuple::<i64>().one(db)
        };
        let member_count = count(None).await?.unwrap_or(0);
        let joins_last_minute = count(Some(now - 60_000)).await?.unwrap_or(0);
        let info = ContextInfo {
            kind: row.kind,
            name: row.name,
            visibility: row.visibility,
            member_count,
            joins_last_minute,
            read_at: Instant::now(),
            generation,
        };
        self.contexts.insert(id, info.clone());
        Ok(Some(info))
    }
}

/// A member's standing in a context.
#[derive(Clone, Debug, Default)]
pub struct Standing {
    pub role: Option<String>,
    pub joined_at: Option<i64>,
    pub message_count: i64,
    pub last_message_at: Option<i64>,
}

/// The standing of each of `members` in a context: kept ones from memory, the others in
/// one query (and kept).
pub async fn standings(
    cache: &FactsCache,
    db: &impl ConnectionTrait,
    context_id: Uuid,
    members: &[Uuid],
) -> ServiceResult<Vec<Standing>> {
    let mut found: Vec<Option<Standing>> = members
        .iter()
        .map(|m| cache.standing(context_id, *m))
        .collect();
    let missing: Vec<Uuid> = members
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(m, _)| *m)
        .collect();
    if !missing.is_empty() {
        let generation = cache.generation(context_id);
        let read = read_standings(db, context_id, &missing).await?;
        for (member, (standing, last_id)) in missing.iter().zip(read) {
            cache.keep_standing(context_id, *member, standing.clone(), last_id, generation);
            for (m, slot) in members.iter().zip(found.iter_mut()) {
                if m == member && slot.is_none() {
                    *slot = Some(standing.clone());
                }
            }
        }
    }
    Ok(found.into_iter().map(Option::unwrap_or_default).collect())
}

/// Reads standings (with each member's newest message id) in one query.
async fn read_standings(
    db: &impl ConnectionTrait,
    context_id: Uuid,
    members: &[Uuid],
) -> ServiceResult<Vec<(Standing, Option<Uuid>)>> {
    let backend = db.get_database_backend();
    let p = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    };
    let person = |at: usize| {
        let (c, m) = (p(1), p(at + 2));
        format!(
            "(SELECT role FROM context_members WHERE context_id = {c} AND member_id = {m}) AS role{at}, \
             (SELECT joined_at FROM context_members WHERE context_id = {c} AND member_id = {m}) AS joined{at}, \
             (SELECT COUNT(*) FROM (SELECT 1 AS one FROM context_messages WHERE context_id = {c} AND sender_id = {m} LIMIT {MESSAGE_COUNT_CAP}) AS counted{at}) AS count{at}, \
             (SELECT created_at FROM context_messages WHERE context_id = {c} AND sender_id = {m} ORDER BY id DESC LIMIT 1) AS last{at}, \
             (SELECT id FROM context_messages WHERE context_id = {c} AND sender_id = {m} ORDER BY id DESC LIMIT 1) AS last_id{at}"
        )
    };
    let columns: Vec<String> = (0..members.len()).map(person).collect();
    let sql = format!("SELECT {}", columns.join(", "));
    let mut values: Vec<sea_orm::Value> = vec![context_id.into()];
    values.extend(members.iter().map(|m| sea_orm::Value::from(*m)));
    let statement = Statement::from_sql_and_values(backend, sql, values);
    let Some(row) = db.query_one_raw(statement).await? else {
        return Ok(members
            .iter()
            .map(|_| (Standing::default(), None))
            .collect());
    };
    let mut out = Vec::with_capacity(members.len());
    for at in 0..members.len() {
        out.push((
            Standing {
                role: row.try_get("", &format!("role{at}"))?,
                joined_at: row.try_get("", &format!("joined{at}"))?,
                message_count: row.try_get("", &format!("count{at}"))?,
                last_message_at: row.try_get("", &format!("last{at}"))?,
            },
            row.try_get("", &format!("last_id{at}"))?,
        ));
    }
    Ok(out)
}
