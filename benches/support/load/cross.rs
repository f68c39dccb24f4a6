//! `cross-node`: how long an event takes from a request on the first node to a socket on
//! the last; with one node, the same-node baseline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::{Member, try_post};
use super::seed::{channel, post_retrying, register};
use super::ws::{Counters, connect_all, read, stop, wait_quiet};
use super::{Outcome, Report, Sizes, Target, report};

/// Waiting for frames ends when none has come for this long...
const STALL: Duration = Duration::from_secs(5);
/// ...or after this long in all.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// The longest pause before each join or kick.
const JITTER_MAX: Duration = Duration::from_millis(300);

/// What a subscriber's frame was about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `message_sent`; the key is the message id.
    Message,
    /// `member_joined`; the key is the member id.
    Joined,
    /// `key_rotated`; the key is the epoch.
    Rotated,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Message, Kind::Joined, Kind::Rotated];

    fn of(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| text.contains(kind.event_type()))
    }

    fn event_type(self) -> &'static str {
        match self {
            Kind::Message => "\"communication:message_sent\"",
            Kind::Joined => "\"communication:member_joined\"",
            Kind::Rotated => "\"communication:key_rotated\"",
        }
    }

    fn key(self, data: &Value) -> Option<String> {
        match self {
            Kind::Message => data["id"].as_str().map(str::to_owned),
            Kind::Joined => data["memberId"].as_str().map(str::to_owned),
            Kind::Rotated => data["epoch"].as_i64().map(|epoch| epoch.to_string()),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Every frame of interest the subscribers received, in arrival order.
#[derive(Default)]
struct Log {
    entries: Mutex<Vec<(Kind, String, Instant)>>,
    counts: [AtomicU64; 3],
}

impl Log {
    fn record(&self, text: &str, at: Instant) {
        let Some(kind) = Kind::of(text) else {
            return;
        };
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let Some(key) = kind.key(&value["data"]) else {
            return;
        };
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((kind, key, at));
        self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self, kind: Kind) -> u64 {
        self.counts[kind.index()].load(Ordering::Relaxed)
    }

    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Arrival times of the frames of `kind` from position `from` on whose key passes `keep`.
    fn since(&self, from: usize, kind: Kind, keep: impl Fn(&str) -> bool) -> Vec<Instant> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(from..)
            .unwrap_or_default()
            .iter()
            .filter(|(k, key, _)| *k == kind && keep(key))
            .map(|(_, _, at)| *at)
            .collect()
    }

    /// Waits until `count` frames of `kind` have arrived in all, or none has for [`STALL`],
    /// or [`WAIT_MAX`] has passed.
    async fn wait_for(&self, kind: Kind, count: u64) {
        let started = Instant::now();
        let mut last = self.count(kind);
        let mut moved = Instant::now();
        while self.count(kind) < count && moved.elapsed() < STALL && started.elapsed() < WAIT_MAX {
            tokio::time::sleep(Duration::from_micros(500)).await;
            let now = self.count(kind);
            if now != last {
                last = now;
                moved = Instant::now();
            }
        }
    }
}

/// A channel with `members` senders (the first its owner) and `cross_subscribers`
/// subscribers, everyone seated through the first node. The subscribers connect to
/// `/api/events` on the last node; then, all requests on the first node:
///
/// - `rate`: messages at `rate` per second for the duration, each sent when due whatever
///   the answers before it (an open loop), from the senders in turn;
/// - `burst`: `burst` messages sent by `clients` clients back to back;
/// - `join`: `cross_ops` fresh members join, one at a time;
/// - `kick`: the owner kicks them, one at a time (each kick rotates the channel's key).
///
/// Joins and kicks each wait a random 0 to 300 ms first.
///
/// One row each. Latencies are request sent → frame received (`message_sent`,
/// `member_joined`, `key_rotated`) over every subscriber; each phase waits until every
/// subscriber has everything (or nothing came for 5 s). Requests are what was sent; a
/// failed request, a frame some subscriber never received (lost), a subscriber that failed
/// to connect or was dropped counts as an error. A note says where things ran and what was
/// lost.
pub async fn cross_node(
    client: &reqwest::Client,
    target: &Target,
    sizes: &Sizes,
) -> Result<Vec<Report>, String> {
    let first = target.base();
    let last = target.last();
    let subscribers = sizes.cross_subscribers.max(1);
    let ops = sizes.cross_ops.max(1);

    let senders = register(client, first, "xsend", sizes.members.max(1)).await?;
    let listeners = register(client, first, "xlisten", subscribers).await?;
    let everyone: Vec<Member> = senders.iter().chain(&listeners).cloned().collect();
    let id = channel(client, first, "load-cross", &everyone).await?;
    let joiners = register(client, first, "xjoin", ops).await?;

    let tokens: Vec<String> = listeners.iter().map(|m| m.token.clone()).collect();
    let (sockets, _, failed) = connect_all(last, &tokens).await;
    let log = Arc::new(Log::default());
    let counters = Arc::new(Counters::default());
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let log = log.clone();
            read(socket, counters.clone(), move |text, at| {
                log.record(text, at)
            })
        })
        .collect();
    let connected = readers.len() as u64;
    settle(&counters.frames).await;

    let sender_tokens: Arc<Vec<String>> =
        Arc::new(senders.iter().map(|m| m.token.clone()).collect());
    let url = format!("{first}/api/channels/{id}/messages");

    let rate = sizes.rate.max(1);
    let due = ((rate as f64 * sizes.duration.as_secs_f64()).round() as usize).max(1);
    let before = log.count(Kind::Message);
    let steady = open_loop(client, &url, &sender_tokens, rate, due).await;
    let steady = deliveries(&log, before, steady, connected).await;
    settle(&counters.frames).await;

    let before = log.count(Kind::Message);
    let burst = closed_burst(client, &url, &sender_tokens, sizes.clients, sizes.burst).await;
    let burst = deliveries(&log, before, burst, connected).await;
    settle(&counters.frames).await;

    let owner = &senders[0];
    let join = one_by_one(&log, connected, &joiners, Kind::Joined, |member| {
        post_retrying(
            client,
            format!("{first}/api/channels/{id}/join"),
            &member.token,
        )
    })
    .await;
    settle(&counters.frames).await;
    let kick = one_by_one(&log, connected, &joiners, Kind::Rotated, |member| {
        post_retrying(
            client,
            format!("{first}/api/channels/{id}/kick/{}", member.id),
            &owner.token,
        )
    })
    .await;

    let closed = counters.closed.load(Ordering::Relaxed);
    stop(&readers);
    let socket_errors = failed + closed;
    let where_ = if target.nodes.len() > 1 {
        format!(
            "requests on node 1, {connected} subscribers on node {} of {}",
            target.nodes.len(),
            target.nodes.len()
        )
    } else {
        format!("requests and {connected} subscribers on the one node")
    };
    let note = format!(
        "cross-node: {where_}; rate: {rate} msg/s offered for {:.1} s, {} sent ({} failed), \
         {} frames lost; burst: {} messages by {} clients, sent in {:.0} ms, last frame {:.0} ms \
         after the first send, {} lost; join/kick: {ops} each, {} + {} frames lost; {} \
         subscribers failed to connect or were dropped",
        sizes.duration.as_secs_f64(),
        steady.sent,
        steady.failed,
        steady.lost,
        sizes.burst,
        sizes.clients.max(1),
        burst.sending.as_secs_f64() * 1000.0,
        burst.until_last.as_secs_f64() * 1000.0,
        burst.lost,
        join.lost,
        kick.lost,
        socket_errors,
    );
    let mut rows = vec![
        steady.row("rate", socket_errors),
        burst.row("burst", 0),
        join.row("join", 0),
        kick.row("kick", 0),
    ];
    rows[0].notes.push(note);
    Ok(rows)
}

