//! BrightChat: a self-hostable, encrypted chat server.
//!
//! [`build`] makes the whole application from a [`Config`]; the binary and the tests use
//! the same builder.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod plugins;
pub mod rest;
pub mod search;
pub mod server;
pub mod service;
pub mod state;
pub mod supervise;
pub mod time;

use std::time::Duration;

pub use config::Config;
pub use server::serve_listener;
pub use state::AppState;

/// The built application.
pub struct App {
    /// The HTTP router, ready for [`serve_listener`].
    pub router: axum::Router,
    /// The shared state behind it.
    pub state: AppState,
}

/// Opens storage (creating the data dir, server key and SQLite file on first start), runs
/// migrations, checks the server key against the database, and builds the router.
///
/// With `BRIGHTCHAT_REDIS_URL` it first connects to Redis, and fails if Redis does not
/// answer.
pub async fn build(config: Config) -> anyhow::Result<App> {
    let cluster = cluster::connect(&config).await?;
    let (db, server_key) = open_storage(&config).await?;
    let index = search::open(&config).await?;
    start(AppState::new(config, db, server_key, index, cluster)).await
}

/// [`build`] with a search index of the caller's (tests use it to make a backend fail).
pub async fn build_with_index(
    config: Config,
    index: std::sync::Arc<dyn search::SearchIndex>,
) -> anyhow::Result<App> {
    let cluster = cluster::connect(&config).await?;
    let (db, server_key) = open_storage(&config).await?;
    start(AppState::new(config, db, server_key, index, cluster)).await
}

/// Starts the background work (event relay, search indexer, upkeep) and the router.
async fn start(state: AppState) -> anyhow::Result<App> {
    events::outbox::spawn_relay(state.clone()).await?;
    cluster::spawn(&state);
    search::indexer::spawn(state.clone());
    plugins::watch::spawn(&state.plugins.registry);
    spawn_janitor(state.clone());
    let router = rest::router(state.clone(), graphql::routes(&state));
    Ok(App { router, state })
}

/// Opens everything the server keeps (data dir, server key, database with migrations,
/// search index) without serving or starting background work: what `build` and the
/// maintenance commands (`reindex`) share.
pub async fn open_state(config: Config) -> anyhow::Result<AppState> {
    let (db, server_key) = open_storage(&config).await?;
    let index = search::open(&config).await?;
    Ok(AppState::new(config, db, server_key, index, None))
}

/// [`open_state`] with a search index already opened.
pub async fn open_state_with(
    config: Config,
    index: std::sync::Arc<dyn search::SearchIndex>,
) -> anyhow::Result<AppState> {
    let (db, server_key) = open_storage(&config).await?;
    Ok(AppState::new(config, db, server_key, index, None))
}

/// The data dir, the server key and the database (migrated, and checked against the key).
async fn open_storage(config: &Config) -> anyhow::Result<(db::Db, crypto::ServerKey)> {
    std::fs::create_dir_all(&config.data_dir).map_err(|err| {
        anyhow::anyhow!(
            "BRIGHTCHAT_DATA_DIR: cannot create {}: {err}",
            config.data_dir.display()
        )
    })?;
    let server_key = match &config.server_key_hex {
        Some(hex_key) => crypto::ServerKey::from_hex(hex_key.expose()).map_err(|_| {
            anyhow::anyhow!("BRIGHTCHAT_SERVER_KEY: not a valid secp256k1 secret key")
        })?,
        None => crypto::ServerKey::load_or_create(&config.data_dir)?,
    };
    let db = db::connect(config).await.map_err(|err| {
        anyhow::anyhow!("BRIGHTCHAT_DATABASE_URL: cannot open the database: {err}")
    })?;
    db::migrate(&db).await?;
    db::check_server_key(&db, &server_key).await?;
    Ok((db, server_key))
}

/// Builds the application and serves it on the configured address until Ctrl-C/SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    let metrics_bind = config.metrics_bind;
    let app = build(config).await?;
    let listener = listen(bind)
        .map_err(|err| anyhow::anyhow!("BRIGHTCHAT_BIND: cannot listen on {bind}: {err}"))?;
    if let Some(metrics_bind) = metrics_bind {
        let metrics = listen(metrics_bind).map_err(|err| {
            anyhow::anyhow!("BRIGHTCHAT_METRICS_BIND: cannot listen on {metrics_bind}: {err}")
        })?;
        tracing::info!(address = %metrics_bind, "metrics are served at /metrics");
        let state = app.state.clone();
        tokio::spawn(async move {
            if let Err(err) = metrics::serve(metrics, state, shutdown_signal()).await {
                tracing::warn!(error = %err, "the metrics listener stopped");
            }
        });
    }
    tracing::info!(address = %bind, "BrightChat is serving");
    serve_listener(listener, app.router, &app.state.config, shutdown_signal()).await?;
    tracing::info!("BrightChat stopped");
    Ok(())
}

/// Background upkeep: marks quiet members idle, prunes events past their retention and
/// expired challenges and tokens.
fn spawn_janitor(state: AppState) {
    let idle_tick =
        (state.config.idle_after / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
    // Both end once the server is gone (see `WeakState`), and are restarted should they
    // fail before (see `supervise`).
    supervise::supervise(&state, "idle sweep", move |presence| async move {
        let mut tick = tokio::time::interval(idle_tick);
        loop {
            tick.tick().await;
            let Some(state) = presence.upgrade() else {
                break;
            };
            if let Err(err) = service::presence::sweep_idle(&state).await {
                tracing::warn!(error = %err, "marking idle members failed");
            }
        }
    });
    supervise::supervise(&state, "janitor", |weak| async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else {
                break;
            };
            if let Err(err) = events::outbox::prune(&state).await {
                tracing::warn!(error = %err, "pruning old events failed");
            }
            if let Err(err) = service::auth::prune_expired(&state).await {
                tracing::warn!(error = %err, "pruning expired sign-in data failed");
            }
            if let Err(err) = service::contexts::prune_expired_mutes(&state).await {
                tracing::warn!(error = %err, "pruning expired mutes failed");
            }
            if let Err(err) = plugins::DbStateStore::prune(&state.db.write, time::now_ms()).await {
                tracing::warn!(error = %err, "pruning expired plugin state failed");
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// How many connections may wait to be accepted: a crowd reconnecting at once (after a
/// restart, say) must not overflow the kernel's queue, whose usual default of 128 makes
/// the rest retry their handshake a second later. The kernel caps it at `somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
