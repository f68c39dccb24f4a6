//! Search benchmark: loads generated messages into one channel of a search index, then
//! prints indexing throughput and query latency (p50, p99, max).
//!
//! Messages are 5 to 25 words drawn from a 5,000-word vocabulary with a Zipf-like
//! distribution (a few very common words, a long tail), indexed through `upsert` + `commit`
//! in batches. Queries are one or two words drawn the same way, so common words (hits in
//! most of the channel) come up often, each with a limit of 20; half carry an `until_id`
//! bound as the service's pages do.
//!
//!     cargo bench --bench search                 # 100,000 messages, 1,000 queries
//!     SEARCH_BENCH_MESSAGES=20000 SEARCH_BENCH_QUERIES=200 cargo bench --bench search
//!
//! The embedded index is built in a temporary directory, then again in memory (set
//! `SEARCH_BENCH_SKIP_MEMORY` to skip that run): the difference is what the disk costs, as
//! each commit waits for its fsync. With `BRIGHTCHAT_BENCH_MEILI_URL` (and
//! `BRIGHTCHAT_BENCH_MEILI_KEY`) the same load runs against that Meilisearch too, in a
//! fresh index; otherwise nothing leaves the machine's loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use brightchat::search::embedded::EmbeddedIndex;
use brightchat::search::{IndexDoc, SearchIndex, SearchRequest};
use uuid::{NoContext, Timestamp, Uuid};

const VOCABULARY: usize = 5_000;
const BATCH: usize = 1_000;
const LIMIT: usize = 20;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: a small deterministic generator, so every run indexes the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Distinct pronounceable words: word `i` spells `i` in base 12 with one syllable a digit.
fn vocabulary() -> Vec<String> {
    const SYLLABLES: [&str; 12] = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "du", "ga", "ze",
    ];
    (0..VOCABULARY)
        .map(|i| {
            let mut n = i + 144;
            let mut word = String::new();
            while n > 0 {
                word.push_str(SYLLABLES[n % 12]);
                n /= 12;
            }
            word
        })
        .collect()
}

/// Samples word ranks with weight 1 / (rank + 1).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|rank| {
                total += 1.0 / (rank as f64 + 1.0);
                total
            })
            .collect::<Vec<_>>();
        Zipf(cumulative.into_iter().map(|c| c / total).collect())
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.0.partition_point(|c| *c < u).min(self.0.len() - 1)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Loads `messages` generated messages into one channel of `index`, runs `queries`
/// searches, and prints the figures.
async fn bench(index: &dyn SearchIndex, messages: usize, queries: usize) {
    let words = vocabulary();
    let zipf = Zipf::new(words.len());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let channel = Uuid::new_v4();
    let sender = Uuid::new_v4();
    let start_ms: u64 = 1_700_000_000_000;

    let mut ids = Vec::with_capacity(messages);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..messages {
        let ms = start_ms + i as u64;
        let ts = Timestamp::from_unix(NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
        let id = Uuid::new_v7(ts);
        ids.push(id);
        let len = 5 + rng.below(21);
        let text = (0..len)
            .map(|_| words[zipf.sample(&mut rng)].as_str())
            .collect::<Vec<_>>()
            .join(" ");
        batch.push(IndexDoc {
            message_id: id,
            channel_id: channel,
            sender_id: sender,
            created_at_ms: ms as i64,
            text,
        });
        if batch.len() == BATCH || i + 1 == messages {
            index
                .upsert(std::mem::take(&mut batch))
                .await
                .expect("upsert");
            index.commit(i as i64).await.expect("commit");
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{}: indexed {messages} messages in batches of {BATCH} (upsert + commit) in {:.2?}: {:.0} messages/s",
        index.name(),
        elapsed,
        messages as f64 / elapsed.as_secs_f64()
    );

    let until = ids.last().copied();
    let mut latencies = Vec::with_capacity(queries);
    let mut total_hits = 0;
    for q in 0..queries {
        let count = 1 + rng.below(2);
        let query = (0..count)
            .map(|_| words[zipf.sample(&mut rng)].as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let request = SearchRequest {
            channel_id: channel,
            query,
            after_id: None,
            until_id: if q % 2 == 0 { until } else { None },
            limit: LIMIT,
        };
        let started = Instant::now();
        let hits = index.search(&request).await.expect("search");
        latencies.push(started.elapsed());
        total_hits += hits.len();
    }
    latencies.sort();
    println!(
        "{}: {queries} queries (1-2 words, limit {LIMIT}, {:.1} hits on average): p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        index.name(),
        total_hits as f64 / queries.max(1) as f64,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
}

#[tokio::main]
async fn main() {
    let messages = env_number("SEARCH_BENCH_MESSAGES", 100_000);
    let queries = env_number("SEARCH_BENCH_QUERIES", 1_000);
    println!("search: {messages} messages in one channel, {queries} queries");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("search");
    let index = EmbeddedIndex::open(&path).expect("open the embedded index");
    bench(&index, messages, queries).await;
    println!(
        "embedded: index directory {:.1} MiB",
        dir_size(&path) as f64 / (1024.0 * 1024.0)
    );
    drop(index);

    // The same in memory: the difference is what the disk (each commit's fsync) costs.
    if std::env::var_os("SEARCH_BENCH_SKIP_MEMORY").is_none() {
        println!("embedded, in memory (no disk):");
        let index = EmbeddedIndex::in_memory().expect("an in-memory index");
        bench(&index, messages, queries).await;
    }

    // Meilisearch, when one is given: a fresh index, deleted afterwards by hand if wanted.
    match std::env::var("BRIGHTCHAT_BENCH_MEILI_URL") {
        Ok(url) if !url.is_empty() => {
            let key = std::env::var("BRIGHTCHAT_BENCH_MEILI_KEY").ok();
            let uid = format!("bench_{}", Uuid::new_v4().simple());
            println!("meilisearch: index {uid} at {url}");
            let index = brightchat::search::meili::MeiliIndex::connect(&url, key.as_deref(), &uid)
                .await
                .expect("Meilisearch answers");
            bench(&index, messages, queries).await;
        }
        _ => println!("meilisearch: skipped (set BRIGHTCHAT_BENCH_MEILI_URL to measure it)"),
    }
}
