//! The load harness (`examples/load.rs`, scenarios in `benches/support/load.rs`) at tiny
//! sizes: every scenario completes without errors and produces its rows. No timings.

use std::time::Duration;

use crate::common::TestServer;

#[path = "../../benches/support/mod.rs"]
mod support;

use support::load::{self, SCENARIOS, Sizes, Target};

/// The rows each scenario produces, by name.
fn rows_of(scenario: &str) -> Vec<String> {
    match scenario {
        "big-channel" => ["join", "leave", "kick", "send"]
            .iter()
            .map(|what| format!("big-channel {what}"))
            .collect(),
        "startup" => vec!["startup fresh".into(), "startup restart".into()],
        "history-under-load" => vec![
            "history-under-load send".into(),
            "history-under-load read".into(),
        ],
        "cross-node" => ["rate", "burst", "join", "kick"]
            .iter()
            .map(|what| format!("cross-node {what}"))
            .collect(),
        other => vec![other.to_owned()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_without_errors() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let sizes = Sizes {
        clients: 2,
        duration: Duration::from_secs(1),
        members: 3,
        subscribers: 3,
        fanout_online: false,
        idle: 20,
        big_members: 30,
        big_ops: 3,
        wave: 10,
        startup_runs: 1,
        cross_subscribers: 3,
        rate: 20,
        burst: 10,
        cross_ops: 2,
    };
    // The server runs in this process; `startup` spawns the binary Cargo built for the tests.
    let target = Target {
        server_bin: Some(env!("CARGO_BIN_EXE_brightchat").into()),
        ..Target::remote(&server.base)
    };
    let mut all = Vec::new();
    for name in SCENARIOS {
        let reports = load::run(&client, &target, name, &sizes)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows: Vec<&str> = reports.iter().map(|r| r.row.as_str()).collect();
        assert_eq!(rows, rows_of(name), "{name}");
        for report in &reports {
            assert_eq!(report.scenario, name);
            assert_eq!(report.errors, 0, "{name}: {report:?}");
            assert!(report.requests > 0, "{name}: no requests");
            assert!(!report.latencies.is_empty(), "{name}: no latency sample");
        }
        all.extend(reports);
    }
    let idle = all
        .iter()
        .find(|r| r.scenario == "idle-ws")
        .expect("idle-ws row");
    assert_eq!(idle.requests, 20, "one connection per idle member");
    assert_eq!(idle.latencies.len(), 20, "every idle connection opened");
    let wave = all
        .iter()
        .find(|r| r.scenario == "presence-wave")
        .expect("wave row");
    assert_eq!(
        wave.latencies.len(),
        10,
        "the observer saw all 10 come online"
    );
    assert!(
        all.iter()
            .filter(|r| r.scenario == "startup")
            .all(|r| r.rss_kib.is_some_and(|kib| kib > 0)),
        "startup reads the RSS of the server it starts"
    );

    let table = load::table(&all);
    eprintln!("{table}");
    for name in SCENARIOS {
        for row in rows_of(name) {
            assert!(
                table.lines().any(|line| line.starts_with(&row)),
                "{row} missing from\n{table}"
            );
        }
    }
    let cross: Vec<&load::Report> = all.iter().filter(|r| r.scenario == "cross-node").collect();
    assert_eq!(cross[0].requests, 20, "20 msg/s for 1 s");
    assert_eq!(
        cross[0].latencies.len(),
        60,
        "every message reached all 3 subscribers"
    );
    assert_eq!(
        cross[1].latencies.len(),
        30,
        "the burst of 10 reached all 3"
    );
    assert_eq!(cross[2].latencies.len(), 6, "2 joins seen by all 3");
    assert_eq!(cross[3].latencies.len(), 6, "2 key rotations seen by all 3");
    for note in [
        "idle-ws:",
        "big-channel:",
        "presence-wave:",
        "cross-node:",
        "startup:",
    ] {
        assert!(table.contains(note), "no {note} note in\n{table}");
    }

    assert!(load::run(&client, &target, "nope", &sizes).await.is_err());
    let remote = Target {
        server_bin: None,
        ..target
    };
    assert!(
        load::run(&client, &remote, "startup", &sizes)
            .await
            .is_err(),
        "startup needs a binary to start"
    );
}
