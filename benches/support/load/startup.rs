//! `startup`: how long the server binary takes to serve, and its memory right then.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::super::{rss_kib, spawn_server_in};
use super::{Outcome, Report, Sizes, Target, report};

/// The longest a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the server binary `startup_runs` times on a fresh data dir and once more on that
/// same dir (a restart: migrations done, key and index present), stopping it each time.
/// Latency is spawn → first 200 from `/healthz` (polled every 2 ms on fresh connections);
/// the RSS column is the median RSS read right after that 200. Needs the binary: only when
/// the harness starts the server.
pub async fn startup(target: &Target, sizes: &Sizes) -> Result<Vec<Report>, String> {
    let bin = target
        .server_bin
        .as_deref()
        .ok_or("startup needs the server binary: run without --url")?;
    let env: Vec<(&str, String)> = target
        .server_env
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    let probe = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| e.to_string())?;
    let mut fresh = Starts::default();
    let mut restart = Starts::default();
    for _ in 0..sizes.startup_runs.max(1) {
        let dir = tempfile::tempdir().map_err(|e| format!("data dir: {e}"))?;
        fresh.add(start_once(&probe, bin, &env, dir.path()).await);
        restart.add(start_once(&probe, bin, &env, dir.path()).await);
    }
    let note = format!(
        "startup: RSS right after the first 200 from /healthz: fresh data dir {}, restart {} \
         (min/median/max KiB)",
        fresh.rss_range(),
        restart.rss_range()
    );
    let mut rows = vec![fresh.report("fresh"), restart.report("restart")];
    rows[1].notes.push(note);
    Ok(rows)
}

/// Start times and RSS of one kind of start.
#[derive(Default)]
struct Starts {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    rss: Vec<u64>,
}

impl Starts {
    fn add(&mut self, start: Result<(Duration, u64), String>) {
        self.requests += 1;
        match start {
            Ok((took, rss)) => {
                self.elapsed += took;
                self.latencies.push(took);
                self.rss.push(rss);
            }
            Err(error) => {
                eprintln!("  start failed: {error}");
                self.errors += 1;
            }
        }
    }

    fn rss_range(&self) -> String {
        let mut rss = self.rss.clone();
        rss.sort_unstable();
        match (rss.first(), rss.last()) {
            (Some(min), Some(max)) => format!("{min}/{}/{max}", rss[rss.len() / 2]),
            _ => "-".to_owned(),
        }
    }

    fn report(self, what: &str) -> Report {
        let mut rss = self.rss;
        rss.sort_unstable();
        let median = rss.get(rss.len() / 2).copied();
        let mut row = report(
            "startup",
            what,
            Outcome {
                requests: self.requests,
                errors: self.errors,
                elapsed: self.elapsed,
                latencies: self.latencies,
            },
        );
        row.rss_kib = median;
        row
    }
}

/// Spawns the server on `dir`, waits for the first 200 from `/healthz`, reads its RSS and
/// stops it.
async fn start_once(
    probe: &reqwest::Client,
    bin: &Path,
    env: &[(&str, String)],
    dir: &Path,
) -> Result<(Duration, u64), String> {
    let at = Instant::now();
    let (mut child, base) =
        spawn_server_in(bin, env, dir).map_err(|e| format!("{}: {e}", bin.display()))?;
    let healthy = wait_healthy(probe, &base, &mut child, at).await;
    let rss = rss_kib(child.id());
    stop(&mut child).await;
    healthy.map(|took| (took, rss))
}

async fn wait_healthy(
    probe: &reqwest::Client,
    base: &str,
    child: &mut Child,
    at: Instant,
) -> Result<Duration, String> {
    let url = format!("{base}/healthz");
    loop {
        if let Ok(response) = probe.get(&url).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            return Ok(at.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited: {status}"));
        }
        if at.elapsed() > START_TIMEOUT {
            return Err(format!("no 200 from {url} within {START_TIMEOUT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Asks the server to stop (SIGTERM), as an operator would, and kills it after 10 s.
async fn stop(child: &mut Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill only sends a signal, to a child we spawned and have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
