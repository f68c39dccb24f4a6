//! Load scenarios over the public HTTP API and WebSocket, against a server at `base`.
//!
//! Used by the `load` example (which prints the table) and by the API smoke test
//! (`tests/api/load_smoke.rs`, tiny sizes, asserts only completion without errors).
//!
//! The request scenarios are here; the WebSocket, big-channel, cross-node and startup
//! scenarios are in the submodules, with the seeding and socket helpers they share.
//!
//! A run may drive several nodes of one deployment ([`Target::nodes`]): the request
//! scenarios spread their clients over them in turn, `cross-node` sends on the first and
//! listens on the last, and everything else runs on the first.

mod big;
mod cross;
mod fanout;
mod idle;
mod seed;
mod startup;
mod wave;
mod ws;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::percentile;
use seed::{channel, register, seed_messages};

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: [&str; 11] = [
    "channel-send",
    "dm-send",
    "history",
    "history-under-load",
    "search",
    "fanout",
    "idle-ws",
    "big-channel",
    "presence-wave",
    "cross-node",
    "startup",
];

/// How big a run is.
#[derive(Clone, Debug)]
pub struct Sizes {
    /// Concurrent clients for the request scenarios (and big-channel's send).
    pub clients: usize,
    /// How long each request scenario sends.
    pub duration: Duration,
    /// Members of the channel used by channel-send, history and search.
    pub members: usize,
    /// WebSocket subscribers for fanout.
    pub subscribers: usize,
    /// Fanout subscribers come online as they connect (and the storm of presence events
    /// passes before measuring); otherwise they set their status offline first.
    pub fanout_online: bool,
    /// Idle WebSocket connections for idle-ws, one member each.
    pub idle: usize,
    /// Members seeded into the channel of big-channel.
    pub big_members: usize,
    /// Joins, leaves and kicks measured in big-channel (each).
    pub big_ops: usize,
    /// Members coming online at once in presence-wave.
    pub wave: usize,
    /// Server starts measured by startup (each: a fresh data dir, then a restart on it).
    pub startup_runs: usize,
    /// WebSocket subscribers (on the last node) in cross-node's channel.
    pub cross_subscribers: usize,
    /// Messages per second cross-node offers in its steady phase (for `duration`).
    pub rate: usize,
    /// Messages cross-node sends at once (by `clients` clients) in its burst phase.
    pub burst: usize,
    /// Joins and kicks cross-node measures (each).
    pub cross_ops: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            clients: 64,
            duration: Duration::from_secs(10),
            members: 10,
            subscribers: 100,
            fanout_online: false,
            idle: 10_000,
            big_members: 100_000,
            big_ops: 100,
            wave: 1_000,
            startup_runs: 5,
            cross_subscribers: 10,
            rate: 200,
            burst: 1_000,
            cross_ops: 20,
        }
    }
}

impl Sizes {
    /// The most WebSockets any scenario holds open at once (plus one per client): what the
    /// server's connection cap and both processes' open-file limits must allow.
    pub fn max_sockets(&self) -> usize {
        self.subscribers
            .max(self.idle)
            .max(self.wave + 1)
            .max(self.cross_subscribers)
            + self.clients
    }
}

/// The server the scenarios drive: one node, or several nodes of one deployment (one
/// database, one server key).
#[derive(Clone, Debug)]
pub struct Target {
    /// The nodes' base URLs, e.g. `http://127.0.0.1:8080`; at least one. Seeding and the
    /// scenarios that use one node go to the first.
    pub nodes: Vec<String>,
    /// The nodes' process ids, when they run on this machine (RSS is read from
    /// `/proc/<pid>`); empty otherwise.
    pub pids: Vec<u32>,
    /// The binary `startup` spawns; `None` when the harness did not start the server.
    pub server_bin: Option<PathBuf>,
    /// Environment for servers `startup` spawns (as the harness started its own).
    pub server_env: Vec<(String, String)>,
}

impl Target {
    /// A running server at `base` whose process the harness does not know.
    pub fn remote(base: &str) -> Self {
        Self {
            nodes: vec![base.trim_end_matches('/').to_owned()],
            pids: Vec::new(),
            server_bin: None,
            server_env: Vec::new(),
        }
    }

    /// The first node's base URL.
    pub fn base(&self) -> &str {
        self.nodes.first().map_or("", String::as_str)
    }

    /// The last node's base URL (the first when there is one).
    pub fn last(&self) -> &str {
        self.nodes.last().map_or("", String::as_str)
    }

    /// The servers' RSS in KiB, summed over the nodes, when the harness knows their
    /// processes.
    pub fn rss_kib(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        Some(self.pids.iter().map(|pid| super::rss_kib(*pid)).sum())
    }
}

/// What one row of the table measured. `latencies` is sorted.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario that produced the row (one of [`SCENARIOS`]).
    pub scenario: &'static str,
    /// The row's name in the table: the scenario, or the scenario and what was measured.
    pub row: String,
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Server RSS after the scenario (or what the scenario measured), when known.
    pub rss_kib: Option<u64>,
    /// Lines printed under the table (per-connection memory, frame counts, seeding times).
    pub notes: Vec<String>,
}

