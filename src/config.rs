//! Configuration from the environment (CONTRACT.md "Operations").
//!
//! Every setting has a default that works on a laptop. A bad value stops the start with
//! one line naming the variable: [`ConfigError`] displays as `BRIGHTCHAT_X: what is wrong`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// Who may register new members (`BRIGHTCHAT_REGISTRATION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Anyone may `POST /api/members` (the default).
    Open,
    /// Registration answers 403.
    Closed,
}

/// How log lines are written (`BRIGHTCHAT_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The server's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// `BRIGHTCHAT_BIND`, default `127.0.0.1:8080`.
    pub bind: SocketAddr,
    /// `BRIGHTCHAT_DATA_DIR`, default `./data`: SQLite file, server key, embedded index.
    pub data_dir: PathBuf,
    /// `BRIGHTCHAT_DATABASE_URL`; unset: SQLite file `brightchat.db` in the data dir.
    pub database_url: Option<String>,
    /// `BRIGHTCHAT_PLUGINS_DIR`, default `./plugins`.
    pub plugins_dir: PathBuf,
    /// `BRIGHTCHAT_MEILI_URL`; unset: embedded search.
    pub meili_url: Option<String>,
    /// `BRIGHTCHAT_MEILI_KEY`.
    pub meili_key: Option<String>,
    /// `BRIGHTCHAT_MEILI_INDEX`, default `brightchat_messages`: the Meilisearch index uid.
    pub meili_index: String,
    /// `BRIGHTCHAT_REDIS_URL`; unset: one node, in-process event fan-out. Set: nodes share
    /// wake-ups, ephemeral events, presence and sign-outs through Redis (see `cluster`).
    pub redis_url: Option<String>,
    /// `BRIGHTCHAT_REDIS_PREFIX`, default `brightchat`: namespaces every Redis key and
    /// channel, so several deployments can share one Redis.
    pub redis_prefix: String,
    /// `BRIGHTCHAT_REDIS_NODE_TTL_SECS`, default 15: a node's heartbeat lives this long; a
    /// node silent for longer is taken as dead and its members' connections are dropped.
    pub redis_node_ttl: Duration,
    /// `BRIGHTCHAT_SERVER_KEY`: the server's secp256k1 secret in hex; unset: key file.
    pub server_key_hex: Option<SecretHex>,
    /// `BRIGHTCHAT_REGISTRATION` (`open` | `closed`), default `open`.
    pub registration: Registration,
    /// `BRIGHTCHAT_TOKEN_TTL_SECS`, default 30 days: how long a bearer token lives.
    pub token_ttl: Duration,
    /// `BRIGHTCHAT_LOG_FORMAT` (`text` | `json`), default `text`.
    pub log_format: LogFormat,
    /// `BRIGHTCHAT_EVENT_RETENTION_SECS`, default 300: how long events stay resumable.
    pub event_retention: Duration,
    /// `BRIGHTCHAT_IDLE_AFTER_SECS`, default 300: quiet time before a member shows idle.
    pub idle_after: Duration,
    /// `BRIGHTCHAT_WS_BUFFER`, default 1024: entries in each connection's own queue (an
    /// event, or a batch of presence changes); a connection whose queue fills is dropped as
    /// too slow.
    pub ws_buffer: usize,
    /// `BRIGHTCHAT_WS_SEND_TIMEOUT_MS`, default 10000: how long one frame may take to send
    /// before the connection is dropped as too slow.
    pub ws_send_timeout: Duration,
    /// `BRIGHTCHAT_LOCK_WAIT_MS`, default 5000: the longest a write waits for its group or
    /// channel to be free (in-process, then the row lock on PostgreSQL) before it answers
    /// 503 with `Retry-After`.
    pub lock_wait: Duration,
    /// `BRIGHTCHAT_PLUGIN_BUDGET_MS`, default 100: the wall-clock budget of one plugin hook
    /// call; a call over it is stopped and fails closed.
    pub plugin_budget: Duration,
    /// `BRIGHTCHAT_DB_POOL`, default 16: PostgreSQL connections in each of the two pools
    /// (writes, reads), per node.
    pub db_pool: u32,
    /// `BRIGHTCHAT_HEADER_READ_TIMEOUT_SECS`, default 10: a connection whose request head
    /// (request line and headers) is not complete this long after the server starts
    /// waiting for it is closed. This also bounds the wait for the next request on a
    /// kept-alive connection.
    pub header_read_timeout: Duration,
    /// `BRIGHTCHAT_KEEPALIVE_TIMEOUT_SECS`, default 10: a connection with no traffic for
    /// this long is closed (after answering a request in progress). WebSockets are exempt.
    pub keepalive_timeout: Duration,
    /// `BRIGHTCHAT_MAX_CONNECTIONS`, default 10000: open connections (WebSockets included)
    /// beyond which the server stops accepting until one closes.
    pub max_connections: usize,
    /// `BRIGHTCHAT_WS_MAX_CONNECTIONS_PER_MEMBER`, default 20: WebSocket connections one
    /// member may hold open on a node, `/api/events` and `/graphql/ws` together.
    pub ws_max_connections_per_member: usize,
    /// `BRIGHTCHAT_GRAPHQL_MAX_SUBSCRIPTIONS`, default 100: operations one `/graphql/ws`
    /// connection may run at once.
    pub graphql_max_subscriptions: usize,
    /// `BRIGHTCHAT_RATE_AUTH`, default 30: registrations, challenges and sign-ins per minute
    /// per client address (a token bucket with a burst of the same size); 0 turns it off.
    pub rate_auth: u32,
    /// `BRIGHTCHAT_RATE_WRITE`, default 600: other writes per minute per member (REST,
    /// GraphQL mutation fields, WebSocket client frames); 0 turns it off.
    pub rate_write: u32,
    /// `BRIGHTCHAT_TRUSTED_PROXIES`, default none: a comma list of IP addresses and CIDR
    /// blocks whose `X-Forwarded-For` names the client address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `BRIGHTCHAT_CORS_ORIGINS`, default none: the origins a browser may call the API from.
    pub cors_origins: CorsOrigins,
    /// The most events one resume may replay before the client is told to resync
    /// ([`crate::events::outbox::REPLAY_LIMIT`]); not read from the environment (tests
    /// lower it).
    pub replay_limit: usize,
    /// `BRIGHTCHAT_METRICS_BIND`, default unset (off): the address and port that serves
    /// Prometheus metrics at `/metrics`, apart from the public listener.
    pub metrics_bind: Option<SocketAddr>,
}

