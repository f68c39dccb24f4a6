//! Load harness: drives a BrightChat server over its public HTTP API and WebSocket and prints
//! one table (requests, errors, throughput, latency percentiles, server RSS) with a row per
//! scenario (several for big-channel and startup) and notes under it.
//!
//!     cargo build --release && cargo run --release --example load -- --seconds 10
//!     cargo run --release --example load -- --url http://127.0.0.1:8080 --scenario history
//!     cargo run --release --example load -- --scenario fanout --subscribers 10000
//!
//! Without `--url` it starts `--server-bin` (default `target/release/brightchat`) on a free
//! loopback port with a scratch data dir, with the connection cap raised for the sockets the
//! run needs, and stops it at the end. Either way it raises its own open-file soft limit to
//! the hard limit first (the server it starts inherits it).

#[path = "../benches/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use support::load::{self, SCENARIOS, Sizes, Target};

#[derive(Parser, Debug)]
#[command(about = "Load harness for a BrightChat server")]
struct Args {
    /// A running server to drive, e.g. http://127.0.0.1:8080; without it one is started.
    #[arg(long)]
    url: Option<String>,
    /// The server binary to start when --url is not given.
    #[arg(long, default_value = "target/release/brightchat")]
    server_bin: PathBuf,
    /// Comma-separated scenarios (channel-send, dm-send, history, history-under-load, search,
    /// fanout, idle-ws, big-channel, presence-wave, startup) or all.
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
    let server_env = vec![(
        "BRIGHTCHAT_MAX_CONNECTIONS".to_owned(),
        (sockets + 1_024).max(10_000).to_string(),
    )];
    let env: Vec<(&str, String)> = server_env
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();

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
    let server = match &args.url {
        Some(_) => None,
        None => {
            if !args.server_bin.exists() {
                eprintln!(
                    "{} not found: build it (cargo build --release) or pass --server-bin or --url",
                    args.server_bin.display()
                );
                std::process::exit(2);
            }
            Some(support::start_server_at(&client, &args.server_bin, &env).await)
        }
    };
    let target = match (&args.url, &server) {
        (Some(url), _) => Target {
            base: url.trim_end_matches('/').to_owned(),
            pid: None,
            server_bin: None,
            server_env: Vec::new(),
        },
        (None, Some(server)) => Target {
            base: server.base.clone(),
            pid: Some(server.child.id()),
            server_bin: Some(args.server_bin.clone()),
            server_env,
        },
        (None, None) => unreachable!("a server is started when no --url is given"),
    };
    eprintln!("load: {}, {sizes:?}", target.base);
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
    // Stops the server before exiting (process::exit would skip that).
    drop(server);
    if failed {
        std::process::exit(1);
    }
}
