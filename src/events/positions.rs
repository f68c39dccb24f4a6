//! Event positions (`seq`) without a global lock.
//!
//! SQLite has one writer: positions come from the one-row counter `event_seq`, which a
//! transaction locks until it commits, so position order is commit order and there are
//! no holes.
//!
//! PostgreSQL takes positions from the sequence `event_positions` (Synapse's multi-writer
//! stream ids are the model): nothing is locked, so transactions on every node commit in
//! parallel, but a position may become visible *before* a lower one (taken earlier by a
//! transaction still running), and a rolled-back transaction leaves a hole. The relay
//! publishes in position order and never past a hole that may still fill:
//!
//! - A transaction gets its transaction id before it takes positions ([`take`] makes
//!   sure), and a position is taken after every lower one.
//! - So when the relay sees position `s` committed while `g < s` is missing, whoever holds
//!   `g` was running when the relay read (its id is in that snapshot's list of running
//!   transactions, `pg_current_snapshot()`), or has already ended.
//! - The hole is *settled* once every transaction of that list has ended: `g` is then
//!   either committed (and read like any row) or never will be.
//!
//! Waiting is short: the list holds only the transactions running at that instant. A
//! transaction that runs for long (on any database of the same server) holds delivery
//! past a hole until it ends, or for [`GAP_MAX`] at most, after which the relay moves on
//! and says so in the log (a row that commits later still reaches resuming clients and
//! the search index, but not live sockets).

use std::time::{Duration, Instant};

use entity::event;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::error::{ServiceError, ServiceResult};

/// The longest the relay waits for a hole to settle.
pub const GAP_MAX: Duration = Duration::from_secs(5);
/// How soon the relay looks again while it waits for a hole.
pub const GAP_RETRY: Duration = Duration::from_millis(2);

/// Reserves `count` positions for the events of the current transaction, ascending.
/// Call it last before commit.
pub async fn take(txn: &impl ConnectionTrait, count: usize) -> ServiceResult<Vec<i64>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            // The filter runs before the projection, so the transaction has its id before
            // its first position is taken (see the module docs).
            let rows = txn
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT nextval('event_positions') AS seq FROM generate_series(1, $1) \
                     WHERE pg_current_xact_id() IS NOT NULL",
                    [(count as i32).into()],
                ))
                .await?;
            let mut seqs = rows
                .iter()
                .map(|row| row.try_get::<i64>("", "seq"))
                .collect::<Result<Vec<_>, _>>()?;
            if seqs.len() != count {
                return Err(ServiceError::internal("the event sequence gave too few"));
            }
            seqs.sort_unstable();
            Ok(seqs)
        }
        _ => {
            let top = txn
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "UPDATE event_seq SET value = value + ? WHERE id = 1 RETURNING value",
                    [(count as i64).into()],
                ))
                .await?
                .ok_or_else(|| ServiceError::internal("the event counter is missing"))?
                .try_get::<i64>("", "value")?;
            let first = top - count as i64 + 1;
            Ok((first..=top).collect())
        }
    }
}

/// The transactions running at one instant (PostgreSQL's `pg_current_snapshot()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Horizon {
    xmax: u64,
    running: Vec<u64>,
}

impl Horizon {
    /// Parses `xmin:xmax:xip,…`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let _xmin: u64 = parts.next()?.parse().ok()?;
        let xmax: u64 = parts.next()?.parse().ok()?;
        let list = parts.next().unwrap_or("");
        let running = list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some(Self { xmax, running })
    }

    /// Whether transaction `xid` had not ended at this instant.
    fn still_running(&self, xid: u64) -> bool {
        xid >= self.xmax || self.running.contains(&xid)
    }
}

/// A hole the relay waits on: positions below `upto` that were missing while `upto` was
/// committed, and the transactions that might still commit them.
#[derive(Debug)]
struct Hole {
    upto: i64,
    waiting: Vec<u64>,
    since: Instant,
}

/// Where a reader of the outbox is: everything up to `last` is published, and at most one
/// hole is waited on.
#[derive(Debug)]
pub struct Cursor {
    last: i64,
    hole: Option<Hole>,
}

impl Cursor {
    /// A cursor after `last`.
    pub fn at(last: i64) -> Self {
        Self { last, hole: None }
    }

    /// Everything up to here is published.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Whether a hole is being waited on.
    pub fn waiting(&self) -> bool {
        self.hole.is_some()
    }

    /// Takes the rows after the cursor (ascending, read with `horizon`, which is `None` on
    /// SQLite) and returns those that may be published now, in order.
    pub fn admit(
        &mut self,
        rows: Vec<event::Model>,
        horizon: Option<&Horizon>,
    ) -> Vec<event::Model> {
        self.admit_at(rows, horizon, Instant::now())
    }