/// A secret given as hex (`BRIGHTCHAT_SERVER_KEY`): shown as `[redacted]` by `Debug`, so
/// printing a configuration never prints the key, and wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHex(zeroize::Zeroizing<String>);

impl SecretHex {
    /// The hex digits.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretHex {
    fn from(hex: String) -> Self {
        Self(zeroize::Zeroizing::new(hex))
    }
}

impl std::fmt::Debug for SecretHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which browser origins may call the API (CONTRACT.md "Operations").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// None (unset): browsers get no CORS headers, so other origins cannot read answers.
    #[default]
    None,
    /// Any origin (`*`).
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    List(Vec<String>),
}

impl Config {
    /// Defaults, with the data dir given (tests use a temporary one).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            database_url: None,
            plugins_dir: PathBuf::from("./plugins"),
            meili_url: None,
            meili_key: None,
            meili_index: "brightchat_messages".to_owned(),
            redis_url: None,
            redis_prefix: "brightchat".to_owned(),
            redis_node_ttl: Duration::from_secs(15),
            server_key_hex: None,
            registration: Registration::Open,
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            log_format: LogFormat::Text,
            event_retention: Duration::from_secs(300),
            idle_after: Duration::from_secs(300),
            ws_buffer: 1024,
            ws_send_timeout: Duration::from_secs(10),
            lock_wait: Duration::from_secs(5),
            plugin_budget: Duration::from_millis(100),
            db_pool: 16,
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            ws_max_connections_per_member: 20,
            graphql_max_subscriptions: 100,
            rate_auth: DEFAULT_RATE_AUTH,
            rate_write: DEFAULT_RATE_WRITE,
            trusted_proxies: Vec::new(),
            cors_origins: CorsOrigins::None,
            replay_limit: crate::events::outbox::REPLAY_LIMIT,
            metrics_bind: None,
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config =
            Self::with_data_dir(get("BRIGHTCHAT_DATA_DIR").unwrap_or_else(|| "./data".into()));
        if let Some(bind) = get("BRIGHTCHAT_BIND") {
            config.bind = bind.trim().parse().map_err(|_| ConfigError {
                variable: "BRIGHTCHAT_BIND",
                problem: format!("`{bind}` is not an address and port such as 127.0.0.1:8080"),
            })?;
        }
        if let Some(bind) = get("BRIGHTCHAT_METRICS_BIND") {
            config.metrics_bind = Some(bind.trim().parse().map_err(|_| ConfigError {
                variable: "BRIGHTCHAT_METRICS_BIND",
                problem: format!("`{bind}` is not an address and port such as 127.0.0.1:9090"),
            })?);
        }
        if let Some(url) = get("BRIGHTCHAT_DATABASE_URL") {
            let url = url.trim().to_owned();
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(ConfigError {
                    variable: "BRIGHTCHAT_DATABASE_URL",
                    problem: "must start with sqlite:, postgres:// or postgresql://".into(),
                });
            }
            config.database_url = Some(url);
        }
        if let Some(dir) = get("BRIGHTCHAT_PLUGINS_DIR") {
            config.plugins_dir = dir.into();
        }
        if let Some(url) = get("BRIGHTCHAT_MEILI_URL") {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError {
                    variable: "BRIGHTCHAT_MEILI_URL",
                    problem: "must be an http:// or https:// URL".into(),
                });
            }
            config.meili_url = Some(url);
        }
        config.meili_key = get("BRIGHTCHAT_MEILI_KEY");
        if let Some(uid) = get("BRIGHTCHAT_MEILI_INDEX") {
            let uid = uid.trim().to_owned();
            if uid.len() > 400
                || !uid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError {
                    variable: "BRIGHTCHAT_MEILI_INDEX",
                    problem: "must be 1 to 400 of a-z, A-Z, 0-9, - and _".into(),
                });
            }
            config.meili_index = uid;
        }
        if let Some(url) = get("BRIGHTCHAT_REDIS_URL") {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError {
                    variable: "BRIGHTCHAT_REDIS_URL",
                    problem: "must be a redis:// or rediss:// URL".into(),
                });
            }
            config.redis_url = Some(url);
        }
        if let Some(prefix) = get("BRIGHTCHAT_REDIS_PREFIX") {
            let prefix = prefix.trim().to_owned();
            if prefix.len() > 64
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(ConfigError {
                    variable: "BRIGHTCHAT_REDIS_PREFIX",
                    problem: "must be 1 to 64 of a-z, A-Z, 0-9, -, _ and .".into(),
                });
            }
            config.redis_prefix = prefix;
        }
        if let Some(secs) = number(&get, "BRIGHTCHAT_REDIS_NODE_TTL_SECS", 3, 3_600)? {
            config.redis_node_ttl = Duration::from_secs(secs);
        }
        if let Some(key) = get("BRIGHTCHAT_SERVER_KEY") {
            crate::crypto::ServerKey::from_hex(key.trim()).map_err(|_| ConfigError {
                variable: "BRIGHTCHAT_SERVER_KEY",
                problem: "must be a secp256k1 secret key as 64 hex digits".into(),
            })?;
            config.server_key_hex = Some(key.trim().to_owned().into());
        }
        if let Some(value) = get("BRIGHTCHAT_REGISTRATION") {
            config.registration = match value.trim() {
                "open" => Registration::Open,
                "closed" => Registration::Closed,
                _ => {
                    return Err(ConfigError {
                        variable: "BRIGHTCHAT_REGISTRATION",
                        problem: format!("`{value}` is neither `open` nor `closed`"),
                    });
                }
            };
        }
        if let Some(value) = get("BRIGHTCHAT_TOKEN_TTL_SECS") {
            let secs: u64 = value
                .trim()
                .parse()
                .ok()
                .filter(|s| (60..=31_536_000).contains(s))
                .ok_or(ConfigError {
                    variable: "BRIGHTCHAT_TOKEN_TTL_SECS",
                    problem: "must be a whole number of seconds from 60 to 31536000".into(),
                })?;
            config.token_ttl = Duration::from_secs(secs);
        }
        if let Some(secs) = number(&get, "BRIGHTCHAT_EVENT_RETENTION_SECS", 10, 86_400)? {
            config.event_retention = Duration::from_secs(secs);
        }
        if let Some(secs) = number(&get, "BRIGHTCHAT_IDLE_AFTER_SECS", 1, 86_400)? {
            config.idle_after = Duration::from_secs(secs);
        }
        if let Some(events) = number(&get, "BRIGHTCHAT_WS_BUFFER", 16, 1_000_000)? {
            config.ws_buffer = events as usize;
        }
        if let Some(ms) = number(&get, "BRIGHTCHAT_WS_SEND_TIMEOUT_MS", 100, 600_000)? {
            config.ws_send_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = number(&get, "BRIGHTCHAT_LOCK_WAIT_MS", 100, 60_000)? {
            config.lock_wait = Duration::from_millis(ms);
        }
        if let Some(ms) = number(&get, "BRIGHTCHAT_PLUGIN_BUDGET_MS", 1, 10_000)? {
            config.plugin_budget = Duration::from_millis(ms);
        }
        if let Some(n) = number(&get, "BRIGHTCHAT_DB_POOL", 2, 1_000)? {
            config.db_pool = n as u32;
        }
        if let Some(secs) = number(&get, "BRIGHTCHAT_HEADER_READ_TIMEOUT_SECS", 1, 300)? {
            config.header_read_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = number(&get, "BRIGHTCHAT_KEEPALIVE_TIMEOUT_SECS", 1, 3_600)? {
            config.keepalive_timeout = Duration::from_secs(secs);
        }
        if let Some(count) = number(&get, "BRIGHTCHAT_MAX_CONNECTIONS", 1, 1_000_000)? {
            config.max_connections = count as usize;
        }
        if let Some(n) = number(&get, "BRIGHTCHAT_WS_MAX_CONNECTIONS_PER_MEMBER", 1, 100_000)? {
            config.ws_max_connections_per_member = n as usize;
        }
        if let Some(n) = number(&get, "BRIGHTCHAT_GRAPHQL_MAX_SUBSCRIPTIONS", 1, 100_000)? {
            config.graphql_max_subscriptions = n as usize;
        }
        if let Some(n) = number(&get, "BRIGHTCHAT_RATE_AUTH", 0, 1_000_000)? {
            config.rate_auth = n as u32;
        }
        if let Some(n) = number(&get, "BRIGHTCHAT_RATE_WRITE", 0, 1_000_000)? {
            config.rate_write = n as u32;
        }
        if let Some(list) = get("BRIGHTCHAT_TRUSTED_PROXIES") {
            config.trusted_proxies = proxies(&list)?;
        }
        if let Some(list) = get("BRIGHTCHAT_CORS_ORIGINS") {
            config.cors_origins = origins(&list)?;
        }
        if let Some(value) = get("BRIGHTCHAT_LOG_FORMAT") {
            config.log_format = match value.trim() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError {
                        variable: "BRIGHTCHAT_LOG_FORMAT",
                        problem: format!("`{value}` is neither `text` nor `json`"),
                    });
                }
            };
        }
        Ok(config)
    }

    /// The database URL in force: the configured one, or SQLite in the data dir.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("brightchat.db").display()
            ),
        }
    }

    /// Whether the database in force is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.effective_database_url().starts_with("sqlite:")
    }
}

