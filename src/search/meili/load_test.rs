//! An ad-hoc load measurement on a real Meilisearch (ignored by default):
//! `BRIGHTCHAT_TEST_MEILI_URL=… cargo test --release --lib meili::load_test -- --ignored
//! --nocapture`. Loads 100,000 messages into one channel and prints the indexing
//! throughput and the query latency percentiles.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::tests::{drop_index, index_from_env};
use crate::search::{IndexDoc, SearchIndex, SearchRequest};

const MESSAGES: usize = 100_000;
const BATCH: usize = 1_000;
const QUERIES: usize = 500;

/// A small deterministic generator (xorshift64), enough to pick words.
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// One of 5,000 made-up words, the low ones far more frequent (roughly Zipf).
    fn word(&mut self) -> String {
        let r = self.next() % 5_000;
        let rank = (r * r) / 5_000;
        format!("w{rank}x")
    }

    fn text(&mut self) -> String {
        let len = 4 + (self.next() % 16) as usize;
        (0..len).map(|_| self.word()).collect::<Vec<_>>().join(" ")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::test]
#[ignore = "a load measurement against a real Meilisearch"]
async fn index_and_query_100k_messages_in_one_channel() {
    let Some(index) = index_from_env().await else {
        return;
    };
    let channel = Uuid::now_v7();
    let mut words = Words(0x9E37_79B9_7F4A_7C15);
    let base = Uuid::now_v7().as_u128();
    let docs: Vec<IndexDoc> = (0..MESSAGES)
        .map(|i| IndexDoc {
            message_id: Uuid::from_u128(base + ((i as u128) << 64)),
            channel_id: channel,
            sender_id: Uuid::from_u128(i as u128 % 50),
            created_at_ms: 1_700_000_000_000 + i as i64,
            text: words.text(),
        })
        .collect();

    let started = Instant::now();
    for (n, batch) in docs.chunks(BATCH).enumerate() {
        index.upsert(batch.to_vec()).await.expect("upsert");
        if n % 10 == 9 {
            index.commit(n as i64).await.expect("commit");
        }
    }
    index.commit(i64::MAX / 2).await.expect("commit");
    let elapsed = started.elapsed();
    println!(
        "meilisearch: indexed {MESSAGES} messages in {:.1} s: {:.0} messages/s",
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64()
    );

    let mut latencies = Vec::with_capacity(QUERIES);
    let mut total_hits = 0;
    for i in 0..QUERIES {
        let query = if i % 2 == 0 {
            words.word()
        } else {
            format!("{} {}", words.word(), words.word())
        };
        let request = SearchRequest {
            channel_id: channel,
            query,
            after_id: None,
            until_id: None,
            limit: 20,
        };
        let t = Instant::now();
        total_hits += index.search(&request).await.expect("search").len();
        latencies.push(t.elapsed());
    }
    latencies.sort_unstable();
    println!(
        "meilisearch: {QUERIES} queries (limit 20, {total_hits} hits): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    drop_index(index).await;
}