    fn admit_at(
        &mut self,
        rows: Vec<event::Model>,
        horizon: Option<&Horizon>,
        now: Instant,
    ) -> Vec<event::Model> {
        // Positions up to here are settled.
        let mut settled = self.last;
        let mut out = Vec::with_capacity(rows.len());
        'rows: for row in rows {
            if row.seq <= self.last {
                continue;
            }
            // A hole below this row: wait until whoever may fill it has ended.
            while row.seq != self.last + 1 && row.seq > settled {
                // SQLite has no holes but pruned ones.
                let Some(horizon) = horizon else {
                    settled = row.seq;
                    break;
                };
                match self.hole.take() {
                    Some(hole) if hole.upto > self.last => {
                        if hole.ended(horizon, now) {
                            settled = settled.max(hole.upto);
                        } else {
                            self.hole = Some(hole);
                            break 'rows;
                        }
                    }
                    _ => {
                        self.hole = Some(Hole {
                            upto: row.seq,
                            waiting: horizon.running.clone(),
                            since: now,
                        });
                    }
                }
            }
            self.last = row.seq;
            out.push(row);
        }
        // A hole the rows have since filled is no longer waited on.
        self.hole = self.hole.take().filter(|hole| hole.upto > self.last);
        out
    }
}

impl Hole {
    /// Whether every transaction that could fill the hole has ended (or it has been
    /// waited on for [`GAP_MAX`]).
    fn ended(&self, horizon: &Horizon, now: Instant) -> bool {
        if self.waiting.iter().all(|x| !horizon.still_running(*x)) {
            return true;
        }
        if now.duration_since(self.since) >= GAP_MAX {
            tracing::warn!(
                below = self.upto,
                "a transaction that may hold event positions has run for {GAP_MAX:?}; publishing past it"
            );
            return true;
        }
        false
    }
}

/// Reads up to `limit` rows after `after`, ascending, with the horizon they were read at
/// (PostgreSQL only).
pub async fn read_after(
    db: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> ServiceResult<(Vec<event::Model>, Option<Horizon>)> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let rows = db
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT seq, created_at, payload, pg_current_snapshot()::text AS horizon \
                     FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                    [after.into(), (limit as i64).into()],
                ))
                .await?;
            let mut horizon = None;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                if horizon.is_none() {
                    let text: String = row.try_get("", "horizon")?;
                    horizon = Some(Horizon::parse(&text).ok_or_else(|| {
                        ServiceError::internal("pg_current_snapshot() does not parse")
                    })?);
                }
                out.push(event::Model {
                    seq: row.try_get("", "seq")?,
                    created_at: row.try_get("", "created_at")?,
                    payload: row.try_get("", "payload")?,
                });
            }
            Ok((out, horizon))
        }
        _ => {
            use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
            let rows = event::Entity::find()
                .filter(event::Column::Seq.gt(after))
                .order_by_asc(event::Column::Seq)
                .limit(limit)
                .all(db)
                .await?;
            Ok((rows, None))
        }
    }
}

/// A position up to which every event is settled (committed or never to be), computed
/// from the database alone: where a relay starts, and what a reader without one (the
/// search indexer of `brightchat reindex`) may read up to.
pub async fn settled(db: &impl ConnectionTrait) -> ServiceResult<i64> {
    let pruned = pruned_through(db).await?;
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let row = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT COALESCE(MAX(seq), 0) AS top, pg_current_snapshot()::text AS horizon \
                     FROM events",
                ))
                .await?
                .ok_or_else(|| ServiceError::internal("no answer"))?;
            let top: i64 = row.try_get("", "top")?;
            let text: String = row.try_get("", "horizon")?;
            let first = Horizon::parse(&text)
                .ok_or_else(|| ServiceError::internal("pg_current_snapshot() does not parse"))?;
            let started = Instant::now();
            // Every hole below `top` is held by one of `first.running`, or by nobody.
            while !first.running.is_empty() && started.elapsed() < GAP_MAX {
                let now = current_horizon(db).await?;
                if first.running.iter().all(|x| !now.still_running(*x)) {
                    break;
                }
                tokio::time::sleep(GAP_RETRY).await;
            }
            Ok(top.max(pruned))
        }
        _ => {
            let row = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT value FROM event_seq WHERE id = 1",
                ))
                .await?;
            let top = match row {
                Some(row) => row.try_get::<i64>("", "value")?,
                None => 0,
            };
            Ok(top.max(pruned))
        }
    }
}

async fn current_horizon(db: &impl ConnectionTrait) -> ServiceResult<Horizon> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_current_snapshot()::text AS horizon",
        ))
        .await?
        .ok_or_else(|| ServiceError::internal("no answer"))?;
    let text: String = row.try_get("", "horizon")?;
    Horizon::parse(&text)
        .ok_or_else(|| ServiceError::internal("pg_current_snapshot() does not parse"))
}

/// The `server_meta` row holding the highest position pruning has deleted.
pub const PRUNED_KEY: &str = "events.pruned_through";