/// Default of `BRIGHTCHAT_RATE_AUTH`: auth requests per minute per client address.
pub const DEFAULT_RATE_AUTH: u32 = 30;
/// Default of `BRIGHTCHAT_RATE_WRITE`: writes per minute per member.
pub const DEFAULT_RATE_WRITE: u32 = 600;

/// `BRIGHTCHAT_TRUSTED_PROXIES`: addresses (taken as one-address blocks) and CIDR blocks.
fn proxies(list: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError {
                    variable: "BRIGHTCHAT_TRUSTED_PROXIES",
                    problem: format!("`{entry}` is not an IP address or CIDR block"),
                })
        })
        .collect()
}

/// `*`, or a comma list of origins such as `https://chat.example.org`.
fn origins(list: &str) -> Result<CorsOrigins, ConfigError> {
    if list.trim() == "*" {
        return Ok(CorsOrigins::Any);
    }
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let problem = || ConfigError {
            variable: "BRIGHTCHAT_CORS_ORIGINS",
            problem: format!("`{entry}` is not an origin like https://chat.example.org (or use *)"),
        };
        let url = url::Url::parse(entry).map_err(|_| problem())?;
        let origin = url.origin().ascii_serialization();
        // An origin has no path, query or fragment; `null` (opaque) is not one.
        if origin == "null" || origin != entry.trim_end_matches('/') {
            return Err(problem());
        }
        out.push(origin);
    }
    Ok(if out.is_empty() {
        CorsOrigins::None
    } else {
        CorsOrigins::List(out)
    })
}

