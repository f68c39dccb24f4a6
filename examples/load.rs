//! Load harness: drives a BrightChat server over its public HTTP API and WebSocket and prints
//! one table (requests, errors, throughput, latency percentiles, server RSS) with a row per
//! scenario (several for big-channel and startup) and notes under it.
//!
//!     cargo build --release && cargo run --release --example load -- --seconds 10
//!     cargo run --release --example load -- --url http://127.0.0.1:8080 --scenario history
//!     cargo run --release --example load -- --scenario fanout --subscribers 10000
//!     BRIGHTCHAT_DATABASE_URL=postgres://… cargo run --release --example load -- \
//!         --nodes 2 --scenario channel-send,cross-node
//!
//! Without `--url` it starts `--server-bin` (default `target/release/brightchat`) on a free
//! loopback port with a scratch data dir, with the connection cap raised for the sockets the
//! run needs, and stops it at the end; with `--nodes N`, N of them on the same database
//! (PostgreSQL, from `BRIGHTCHAT_DATABASE_URL`) sharing node 1's server key. `--url` takes
//! a comma list of running nodes. Either way it raises its own open-file soft limit to the
//! hard limit first (the servers it starts inherit it).

#[path = "../benches/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use support::load::{self, SCENARIOS, Sizes, Target};

#[derive(Parser, Debug)]
#[command(about = "Load harness for a BrightChat server")]
struct Args {
    /// A running server to drive, e.g. http://127.0.0.1:8080, or a comma list of the nodes
    /// of one deployment; without it the harness starts its own.
    #[arg(long)]
    url: Option<String>,
    /// The server binary to start when --url is not given.
    #[arg(long, default_value = "target/release/brightchat")]
    server_bin: PathBuf,
    /// Server processes to start on one database when --url is not given (more than one
    /// needs BRIGHTCHAT_DATABASE_URL to name a PostgreSQL database).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// BRIGHTCHAT_REDIS_URL for the servers the harness starts (otherwise they inherit the
    /// variable, when set).
    #[arg(long)]
    redis_url: Option<String>,
    /// Comma-separated scenarios (channel-send, dm-send, history, history-under-load, search,
    /// fanout, idle-ws, big-channel, presence-wave, cross-node, startup) or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Concurrent clients for the request scenarios and big-channel's send.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds each request scenario runs.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Members of the channel for channel-send, history and search.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// WebSocket subscribers (distinct members) for fanout.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Fanout subscribers come online as they connect (a presence storm to wait out)
    /// instead of setting their status offline first.
    #[arg(long)]
    fanout_online: bool,
    /// Idle WebSocket connections (distinct members) for idle-ws.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Members seeded into big-channel's channel.
    #[arg(long, default_value_t = 100_000)]
    big_members: usize,
    /// Joins, leaves and kicks big-channel measures (each).
    #[arg(long, default_value_t = 100)]
    big_ops: usize,
    /// Members coming online at once in presence-wave.
    #[arg(long, default_value_t = 1_000)]
    wave: usize,
    /// Fresh starts (each followed by a restart) startup measures.
    #[arg(long, default_value_t = 5)]
    startup_runs: usize,
    /// WebSocket subscribers (distinct members, on the last node) for cross-node.
    #[arg(long, default_value_t = 10)]
    cross_subscribers: usize,
    /// Messages per second cross-node sends in its steady phase, for --seconds.
    #[arg(long, default_value_t = 200)]
    rate: usize,
    /// Messages cross-node sends at once (by --clients clients) in its burst phase.
    #[arg(long, default_value_t = 1_000)]
    burst: usize,
    /// Joins and kicks cross-node measures (each).
    #[arg(long, default_value_t = 20)]
    cross_ops: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut names: Vec<&str> = if args.scenario == "all" {
        SCENARIOS.to_vec()
    } else {
        args.scenario.split(',').map(str::trim).collect()
    };
    if let Some(bad) = names.iter().find(|n| !SCENARIOS.contains(n)) {
        eprintln!(
            "unknown scenario {bad:?}; expected all or one of {}",
            SCENARIOS.join(", ")
        );
        std::process::exit(2);
    }
    if args.url.is_some() && names.contains(&"startup") {
        eprintln!("startup needs the harness to start the server: skipped with --url");
        names.retain(|n| *n != "startup");
    }
    let nodes = args.nodes.max(1);
    if args.url.is_none() && nodes > 1 {
        let database = std::env::var("BRIGHTCHAT_DATABASE_URL").unwrap_or_default();
        if !database.starts_with("postgres") {
            eprintln!(
                "--nodes {nodes} needs BRIGHTCHAT_DATABASE_URL to name a PostgreSQL database"
            );
            std::process::exit(2);
        }
        if names.contains(&"startup") {
            eprintln!("startup measures one server on its own: skipped with --nodes");
            names.retain(|n| *n != "startup");
        }
    }
    let sizes = Sizes {
        clients: args.clients.max(1),
        duration: Duration::from_secs_f64(args.seconds.max(0.1)),
        members: args.members.max(1),
        subscribers: args.subscribers.max(1),
        fanout_online: args.fanout_online,
        idle: args.idle.max(1),
        big_members: args.big_members.max(3),
        big_ops: args.big_ops.max(1),
        wave: args.wave.max(1),
        startup_runs: args.startup_runs.max(1),
        cross_subscribers: args.cross_subscribers.max(1),
        rate: args.rate.max(1),
        burst: args.burst.max(1),
        cross_ops: args.cross_ops.max(1),
    };
    // Each socket is a file descriptor here and, when the server runs here, there too.
    let sockets = sizes.max_sockets();
    match support::raise_fd_limit() {
        Ok(limit) if (limit as usize) < sockets + 256 => eprintln!(
            "warning: open files limited to {limit}; {sockets} sockets need more (ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(error) => eprintln!("warning: could not raise the open-file limit: {error}"),
    }
    // The server's cap on open connections (default 10,000), raised for this run.
    let mut server_env = vec![(
        "BRIGHTCHAT_MAX_CONNECTIONS".to_owned(),
        (sockets + 1_024).max(10_000).to_string(),
    )];
    if let Some(redis) = &args.redis_url {
        server_env.push(("BRIGHTCHAT_REDIS_URL".to_owned(), redis.clone()));
    }

    // Idle pooled connections are dropped before the server's keep-alive timeout (10 s by
    // default) closes them, so that a request never goes out on a connection being closed.
    let client = match reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("http client: {error}");
            std::process::exit(2);
        }
    };
    let servers = match &args.url {
        Some(_) => Vec::new(),
        None => {
            if !args.server_bin.exists() {
                eprintln!(
                    "{} not found: build it (cargo build --release) or pass --server-bin or --url",
                    args.server_bin.display()
                );
                std::process::exit(2);
            }
            match start_nodes(&client, &args.server_bin, &server_env, nodes).await {
                Ok(servers) => servers,
                Err(error) => {
                    eprintln!("{error}");
                    std::process::exit(2);
                }
            }
        }
    };
    let target = match &args.url {
        Some(urls) => Target {
            nodes: urls
                .split(',')
                .map(|url| url.trim().trim_end_matches('/').to_owned())
                .filter(|url| !url.is_empty())
                .collect(),
            pids: Vec::new(),
            server_bin: None,
            server_env: Vec::new(),
        },
        None => Target {
            nodes: servers.iter().map(|s| s.base.clone()).collect(),
            pids: servers.iter().map(|s| s.child.id()).collect(),
            server_bin: Some(args.server_bin.clone()),
            server_env,
        },
    };
    if target.nodes.is_empty() {
        eprintln!("--url names no server");
        std::process::exit(2);
    }
    eprintln!("load: {}, {sizes:?}", target.nodes.join(", "));
    let mut reports = Vec::new();
    let mut failed = false;
    for name in names {
        eprintln!("running {name}…");
        match load::run(&client, &target, name, &sizes).await {
            Ok(rows) => reports.extend(rows),
            Err(error) => {
                eprintln!("{name} failed: {error}");
                failed = true;
                break;
            }
        }
    }
    print!("{}", load::table(&reports));
    // Stops the servers before exiting (process::exit would skip that).
    drop(servers);
    if failed {
        std::process::exit(1);
    }
}

