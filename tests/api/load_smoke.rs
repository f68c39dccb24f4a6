//! The load harness (`examples/load.rs`, scenarios in `benches/support/load.rs`) at tiny
//! sizes: every scenario completes without errors and measures something. No timings.

use std::time::Duration;

use crate::common::TestServer;

#[path = "../../benches/support/mod.rs"]
mod support;

use support::load::{self, SCENARIOS, Sizes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_without_errors() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let sizes = Sizes {
        clients: 2,
        duration: Duration::from_secs(1),
        members: 3,
        subscribers: 3,
    };
    for name in SCENARIOS {
        let report = load::run(&client, &server.base, name, &sizes)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.scenario, name);
        assert_eq!(report.errors, 0, "{name}: {report:?}");
        assert!(report.requests > 0, "{name}: no requests");
        assert!(!report.latencies.is_empty(), "{name}: no latency sample");
    }
    assert!(
        load::run(&client, &server.base, "nope", &sizes)
            .await
            .is_err()
    );
}