/// What one phase measured.
struct Phase {
    sent: u64,
    failed: u64,
    lost: u64,
    /// From the first request to the last answer.
    sending: Duration,
    /// From the first request to the last frame received.
    until_last: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn row(self, what: &str, more_errors: u64) -> Report {
        report(
            "cross-node",
            what,
            Outcome {
                requests: self.sent + self.failed,
                errors: self.failed + self.lost + more_errors,
                elapsed: self.sending,
                latencies: self.latencies,
            },
        )
    }
}

/// Messages sent, each with the moment its request went out; failures; the time taken.
struct Sends {
    sent: Vec<(String, Instant)>,
    failed: u64,
    started: Instant,
    took: Duration,
}

/// Waits for the frames of `sends` on `subscribers` sockets (`before`: the message frames
/// received before the phase began) and matches them by id.
async fn deliveries(log: &Log, before: u64, sends: Sends, subscribers: u64) -> Phase {
    let expected = sends.sent.len() as u64 * subscribers;
    log.wait_for(Kind::Message, before + expected).await;
    let at: HashMap<&str, Instant> = sends
        .sent
        .iter()
        .map(|(id, at)| (id.as_str(), *at))
        .collect();
    let entries = log.entries.lock().unwrap_or_else(|p| p.into_inner());
    let mut latencies = Vec::with_capacity(expected as usize);
    let mut last = sends.started;
    for (kind, key, received) in entries.iter() {
        if *kind != Kind::Message {
            continue;
        }
        if let Some(sent) = at.get(key.as_str()) {
            latencies.push(received.saturating_duration_since(*sent));
            last = last.max(*received);
        }
    }
    Phase {
        sent: sends.sent.len() as u64,
        failed: sends.failed,
        lost: expected.saturating_sub(latencies.len() as u64),
        sending: sends.took,
        until_last: last.saturating_duration_since(sends.started),
        latencies,
    }
}

