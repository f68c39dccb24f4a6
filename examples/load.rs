//! Load harness: drives a BrightChat server over its public HTTP API and WebSocket and prints
//! one table (requests, errors, throughput, latency percentiles, server RSS) per scenario.
//!
//!     cargo build --release && cargo run --release --example load -- --seconds 10
//!     cargo run --release --example load -- --url http://127.0.0.1:8080 --scenario history
//!
//! Without `--url` it starts `--server-bin` (default `target/release/brightchat`) on a free
//! loopback port with a scratch data dir, and stops it at the end.

#[path = "../benches/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use support::load::{self, SCENARIOS, Sizes};

#[derive(Parser, Debug)]
#[command(about = "Load harness for a BrightChat server")]
struct Args {
    /// A running server to drive, e.g. http://127.0.0.1:8080; without it one is started.
    #[arg(long)]
    url: Option<String>,
    /// The server binary to start when --url is not given.
    #[arg(long, default_value = "target/release/brightchat")]
    server_bin: PathBuf,
    /// channel-send, dm-send, history, search, fanout or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Concurrent clients for the request scenarios.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Members of the channel for channel-send, history and search.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// WebSocket subscribers for fanout.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let names: Vec<&str> = if args.scenario == "all" {
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
    let sizes = Sizes {
        clients: args.clients.max(1),
        duration: Duration::from_secs_f64(args.seconds.max(0.1)),
        members: args.members.max(1),
        subscribers: args.subscribers.max(1),
    };
    let client = reqwest::Client::new();
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
            Some(support::start_server_at(&client, &args.server_bin, &[]).await)
        }
    };
    let base = match (&args.url, &server) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(server)) => server.base.clone(),
        (None, None) => unreachable!(),
    };
    let pid = server.as_ref().map(|s| s.child.id());
    eprintln!(
        "load: {base}, {} clients, {:?} per scenario, {} channel members, {} subscribers",
        sizes.clients, sizes.duration, sizes.members, sizes.subscribers
    );
    let mut reports = Vec::new();
    for name in names {
        eprintln!("running {name}…");
        match load::run(&client, &base, name, &sizes).await {
            Ok(mut report) => {
                report.rss_kib = pid.map(support::rss_kib);
                reports.push(report);
            }
            Err(error) => {
                eprintln!("{name} failed: {error}");
                std::process::exit(1);
            }
        }
    }
    print!("{}", load::table(&reports));
}
