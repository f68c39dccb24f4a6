//! Seeding over the public API: members registered concurrently, channels joined
//! concurrently, messages; with progress on stderr for big counts.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use super::super::{Member, try_member, try_post};

/// Requests in flight while seeding.
pub const SEED_CONCURRENCY: usize = 64;

/// Counts below this seed without progress lines.
const QUIET_BELOW: usize = 2_000;

/// Progress of a long seeding step on stderr, at most one line every two seconds.
pub struct Progress {
    what: &'static str,
    total: usize,
    done: usize,
    started: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(what: &'static str, total: usize) -> Self {
        let now = Instant::now();
        Self {
            what,
            total,
            done: 0,
            started: now,
            last: now,
        }
    }

    /// One more done.
    pub fn tick(&mut self) {
        self.done += 1;
        if self.total >= QUIET_BELOW
            && (self.last.elapsed() >= Duration::from_secs(2) || self.done == self.total)
        {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "  {} {}/{} ({:.0}/s, {:.1} s)",
                self.what,
                self.done,
                self.total,
                self.done as f64 / secs.max(1e-9),
                secs
            );
        }
    }

    /// Time since the step began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Registers and signs in `count` members named `{prefix}{i}`, [`SEED_CONCURRENCY`] at a
/// time, in order.
pub async fn register(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: usize,
) -> Result<Vec<Member>, String> {
    let mut progress = Progress::new("registered", count);
    let mut members = Vec::with_capacity(count);
    let mut pending = futures_util::stream::iter((0..count).map(|i| {
        let name = format!("{prefix}{i}");
        async move { try_member(client, base, name).await }
    }))
    .buffered(SEED_CONCURRENCY);
    while let Some(member) = pending.next().await {
        members.push(member?);
        progress.tick();
    }
    Ok(members)
}

/// POSTs an empty JSON object to `url` as `token`; a 503 (a busy channel lock) is retried
/// after a pause, up to five times. Any other non-2xx answer is an error.
pub async fn post_retrying(
    client: &reqwest::Client,
    url: String,
    token: &str,
) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        let response = client
            .post(&url)
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        attempt += 1;
        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempt > 5 {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{url}: {status} {body}"));
        }
        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
    }
}

/// `members` join public channel `id`, [`SEED_CONCURRENCY`] at a time.
pub async fn join_all(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    members: &[Member],
) -> Result<(), String> {
    let mut progress = Progress::new("joined", members.len());
    let mut pending = futures_util::stream::iter(members.iter().map(|member| {
        let url = format!("{base}/api/channels/{id}/join");
        async move { post_retrying(client, url, &member.token).await }
    }))
    .buffer_unordered(SEED_CONCURRENCY);
    while let Some(joined) = pending.next().await {
        joined?;
        progress.tick();
    }
    Ok(())
}

/// A public channel created by the first member and joined by the others; returns its id.
pub async fn channel(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    members: &[Member],
) -> Result<String, String> {
    let (owner, others) = members
        .split_first()
        .ok_or("a channel needs at least one member")?;
    let created = try_post(
        client,
        format!("{base}/api/channels"),
        Some(&owner.token),
        json!({"name": name, "visibility": "public"}),
    )
    .await?;
    let id = created["data"]["id"]
        .as_str()
        .ok_or_else(|| format!("channel not created: {created}"))?
        .to_owned();
    join_all(client, base, &id, others).await?;
    Ok(id)
}

/// `count` messages in channel `id`, one at a time, from the members in turn.
pub async fn seed_messages(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    members: &[Member],
    count: usize,
) -> Result<(), String> {
    for i in 0..count {
        let member = &members[i % members.len()];
        try_post(
            client,
            format!("{base}/api/channels/{id}/messages"),
            Some(&member.token),
            json!({"content": format!("lighthouse harbour note {i}")}),
        )
        .await?;
    }
    Ok(())
}