/// Posts `count` messages to `url`, one every `1/rate` s whatever the answers before it,
/// from `tokens` in turn.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    tokens: &Arc<Vec<String>>,
    rate: usize,
    count: usize,
) -> Sends {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        ticker.tick().await;
        let client = client.clone();
        let url = url.to_owned();
        let token = tokens[n % tokens.len()].clone();
        tasks.push(tokio::spawn(async move {
            send_one(&client, &url, &token, n).await
        }));
    }
    let mut sends = Sends {
        sent: Vec::with_capacity(count),
        failed: 0,
        started,
        took: Duration::ZERO,
    };
    for task in tasks {
        match task.await {
            Ok(Some(sent)) => sends.sent.push(sent),
            _ => sends.failed += 1,
        }
    }
    sends.took = started.elapsed();
    sends
}

/// Posts `count` messages to `url` from `clients` clients, each sending its next when the
/// last is answered.
async fn closed_burst(
    client: &reqwest::Client,
    url: &str,
    tokens: &Arc<Vec<String>>,
    clients: usize,
    count: usize,
) -> Sends {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let client = client.clone();
            let url = url.to_owned();
            let tokens = tokens.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        return done;
                    }
                    done.push(send_one(&client, &url, &tokens[n % tokens.len()], n).await);
                }
            })
        })
        .collect();
    let mut sends = Sends {
        sent: Vec::with_capacity(count),
        failed: 0,
        started,
        took: Duration::ZERO,
    };
    for task in tasks {
        match task.await {
            Ok(done) => {
                for one in done {
                    match one {
                        Some(sent) => sends.sent.push(sent),
                        None => sends.failed += 1,
                    }
                }
            }
            Err(_) => sends.failed += 1,
        }
    }
    sends.took = started.elapsed();
    sends
}

/// Posts message `n`; its id and when the request went out, or `None` when it failed.
async fn send_one(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    n: usize,
) -> Option<(String, Instant)> {
    let at = Instant::now();
    let answer = try_post(
        client,
        url.to_owned(),
        Some(token),
        json!({"content": format!("cross {n}")}),
    )
    .await
    .ok()?;
    answer["data"]["id"].as_str().map(|id| (id.to_owned(), at))
}

/// For each member in turn: runs `op`, then waits until every subscriber has a frame of
/// `kind` that came after it (for `Joined`, the one naming that member).
async fn one_by_one<'a, F, Fut>(
    log: &Log,
    subscribers: u64,
    members: &'a [Member],
    kind: Kind,
    op: F,
) -> Phase
where
    F: Fn(&'a Member) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut phase = Phase {
        sent: 0,
        failed: 0,
        lost: 0,
        sending: Duration::ZERO,
        until_last: Duration::ZERO,
        latencies: Vec::new(),
    };
    let mut took = Duration::ZERO;
    for member in members {
        // A random pause first, so that operations do not fall into step with a node's
        // periodic work (the outbox poll) and show only one phase of it.
        tokio::time::sleep(jitter()).await;
        let from = log.len();
        let already = log.count(kind);
        let at = Instant::now();
        if let Err(error) = op(member).await {
            if phase.failed == 0 {
                eprintln!("  cross-node: {error}");
            }
            phase.failed += 1;
            continue;
        }
        took += at.elapsed();
        phase.sent += 1;
        log.wait_for(kind, already + subscribers).await;
        let keep: Box<dyn Fn(&str) -> bool> = match kind {
            Kind::Joined => Box::new(|key: &str| key == member.id),
            _ => Box::new(|_: &str| true),
        };
        let arrived = log.since(from, kind, keep);
        let mut seen = 0u64;
        // At most one frame per subscriber belongs to this operation.
        for received in arrived.into_iter().take(subscribers as usize) {
            phase.latencies.push(received.saturating_duration_since(at));
            seen += 1;
        }
        phase.lost += subscribers.saturating_sub(seen);
    }
    // Elapsed is the time the requests took, so req/s is how fast they were answered.
    phase.sending = took;
    phase.until_last = started.elapsed();
    phase
}

/// A random pause of 0 to [`JITTER_MAX`].
fn jitter() -> Duration {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return JITTER_MAX / 2;
    }
    JITTER_MAX.mul_f64(f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX))
}

/// Lets the frames of what came before pass (typing none, presence perhaps).
async fn settle(frames: &AtomicU64) {
    wait_quiet(frames, Duration::from_millis(300), Duration::from_secs(10)).await;
}
