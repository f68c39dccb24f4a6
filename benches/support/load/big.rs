//! `big-channel`: join, leave, kick and send in a channel of many members.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::super::{Member, try_post};
use super::seed::{join_all, post_retrying, register};
use super::{Outcome, Report, Sizes, report, send_loop};

/// Seeds `big_members` members (registered concurrently) into one public channel, then
/// measures, one request at a time, `big_ops` joins of further members, their leaves, and
/// `big_ops` kicks of seeded members by the owner; then `clients` clients send to the
/// channel for the duration, as `channel-send` does in a small one. Four rows; the note
/// gives the seeding times.
pub async fn big_channel(
    client: &reqwest::Client,
    base: &str,
    sizes: &Sizes,
) -> Result<Vec<Report>, String> {
    let seeded = sizes.big_members.max(3);
    // Kicks take seeded members from the end; senders are the others.
    let ops = sizes.big_ops.clamp(1, seeded / 2);

    let registering = Instant::now();
    let mut members = register(client, base, "big", seeded).await?;
    let registered = registering.elapsed();
    let owner = members.remove(0);
    let created = try_post(
        client,
        format!("{base}/api/channels"),
        Some(&owner.token),
        json!({"name": "load-big", "visibility": "public"}),
    )
    .await?;
    let id = created["data"]["id"]
        .as_str()
        .ok_or_else(|| format!("channel not created: {created}"))?
        .to_owned();
    let joining = Instant::now();
    join_all(client, base, &id, &members).await?;
    let joined = joining.elapsed();
    let newcomers = register(client, base, "bignew", ops).await?;

    let join_url = |_: &Member| format!("{base}/api/channels/{id}/join");
    let join = one_at_a_time(client, &newcomers, join_url).await;
    let leave_url = |_: &Member| format!("{base}/api/channels/{id}/leave");
    let leave = one_at_a_time(client, &newcomers, leave_url).await;
    let senders: Arc<Vec<String>> = Arc::new(
        members[..members.len() - ops]
            .iter()
            .map(|m| m.token.clone())
            .collect(),
    );
    let send = send_loop(
        client,
        Arc::new(vec![base.to_owned()]),
        id.clone(),
        senders,
        sizes,
    )
    .await;
    let targets = &members[members.len() - ops..];
    let kick = one_at_a_time_as(client, &owner.token, targets, |m: &Member| {
        format!("{base}/api/channels/{id}/kick/{}", m.id)
    })
    .await;

    let mut rows = vec![
        report("big-channel", "join", join),
        report("big-channel", "leave", leave),
        report("big-channel", "kick", kick),
        report("big-channel", "send", send),
    ];
    rows[0].notes.push(format!(
        "big-channel: {seeded} members ({} joined the owner's channel); registered in {:.1} s \
         ({:.0}/s), joined in {:.1} s ({:.0}/s); {ops} joins, leaves and kicks measured",
        seeded - 1,
        registered.as_secs_f64(),
        seeded as f64 / registered.as_secs_f64().max(1e-9),
        joined.as_secs_f64(),
        (seeded - 1) as f64 / joined.as_secs_f64().max(1e-9),
    ));
    Ok(rows)
}

/// Each member POSTs its `url`, one request at a time.
async fn one_at_a_time(
    client: &reqwest::Client,
    members: &[Member],
    url: impl Fn(&Member) -> String,
) -> Outcome {
    let mut outcome = empty();
    let started = Instant::now();
    for member in members {
        timed(
            &mut outcome,
            post_retrying(client, url(member), &member.token),
        )
        .await;
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// `token` POSTs `url(member)` for each member, one request at a time.
async fn one_at_a_time_as(
    client: &reqwest::Client,
    token: &str,
    members: &[Member],
    url: impl Fn(&Member) -> String,
) -> Outcome {
    let mut outcome = empty();
    let started = Instant::now();
    for member in members {
        timed(&mut outcome, post_retrying(client, url(member), token)).await;
    }
    outcome.elapsed = started.elapsed();
    outcome
}

fn empty() -> Outcome {
    Outcome {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    }
}

async fn timed(outcome: &mut Outcome, request: impl Future<Output = Result<(), String>>) {
    let at = Instant::now();
    let result = request.await;
    outcome.latencies.push(at.elapsed());
    outcome.requests += 1;
    if let Err(error) = result {
        if outcome.errors == 0 {
            eprintln!("  {error}");
        }
        outcome.errors += 1;
    }
}
