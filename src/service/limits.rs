//! Rate limits (CONTRACT.md "Operations"): token buckets holding a rate per minute, with a
//! burst of the same size.
//!
//! - [`Limits::auth`]: `BRIGHTCHAT_RATE_AUTH` per client address ([`client_addr`]) over
//!   registration, sign-in challenges and sign-ins.
//! - [`Limits::write`]: `BRIGHTCHAT_RATE_WRITE` per member over every other write.
//!
//! With Redis configured a bucket lives there (one Lua script per check), so the budget is
//! shared by every node. Without Redis, or when Redis does not answer, the bucket is this
//! node's own (`governor`): a Redis outage never fails a request, it only makes the limit
//! per node for that while (logged at most every [`LOG_EVERY`]).
//!
//! Over a limit the answer is [`ServiceError::RateLimited`] with the whole seconds to wait
//! (at least 1). A check costing more than a whole bucket is refused with a minute's wait.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::{ServiceError, ServiceResult};

/// A Redis failure on a limit check is logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Local buckets are swept of full (idle) ones every this many checks.
const SWEEP_EVERY: u64 = 4096;

type Local = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// The node's two limits.
pub struct Limits {
    /// Per client address, over `POST /api/members`, `/api/auth/challenge`, `/api/auth/login`
    /// (and their GraphQL twins).
    pub auth: Limiter,
    /// Per member, over every other write.
    pub write: Limiter,
}

impl Limits {
    /// The limits `config` sets.
    pub fn new(config: &Config) -> Self {
        Self {
            auth: Limiter::new("auth", config.rate_auth),
            write: Limiter::new("write", config.rate_write),
        }
    }
}

/// One limit: a bucket per key.
pub struct Limiter {
    name: &'static str,
    per_minute: u32,
    /// `None` when the limit is off.
    local: Option<(Local, DefaultClock)>,
    checks: AtomicU64,
    logged: Mutex<Option<Instant>>,
}

impl Limiter {
    /// A limit of `per_minute` (and a burst of as many) per key; 0 turns it off.
    pub fn new(name: &'static str, per_minute: u32) -> Self {
        let local = NonZeroU32::new(per_minute).map(|rate| {
            let clock = DefaultClock::default();
            let limiter = RateLimiter::new(
                Quota::per_minute(rate),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            );
            (limiter, clock)
        });
        Self {
            name,
            per_minute,
            local,
            checks: AtomicU64::new(0),
            logged: Mutex::new(None),
        }
    }

    /// Whether the limit is on.
    pub fn enabled(&self) -> bool {
        self.local.is_some()
    }

    /// Spends `cost` tokens of `key`'s bucket (shared through `cluster` when there is one),
    /// or answers `RATE_LIMITED` and spends nothing. A cost of 0 always passes.
    pub async fn check(
        &self,
        cluster: Option<&Cluster>,
        key: &str,
        cost: u32,
    ) -> ServiceResult<()> {
        let Some((local, clock)) = &self.local else {
            return Ok(());
        };
        let Some(cost_nz) = NonZeroU32::new(cost) else {
            return Ok(());
        };
        if cost > self.per_minute {
            return Err(limited(Duration::from_secs(60)));
        }
        if let Some(cluster) = cluster {
            match cluster
                .take_tokens(&format!("{}:{key}", self.name), self.per_minute, cost)
                .await
            {
                Ok(0) => return Ok(()),
                Ok(wait_ms) => return Err(limited(Duration::from_millis(wait_ms))),
                Err(error) => self.log_failure(&error),
            }
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            local.retain_recent();
            local.shrink_to_fit();
        }
        match local.check_key_n(&key.to_owned(), cost_nz) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(limited(not_until.wait_time_from(clock.now()))),
            Err(_) => Err(limited(Duration::from_secs(60))),
        }
    }

    fn log_failure(&self, error: &str) {
        let Ok(mut last) = self.logged.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            *last = Some(now);
            tracing::warn!(limit = self.name, %error, "Redis did not answer a rate-limit check; this node's own bucket counts meanwhile");
        }
    }
}

/// `RATE_LIMITED`, retry after `wait` rounded up to whole seconds (at least 1).
fn limited(wait: Duration) -> ServiceError {
    let secs = wait.as_millis().div_ceil(1000).max(1);
    ServiceError::RateLimited {
        message: "Too many requests; retry later".to_owned(),
        retry_after_secs: u64::try_from(secs).unwrap_or(u64::MAX),
    }
}

/// The client address of a request from `peer`: the peer itself, unless it is one of the
/// `trusted` proxies; then the right-most `X-Forwarded-For` entry that is not a trusted
/// proxy (each trusted hop appends the address it saw). When every entry is trusted, the
/// left-most; when an entry cannot be read, the hop that added it.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_hop(entry) else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", xff.parse().expect("header"));
        headers
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let peer: IpAddr = "10.1.1.1".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        let xff = headers("198.51.100.1, 192.0.2.4, 10.2.2.2");
        assert_eq!(client_addr(stranger, &xff, &trusted), stranger);
        assert_eq!(client_addr(peer, &xff, &trusted).to_string(), "192.0.2.4");
        assert_eq!(client_addr(peer, &HeaderMap::new(), &trusted), peer);
        assert_eq!(
            client_addr(peer, &headers("10.3.3.3"), &trusted).to_string(),
            "10.3.3.3"
        );
        assert_eq!(client_addr(peer, &headers("1.2.3.4, junk"), &trusted), peer);
        assert_eq!(
            client_addr(peer, &headers("[2001:db8::1]:443"), &trusted).to_string(),
            "2001:db8::1"
        );
    }

    #[tokio::test]
    async fn a_bucket_holds_its_burst_then_refuses_with_whole_seconds() {
        let limiter = Limiter::new("test", 3);
        for _ in 0..3 {
            limiter.check(None, "a", 1).await.expect("within the burst");
        }
        let err = limiter.check(None, "a", 1).await.expect_err("over");
        assert_eq!(err.code(), "RATE_LIMITED");
        assert!(matches!(err.retry_after_secs(), Some(1..=20)), "{err:?}");
        limiter
            .check(None, "b", 3)
            .await
            .expect("another key has its own bucket");
        assert!(
            limiter.check(None, "c", 4).await.is_err(),
            "more than a bucket"
        );
        let off = Limiter::new("off", 0);
        for _ in 0..100 {
            off.check(None, "a", 1)
                .await
                .expect("0 turns the limit off");
        }
    }
}
