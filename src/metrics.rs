//! Prometheus metrics (CONTRACT.md "Operations": `BRIGHTCHAT_METRICS_BIND`).
//!
//! Every node keeps its own [`Metrics`] (a `prometheus` registry, so servers in one process,
//! as in the tests, do not mix their numbers). The hot paths only bump atomics (a counter,
//! a histogram bucket, a gauge); what is cheaper to read than to track (outbox and search
//! lag, database pool use) is read when Prometheus scrapes. `/metrics` is served by
//! [`serve`] on its own listener, never on the public one.
//!
//! Series (all prefixed `brightchat_`):
//! - `http_requests_total{method,route,status}` and `http_request_duration_seconds{…}`:
//!   `route` is the matched path template (`/api/channels/{id}`), `status` the class (`2xx`).
//! - `websocket_connections{socket}`: open sockets, `events` (`/api/events`) or `graphql`.
//! - `events_relayed_total`: outbox events this node's relay published.
//! - `outbox_lag_events`: newest committed outbox position minus the relayed one.
//! - `search_lag_events`: relayed outbox position minus the one the search indexer applied.
//! - `db_pool_connections{pool,state}`: `pool` `write`/`read`, `state` `idle`/`in_use`.
//! - `plugin_calls_total{hook}` and `plugin_call_duration_seconds{hook}`.

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::state::AppState;

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    websockets: IntGaugeVec,
    /// Events the relay published.
    pub events_relayed: IntCounter,
    outbox_lag: IntGauge,
    search_lag: IntGauge,
    db_pool: IntGaugeVec,
    plugin_calls: IntCounterVec,
    plugin_seconds: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh series, registered in a registry of their own.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("brightchat".to_owned()), None)
            .unwrap_or_else(|_| Registry::new());
        let latency = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status class",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request (to the response head), by route and status class",
            )
            .buckets(latency.clone()),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let websockets = IntGaugeVec::new(
            Opts::new(
                "websocket_connections",
                "Open WebSocket connections, by socket",
            ),
            &["socket"],
        )
        .expect("valid metric");
        let events_relayed = IntCounter::new(
            "events_relayed_total",
            "Outbox events published by the relay",
        )
        .expect("valid metric");
        let outbox_lag = IntGauge::new(
            "outbox_lag_events",
            "Newest committed outbox position minus the position the relay has published",
        )
        .expect("valid metric");
        let search_lag = IntGauge::new(
            "search_lag_events",
            "Relayed outbox position minus the position the search indexer has applied",
        )
        .expect("valid metric");
        let db_pool = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections, by pool and state",
            ),
            &["pool", "state"],
        )
        .expect("valid metric");
        let plugin_calls = IntCounterVec::new(
            Opts::new(
                "plugin_calls_total",
                "Moderation plugin hook calls, by hook",
            ),
            &["hook"],
        )
        .expect("valid metric");
        let plugin_seconds = HistogramVec::new(
            HistogramOpts::new(
                "plugin_call_duration_seconds",
                "Time the plugins took to decide one hook call, waiting for a slot included",
            )
            .buckets(latency),
            &["hook"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_seconds.clone()),
            Box::new(websockets.clone()),
            Box::new(events_relayed.clone()),
            Box::new(outbox_lag.clone()),
            Box::new(search_lag.clone()),
            Box::new(db_pool.clone()),
            Box::new(plugin_calls.clone()),
            Box::new(plugin_seconds.clone()),
        ] {
            // Names are fixed and distinct: registering cannot fail.
            let _ = registry.register(collector);
        }
        // Both sockets show (at 0) before the first connection.
        for socket in ["events", "graphql"] {
            websockets.with_label_values(&[socket]).set(0);
        }
        Self {
            registry,
            http_requests,
            http_seconds,
            websockets,
            events_relayed,
            outbox_lag,
            search_lag,
            db_pool,
            plugin_calls,
            plugin_seconds,
        }
    }

    /// Counts an open WebSocket (`socket`: `events` or `graphql`) until the guard drops.
    pub fn websocket(&self, socket: &'static str) -> OpenSocket {
        let gauge = self.websockets.with_label_values(&[socket]);
        gauge.inc();
        OpenSocket(gauge)
    }

    /// Records one plugin hook call.
    pub fn plugin_call(&self, hook: &'static str, started: Instant) {
        self.plugin_calls.with_label_values(&[hook]).inc();
        self.plugin_seconds
            .with_label_values(&[hook])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Reads the gauges that are sampled, then renders every series as Prometheus text.
    pub async fn render(&self, state: &AppState) -> String {
        let relayed = state.events.published();
        if let Ok(newest) = crate::events::positions::settled(&state.db.read).await {
            self.outbox_lag
                .set((newest - relayed.unwrap_or(newest)).max(0));
        }
        if let Some(relayed) = relayed {
            let indexed = state.search.indexed().unwrap_or(0);
            self.search_lag.set((relayed - indexed).max(0));
        }
        for (pool, connection) in [("write", &state.db.write), ("read", &state.db.read)] {
            if let Some((size, idle)) = pool_use(connection) {
                self.db_pool
                    .with_label_values(&[pool, "idle"])
                    .set(idle as i64);
                self.db_pool
                    .with_label_values(&[pool, "in_use"])
                    .set((size as i64 - idle as i64).max(0));
            }
        }
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// An open WebSocket, counted until dropped.
pub struct OpenSocket(IntGauge);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Connections in a pool and how many of them are idle.
fn pool_use(connection: &sea_orm::DatabaseConnection) -> Option<(u32, usize)> {
    match connection.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            let pool = connection.get_sqlite_connection_pool();
            Some((pool.size(), pool.num_idle()))
        }
        sea_orm::DbBackend::Postgres => {
            let pool = connection.get_postgres_connection_pool();
            Some((pool.size(), pool.num_idle()))
        }
        _ => None,
    }
}

/// Middleware (a route layer, so the route is known): counts and times every answer.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // Cheap: a matched path is an `Arc<str>`.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let status = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let labels = [method, route, status];
    let metrics = &state.metrics;
    metrics.http_requests.with_label_values(&labels).inc();
    metrics
        .http_seconds
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The `method` label: the standard methods by name, any other as `OTHER`. A client may send
/// any token as a method (a matched path answers it 405), and each distinct label set is a
/// series kept for the life of the process: labels a client chooses must be bounded.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Serves `GET /metrics` on `listener` (the `BRIGHTCHAT_METRICS_BIND` address) until
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(&state).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            prometheus::TEXT_FORMAT.to_owned(),
        )],
        body,
    )
}