impl Report {
    /// Requests per second; 0 when nothing ran (a scenario that failed at once).
    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

/// Runs the scenario called `name` (one of [`SCENARIOS`]); returns its rows.
pub async fn run(
    client: &reqwest::Client,
    target: &Target,
    name: &str,
    sizes: &Sizes,
) -> Result<Vec<Report>, String> {
    let base = target.base();
    let nodes: Arc<Vec<String>> = Arc::new(target.nodes.clone());
    if nodes.is_empty() {
        return Err("no node to drive".to_owned());
    }
    let rows = match name {
        "channel-send" => vec![channel_send(client, nodes, sizes).await?],
        "dm-send" => vec![dm_send(client, nodes, sizes).await?],
        "history" => vec![history(client, nodes, sizes).await?],
        "history-under-load" => history_under_load(client, nodes, sizes).await?,
        "search" => vec![search(client, nodes, sizes).await?],
        "fanout" => vec![fanout::fanout(client, base, sizes).await?],
        "idle-ws" => vec![idle::idle_ws(client, target, sizes).await?],
        "big-channel" => big::big_channel(client, base, sizes).await?,
        "presence-wave" => vec![wave::presence_wave(client, base, sizes).await?],
        "cross-node" => cross::cross_node(client, target, sizes).await?,
        "startup" => startup::startup(target, sizes).await?,
        other => {
            return Err(format!(
                "unknown scenario {other:?}; expected one of {}",
                SCENARIOS.join(", ")
            ));
        }
    };
    let rss = target.rss_kib();
    Ok(rows
        .into_iter()
        .map(|mut row| {
            row.rss_kib = row.rss_kib.or(rss);
            row
        })
        .collect())
}

/// A row named after its scenario, or `scenario what` when `what` is not empty.
fn report(scenario: &'static str, what: &str, outcome: Outcome) -> Report {
    let Outcome {
        requests,
        errors,
        elapsed,
        mut latencies,
    } = outcome;
    latencies.sort();
    Report {
        scenario,
        row: if what.is_empty() {
            scenario.to_owned()
        } else {
            format!("{scenario} {what}")
        },
        requests,
        errors,
        elapsed,
        latencies,
        rss_kib: None,
        notes: Vec::new(),
    }
}

/// What a scenario counted, before it becomes a [`Report`].
struct Outcome {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// `clients` tasks each send `request(client_index, sequence)` back to back until `duration`
/// has passed; a transport error or a non-2xx status counts as an error.
async fn closed_loop<F>(
    client: &reqwest::Client,
    clients: usize,
    duration: Duration,
    request: F,
) -> Outcome
where
    F: Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        let request = request.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                let at = Instant::now();
                let ok = match request(&client, index, sequence).send().await {
                    Ok(response) => {
                        let success = response.status().is_success();
                        response.bytes().await.is_ok() && success
                    }
                    Err(_) => false,
                };
                latencies.push(at.elapsed());
                if !ok {
                    errors += 1;
                }
                sequence += 1;
            }
            (latencies, errors)
        }));
    }
    let mut outcome = Outcome {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        match task.await {
            Ok((latencies, errors)) => {
                outcome.requests += latencies.len() as u64;
                outcome.errors += errors;
                outcome.latencies.extend(latencies);
            }
            Err(_) => outcome.errors += 1,
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// The node client `index` talks to: the nodes in turn.
fn node_of(nodes: &[String], index: usize) -> &str {
    nodes
        .get(index % nodes.len().max(1))
        .map_or("", String::as_str)
}

/// The first node, where a scenario seeds its members and channels.
fn first(nodes: &[String]) -> &str {
    node_of(nodes, 0)
}

/// `clients` clients posting to channel `id`, spread over `tokens` and over `nodes`.
async fn send_loop(
    client: &reqwest::Client,
    nodes: Arc<Vec<String>>,
    id: String,
    tokens: Arc<Vec<String>>,
    sizes: &Sizes,
) -> Outcome {
    closed_loop(client, sizes.clients, sizes.duration, move |c, i, n| {
        let base = node_of(&nodes, i);
        c.post(format!("{base}/api/channels/{id}/messages"))
            .bearer_auth(&tokens[i % tokens.len()])
            .json(&json!({"content": format!("load {i}/{n}")}))
    })
    .await
}

async fn channel_send(
    client: &reqwest::Client,
    nodes: Arc<Vec<String>>,
    sizes: &Sizes,
) -> Result<Report, String> {
    let base = first(&nodes);
    let members = register(client, base, "send", sizes.members.max(1)).await?;
    let id = channel(client, base, "load-send", &members).await?;
    let tokens = Arc::new(members.into_iter().map(|m| m.token).collect());
    let outcome = send_loop(client, nodes.clone(), id, tokens, sizes).await;
    Ok(report("channel-send", "", outcome))
}

async fn dm_send(
    client: &reqwest::Client,
    nodes: Arc<Vec<String>>,
    sizes: &Sizes,
) -> Result<Report, String> {
    // Client 2k and 2k+1 are a pair, writing to each other.
    let count = sizes.clients.max(2).div_ceil(2) * 2;
    let members = register(client, first(&nodes), "dm", count).await?;
    let ids: Arc<Vec<String>> = Arc::new(members.iter().map(|m| m.id.clone()).collect());
    let tokens: Arc<Vec<String>> = Arc::new(members.into_iter().map(|m| m.token).collect());
    let outcome = closed_loop(client, sizes.clients, sizes.duration, move |c, i, n| {
        let base = node_of(&nodes, i);
        c.post(format!("{base}/api/conversations"))
            .bearer_auth(&tokens[i])
            .json(&json!({"recipientId": ids[i ^ 1], "content": format!("dm {i}/{n}")}))
    })
    .await;
    Ok(report("dm-send", "", outcome))
}

async fn history(
    client: &reqwest::Client,
    nodes: Arc<Vec<String>>,
    sizes: &Sizes,
) -> Result<Report, String> {
    let base = first(&nodes);
    let members = register(client, base, "read", sizes.members.max(1)).await?;
    let id = channel(client, base, "load-history", &members).await?;
    seed_messages(client, base, &id, &members, 60).await?;
    let tokens: Arc<Vec<String>> = Arc::new(members.into_iter().map(|m| m.token).collect());
    let outcome = closed_loop(client, sizes.clients, sizes.duration, move |c, i, _| {
        let base = node_of(&nodes, i);
        c.get(format!("{base}/api/channels/{id}/messages?limit=50"))
            .bearer_auth(&tokens[i % tokens.len()])
    })
    .await;
    Ok(report("history", "", outcome))
}

/// Readers of history while the other clients send: a few members (`HISTORY_READERS`)
/// read a page of one channel back to back while `clients - HISTORY_READERS` post to
/// another, as the history target ("p99 under that load") asks.
async fn history_under_load(
    client: &reqwest::Client,
    nodes: Arc<Vec<String>>,
    sizes: &Sizes,
) -> Result<Vec<Report>, String> {
    const HISTORY_READERS: usize = 4;
    let base = first(&nodes);
    let senders = register(client, base, "busy", sizes.members.max(1)).await?;
    let busy = channel(client, base, "load-busy", &senders).await?;
    let readers = register(client, base, "quiet", sizes.members.max(1)).await?;
    let quiet = channel(client, base, "load-quiet", &readers).await?;
    seed_messages(client, base, &quiet, &readers, 60).await?;
    let send_tokens = Arc::new(senders.into_iter().map(|m| m.token).collect());
    let read_tokens: Arc<Vec<String>> = Arc::new(readers.into_iter().map(|m| m.token).collect());
    let sending = Sizes {
        clients: sizes.clients.saturating_sub(HISTORY_READERS).max(1),
        ..sizes.clone()
    };
    let read_nodes = nodes.clone();
    let (sent, read) = tokio::join!(
        send_loop(client, nodes.clone(), busy, send_tokens, &sending),
        closed_loop(client, HISTORY_READERS, sizes.duration, move |c, i, _| {
            let base = node_of(&read_nodes, i);
            c.get(format!("{base}/api/channels/{quiet}/messages?limit=50"))
                .bearer_auth(&read_tokens[i % read_tokens.len()])
        })
    );
    Ok(vec![
        report("history-under-load", "send", sent),
        report("history-under-load", "read", read),
    ])
}

async fn search(
    client: &reqwest::Client,
    nodes: Arc<Vec<String>>,
    sizes: &Sizes,
) -> Result<Report, String> {
    let base = first(&nodes);
    let members = register(client, base, "find", sizes.members.max(1)).await?;
    let id = channel(client, base, "load-search", &members).await?;
    seed_messages(client, base, &id, &members, 60).await?;
    let tokens: Arc<Vec<String>> = Arc::new(members.into_iter().map(|m| m.token).collect());
    let outcome = closed_loop(client, sizes.clients, sizes.duration, move |c, i, n| {
        let base = node_of(&nodes, i);
        let query = if n % 2 == 0 { "lighthouse" } else { "harbour" };
        c.get(format!(
            "{base}/api/channels/{id}/messages/search?query={query}"
        ))
        .bearer_auth(&tokens[i % tokens.len()])
    })
    .await;
    Ok(report("search", "", outcome))
}

/// The table the `load` example prints: one row per report, then the reports' notes.
pub fn table(reports: &[Report]) -> String {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "{:<23} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
        "scenario",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "rss KiB"
    );
    for r in reports {
        out.push_str(&format!(
            "{:<23} {:>9} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
            r.row,
            r.requests,
            r.errors,
            r.throughput(),
            ms(r.p(0.50)),
            ms(r.p(0.95)),
            ms(r.p(0.99)),
            ms(r.p(1.0)),
            r.rss_kib.map_or("-".to_owned(), |k| k.to_string()),
        ));
    }
    let notes: Vec<&String> = reports.iter().flat_map(|r| &r.notes).collect();
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            out.push_str(&format!("{note}\n"));
        }
    }
    out
}