/// Starts `nodes` servers at `bin` with `env`, one after the other (the first runs the
/// migrations). Nodes 2.. get node 1's server key (`BRIGHTCHAT_SERVER_KEY`, or the
/// `server.key` it made in its data dir), as every node of one deployment must. They all
/// inherit this process's environment: `BRIGHTCHAT_DATABASE_URL`, `BRIGHTCHAT_REDIS_URL`.
async fn start_nodes(
    client: &reqwest::Client,
    bin: &std::path::Path,
    env: &[(String, String)],
    nodes: usize,
) -> Result<Vec<support::Server>, String> {
    let mut env: Vec<(&str, String)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    let first = support::start_server_at(client, bin, &env).await;
    let mut servers = vec![first];
    if nodes > 1 {
        let key = match std::env::var("BRIGHTCHAT_SERVER_KEY") {
            Ok(key) => key,
            Err(_) => {
                let path = servers[0].data_dir().join("server.key");
                std::fs::read_to_string(&path)
                    .map_err(|error| format!("{}: {error}", path.display()))?
                    .trim()
                    .to_owned()
            }
        };
        env.push(("BRIGHTCHAT_SERVER_KEY", key));
        for _ in 1..nodes {
            servers.push(support::start_server_at(client, bin, &env).await);
        }
    }
    Ok(servers)
}
