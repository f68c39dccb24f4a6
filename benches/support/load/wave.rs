//! `presence-wave`: a crowd sharing a channel comes online at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::seed::{channel, register};
use super::ws::{Counters, connect, drain, read, stop, wait_quiet};
use super::{Outcome, Report, Sizes, report};

/// The longest a handshake of the wave may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// `wave` members and an observer share one public channel. The observer connects first;
/// then every member of the wave connects at once (one task each). Measured: when the
/// observer has seen each member's `online` (latencies, from the start of the wave; the
/// row's elapsed time is until it has seen all of them), and how many frames the observer
/// and the crowd received. Requests are the wave's connections; a failed handshake, a
/// member never seen online or a socket the server closed counts as an error.
pub async fn presence_wave(
    client: &reqwest::Client,
    base: &str,
    sizes: &Sizes,
) -> Result<Report, String> {
    let wave = sizes.wave.max(1);
    let members = register(client, base, "wave", wave + 1).await?;
    channel(client, base, "load-wave", &members).await?;
    let (observer, crowd) = members
        .split_first()
        .ok_or("presence-wave needs an observer")?;

    let expected: Arc<HashSet<String>> = Arc::new(crowd.iter().map(|m| m.id.clone()).collect());
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let watched = Arc::new(Counters::default());
    let observer_reader = {
        let socket = connect(base, &observer.token).await?;
        let expected = expected.clone();
        let seen = seen.clone();
        read(socket, watched.clone(), move |text, at| {
            if !text.contains("communication:presence_changed") {
                return;
            }
            let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            let data = &value["data"];
            if data["status"] == "online"
                && let Some(member) = data["memberId"].as_str()
                && expected.contains(member)
            {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(member.to_owned())
                    .or_insert(at);
            }
        })
    };
    // The observer's own `online` first.
    wait_quiet(
        &watched.frames,
        Duration::from_millis(300),
        Duration::from_secs(30),
    )
    .await;
    let observer_before = watched.frames.load(Ordering::Relaxed);

    let crowd_counters = Arc::new(Counters::default());
    let started = Instant::now();
    let connecting: Vec<_> = crowd
        .iter()
        .map(|member| {
            let base = base.to_owned();
            let token = member.token.clone();
            let counters = crowd_counters.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(CONNECT_TIMEOUT, connect(&base, &token)).await {
                    Ok(Ok(socket)) => Ok(drain(socket, counters)),
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err("connect: timed out".to_owned()),
                }
            })
        })
        .collect();
    let seen_count = || seen.lock().unwrap_or_else(|p| p.into_inner()).len();
    let deadline = started + Duration::from_secs(60).max(Duration::from_millis(100) * wave as u32);
    while seen_count() < wave && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all_online = started.elapsed();
    let observer_until_all = watched.frames.load(Ordering::Relaxed) - observer_before;

    let mut readers = Vec::with_capacity(wave);
    let mut failed = 0u64;
    for task in connecting {
        match task.await {
            Ok(Ok(reader)) => readers.push(reader),
            Ok(Err(error)) => {
                if failed == 0 {
                    eprintln!("  first failed connection: {error}");
                }
                failed += 1;
            }
            Err(_) => failed += 1,
        }
    }
    wait_quiet(
        &watched.frames,
        Duration::from_millis(500),
        Duration::from_secs(60),
    )
    .await;
    let observer_settled = watched.frames.load(Ordering::Relaxed) - observer_before;
    let crowd_frames = crowd_counters.frames.load(Ordering::Relaxed);
    let closed =
        crowd_counters.closed.load(Ordering::Relaxed) + watched.closed.load(Ordering::Relaxed);

    // The crowd leaves; the observer watches the `offline` events pass, so that they do not
    // spill into the next scenario.
    stop(&readers);
    wait_quiet(
        &watched.frames,
        Duration::from_millis(500),
        Duration::from_secs(60),
    )
    .await;
    stop(&[observer_reader]);

    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    let latencies: Vec<Duration> = seen.values().map(|at| at.duration_since(started)).collect();
    let missing = wave.saturating_sub(latencies.len()) as u64;
    let mut row = report(
        "presence-wave",
        "",
        Outcome {
            requests: wave as u64,
            errors: failed + missing + closed,
            elapsed: all_online,
            latencies,
        },
    );
    row.notes.push(format!(
        "presence-wave: {} of {wave} members seen online by the observer after {:.0} ms; the \
         observer received {observer_until_all} frames by then ({observer_settled} once \
         settled), the wave's own sockets {crowd_frames}",
        wave as u64 - missing,
        all_online.as_secs_f64() * 1000.0,
    ));
    Ok(row)
}