/// The highest position pruning has deleted: a reader behind it has missed events.
pub async fn pruned_through(db: &impl ConnectionTrait) -> ServiceResult<i64> {
    use sea_orm::EntityTrait;
    Ok(
        entity::server_meta::Entity::find_by_id(PRUNED_KEY.to_owned())
            .one(db)
            .await?
            .and_then(|row| row.value.parse().ok())
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seqs: &[i64]) -> Vec<event::Model> {
        seqs.iter()
            .map(|seq| event::Model {
                seq: *seq,
                created_at: 0,
                payload: String::new(),
            })
            .collect()
    }

    fn seqs(rows: Vec<event::Model>) -> Vec<i64> {
        rows.into_iter().map(|row| row.seq).collect()
    }

    fn horizon(running: &[u64]) -> Horizon {
        Horizon {
            xmax: 1000,
            running: running.to_vec(),
        }
    }

    #[test]
    fn a_snapshot_parses() {
        let h = Horizon::parse("745:750:745,748").expect("parses");
        assert!(h.still_running(745) && h.still_running(748) && h.still_running(750));
        assert!(!h.still_running(746) && !h.still_running(700));
        assert!(
            Horizon::parse("10:10:")
                .expect("empty list")
                .running
                .is_empty()
        );
        assert_eq!(Horizon::parse("x:1:"), None);
    }

    #[test]
    fn contiguous_rows_pass_at_once() {
        let mut cursor = Cursor::at(4);
        let out = cursor.admit(rows(&[5, 6, 7]), Some(&horizon(&[900])));
        assert_eq!(seqs(out), vec![5, 6, 7]);
        assert_eq!(cursor.last(), 7);
        assert!(!cursor.waiting());
    }

    #[test]
    fn a_hole_waits_for_the_transactions_running_when_it_was_seen() {
        let start = Instant::now();
        let mut cursor = Cursor::at(4);
        // 6 is missing while 7 is committed; 900 and 901 were running.
        let out = cursor.admit_at(rows(&[5, 7, 8]), Some(&horizon(&[900, 901])), start);
        assert_eq!(seqs(out), vec![5]);
        assert!(cursor.waiting());
        // 901 ended, 900 still runs (and a newcomer 950 is irrelevant).
        let out = cursor.admit_at(rows(&[7, 8, 9]), Some(&horizon(&[900, 950])), start);
        assert!(out.is_empty());
        // Both ended without 6: it was rolled back; 7.. pass, and a new hole above waits.
        let out = cursor.admit_at(rows(&[7, 8, 9, 11]), Some(&horizon(&[950])), start);
        assert_eq!(seqs(out), vec![7, 8, 9]);
        assert_eq!(cursor.last(), 9);
        assert!(cursor.waiting(), "10 is held by 950 or nobody");
    }

    #[test]
    fn a_hole_that_fills_is_published_in_order() {
        let start = Instant::now();
        let mut cursor = Cursor::at(0);
        assert_eq!(
            seqs(cursor.admit_at(rows(&[2]), Some(&horizon(&[7])), start)),
            Vec::<i64>::new()
        );
        // 7 committed position 1.
        let out = cursor.admit_at(rows(&[1, 2, 3]), Some(&horizon(&[])), start);
        assert_eq!(seqs(out), vec![1, 2, 3]);
        assert!(!cursor.waiting());
    }

    #[test]
    fn a_hole_with_nobody_running_is_settled_at_once() {
        let mut cursor = Cursor::at(0);
        let out = cursor.admit(rows(&[3, 4]), Some(&horizon(&[])));
        assert_eq!(seqs(out), vec![3, 4]);
    }

    #[test]
    fn a_hole_held_too_long_is_passed() {
        let start = Instant::now();
        let mut cursor = Cursor::at(0);
        assert!(
            cursor
                .admit_at(rows(&[2]), Some(&horizon(&[5])), start)
                .is_empty()
        );
        let later = start + GAP_MAX;
        let out = cursor.admit_at(rows(&[2, 3]), Some(&horizon(&[5])), later);
        assert_eq!(seqs(out), vec![2, 3]);
    }

    #[test]
    fn a_hole_above_a_filled_one_is_judged_afresh() {
        let start = Instant::now();
        let mut cursor = Cursor::at(0);
        assert!(
            cursor
                .admit_at(rows(&[2]), Some(&horizon(&[5])), start)
                .is_empty()
        );
        // 1 fills; 3 is missing below 4 while 6 (new) runs: 5 ending does not settle it.
        let out = cursor.admit_at(rows(&[1, 2, 4]), Some(&horizon(&[6])), start);
        assert_eq!(seqs(out), vec![1, 2]);
        assert!(cursor.waiting());
        let out = cursor.admit_at(rows(&[4]), Some(&horizon(&[6])), start);
        assert!(out.is_empty());
        let out = cursor.admit_at(rows(&[3, 4]), Some(&horizon(&[])), start);
        assert_eq!(seqs(out), vec![3, 4]);
    }

    #[test]
    fn sqlite_holes_are_pruned_ones() {
        let mut cursor = Cursor::at(0);
        assert_eq!(seqs(cursor.admit(rows(&[10, 11]), None)), vec![10, 11]);
    }
}