/// A whole number in `min..=max` from `variable`, if set.
fn number(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(value) = get(variable) else {
        return Ok(None);
    };
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .map(Some)
        .ok_or(ConfigError {
            variable,
            problem: format!("must be a whole number from {min} to {max}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_serve_on_loopback_with_sqlite() {
        let config = from(&[]).expect("defaults are valid");
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert!(config.is_sqlite());
        assert_eq!(config.registration, Registration::Open);
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.keepalive_timeout, Duration::from_secs(10));
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.metrics_bind, None);
    }

    #[test]
    fn metrics_bind_is_read() {
        let config = from(&[("BRIGHTCHAT_METRICS_BIND", "127.0.0.1:9090")]).expect("valid");
        assert_eq!(
            config.metrics_bind.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9090")
        );
    }

    #[test]
    fn serving_limits_are_read() {
        let config = from(&[
            ("BRIGHTCHAT_HEADER_READ_TIMEOUT_SECS", "3"),
            ("BRIGHTCHAT_KEEPALIVE_TIMEOUT_SECS", "30"),
            ("BRIGHTCHAT_MAX_CONNECTIONS", "500"),
        ])
        .expect("valid");
        assert_eq!(config.header_read_timeout, Duration::from_secs(3));
        assert_eq!(config.keepalive_timeout, Duration::from_secs(30));
        assert_eq!(config.max_connections, 500);
    }

    #[test]
    fn cors_origins_are_read_and_bad_ones_named() {
        assert_eq!(from(&[]).expect("valid").cors_origins, CorsOrigins::None);
        assert_eq!(
            from(&[("BRIGHTCHAT_CORS_ORIGINS", "*")])
                .expect("valid")
                .cors_origins,
            CorsOrigins::Any
        );
        let config = from(&[(
            "BRIGHTCHAT_CORS_ORIGINS",
            "https://chat.example.org, http://localhost:5173/",
        )])
        .expect("valid");
        assert_eq!(
            config.cors_origins,
            CorsOrigins::List(vec![
                "https://chat.example.org".into(),
                "http://localhost:5173".into()
            ])
        );
        for bad in ["chat.example.org", "https://a.org/app", "file:///x"] {
            let err = from(&[("BRIGHTCHAT_CORS_ORIGINS", bad)]).expect_err(bad);
            assert!(
                err.to_string().starts_with("BRIGHTCHAT_CORS_ORIGINS:"),
                "{err}"
            );
        }
    }

    #[test]
    fn rate_limits_and_proxies_are_read() {
        let config = from(&[]).expect("defaults are valid");
        assert_eq!(config.rate_auth, DEFAULT_RATE_AUTH);
        assert_eq!(config.rate_write, DEFAULT_RATE_WRITE);
        assert!(config.trusted_proxies.is_empty());
        let config = from(&[
            ("BRIGHTCHAT_RATE_AUTH", "0"),
            ("BRIGHTCHAT_RATE_WRITE", "1200"),
            ("BRIGHTCHAT_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1"),
        ])
        .expect("valid");
        assert_eq!(config.rate_auth, 0);
        assert_eq!(config.rate_write, 1200);
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("BRIGHTCHAT_BIND", "nowhere"),
            ("BRIGHTCHAT_METRICS_BIND", "9090"),
            ("BRIGHTCHAT_DATABASE_URL", "mysql://x"),
            ("BRIGHTCHAT_SERVER_KEY", "abc"),
            ("BRIGHTCHAT_REGISTRATION", "maybe"),
            ("BRIGHTCHAT_TOKEN_TTL_SECS", "-5"),
            ("BRIGHTCHAT_REDIS_URL", "http://x"),
            ("BRIGHTCHAT_REDIS_PREFIX", "a:b"),
            ("BRIGHTCHAT_REDIS_NODE_TTL_SECS", "1"),
            ("BRIGHTCHAT_MEILI_URL", "ftp://x"),
            ("BRIGHTCHAT_MEILI_INDEX", "a b"),
            ("BRIGHTCHAT_LOG_FORMAT", "xml"),
            ("BRIGHTCHAT_EVENT_RETENTION_SECS", "1"),
            ("BRIGHTCHAT_IDLE_AFTER_SECS", "soon"),
            ("BRIGHTCHAT_WS_BUFFER", "0"),
            ("BRIGHTCHAT_WS_SEND_TIMEOUT_MS", "5"),
            ("BRIGHTCHAT_LOCK_WAIT_MS", "0"),
            ("BRIGHTCHAT_DB_POOL", "1"),
            ("BRIGHTCHAT_HEADER_READ_TIMEOUT_SECS", "0"),
            ("BRIGHTCHAT_KEEPALIVE_TIMEOUT_SECS", "never"),
            ("BRIGHTCHAT_MAX_CONNECTIONS", "0"),
            ("BRIGHTCHAT_WS_MAX_CONNECTIONS_PER_MEMBER", "0"),
            ("BRIGHTCHAT_GRAPHQL_MAX_SUBSCRIPTIONS", "many"),
            ("BRIGHTCHAT_RATE_AUTH", "-1"),
            ("BRIGHTCHAT_RATE_WRITE", "lots"),
            ("BRIGHTCHAT_TRUSTED_PROXIES", "10.0.0.1, proxy.local"),
        ] {
            let err = from(&[(var, value)]).expect_err(var);
            assert!(err.to_string().starts_with(&format!("{var}: ")), "{err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn the_server_key_is_never_printed() {
        let hex = "11".repeat(32);
        let config = from(&[("BRIGHTCHAT_SERVER_KEY", hex.as_str())]).expect("config");
        assert_eq!(
            config.server_key_hex.as_ref().map(SecretHex::expose),
            Some(hex.as_str())
        );
        assert!(!format!("{config:?}").contains(&hex));
    }
}
