//! The command line: `brightchat [serve|migrate|backup|schema|openapi|reindex|plugins]`.
//!
//! Settings come from `BRIGHTCHAT_*` environment variables, read by [`Config::from_env`]
//! (see docs/decisions.md for why not clap's `env`); `--help` lists them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// BrightChat: a self-hostable, encrypted chat server. Configured by BRIGHTCHAT_*
/// environment variables (see docs/operations.md).
#[derive(Debug, Parser)]
#[command(name = "brightchat", version, about, after_help = ENVIRONMENT)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// The settings, for `--help` (docs/operations.md says more).
const ENVIRONMENT: &str = "\
Environment (a bad value stops the start with one line naming the variable):
  BRIGHTCHAT_BIND                          listen address [127.0.0.1:8080]
  BRIGHTCHAT_METRICS_BIND                  Prometheus /metrics address [off]
  BRIGHTCHAT_DATA_DIR                      SQLite file, server key, search index [./data]
  BRIGHTCHAT_DATABASE_URL                  sqlite:... or postgres://... [SQLite in the data dir]
  BRIGHTCHAT_SERVER_KEY                    server secret, 64 hex digits [<data dir>/server.key]
  BRIGHTCHAT_REGISTRATION                  open | closed [open]
  BRIGHTCHAT_TOKEN_TTL_SECS                bearer token lifetime [2592000]
  BRIGHTCHAT_LOG                           log filter [info]
  BRIGHTCHAT_LOG_FORMAT                    text | json [text]
  BRIGHTCHAT_EVENT_RETENTION_SECS          resumable event window [300]
  BRIGHTCHAT_IDLE_AFTER_SECS               quiet time before idle [300]
  BRIGHTCHAT_WS_BUFFER                     per-connection queue [1024]
  BRIGHTCHAT_WS_SEND_TIMEOUT_MS            frame send timeout [10000]
  BRIGHTCHAT_LOCK_WAIT_MS                  longest wait for a busy context [5000]
  BRIGHTCHAT_DB_POOL                       PostgreSQL connections per pool [16]
  BRIGHTCHAT_HEADER_READ_TIMEOUT_SECS      request head timeout [10]
  BRIGHTCHAT_KEEPALIVE_TIMEOUT_SECS        idle connection timeout [10]
  BRIGHTCHAT_MAX_CONNECTIONS               open connection cap [10000]
  BRIGHTCHAT_WS_MAX_CONNECTIONS_PER_MEMBER WebSockets per member [20]
  BRIGHTCHAT_GRAPHQL_MAX_SUBSCRIPTIONS     operations per GraphQL socket [100]
  BRIGHTCHAT_RATE_AUTH                     sign-ins per minute per address, 0 off [30]
  BRIGHTCHAT_RATE_WRITE                    writes per minute per member, 0 off [600]
  BRIGHTCHAT_TRUSTED_PROXIES               proxies whose X-Forwarded-For counts [none]
  BRIGHTCHAT_CORS_ORIGINS                  browser origins, or * [none]
  BRIGHTCHAT_PLUGINS_DIR                   moderation plugins [./plugins]
  BRIGHTCHAT_PLUGIN_BUDGET_MS              budget of one hook call [100]
  BRIGHTCHAT_MEILI_URL, BRIGHTCHAT_MEILI_KEY Meilisearch [embedded index]
  BRIGHTCHAT_MEILI_INDEX                   Meilisearch index uid [brightchat_messages]
  BRIGHTCHAT_REDIS_URL                     Redis linking several nodes [one node]
  BRIGHTCHAT_REDIS_PREFIX                  Redis key prefix [brightchat]
  BRIGHTCHAT_REDIS_NODE_TTL_SECS           node heartbeat lifetime [15]";

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Run database migrations and exit.
    Migrate,
    /// Write a consistent copy of the SQLite database to PATH while the server may run.
    /// The copy holds no server key: back that up separately. PostgreSQL: use pg_dump.
    Backup {
        /// Where to write the copy; it must not exist yet.
        path: std::path::PathBuf,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the OpenAPI document.
    Openapi,
    /// Rebuild the search index from the database (every channel, or one). Safe while the
    /// server runs: with the embedded index, the running server does the work and this
    /// command shows its progress.
    Reindex {
        /// Only this channel.
        #[arg(long)]
        channel: Option<uuid::Uuid>,
    },
    /// Tools for moderation plugin authors (see docs/plugins.md).
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Compile every plugin in DIR (default: BRIGHTCHAT_PLUGINS_DIR or ./plugins) and its
    /// settings; print file:line:column: message for each error; exit 1 on any.
    Check { dir: Option<std::path::PathBuf> },
    /// Run one hook of one plugin on a sample ctx with the real sandbox, and print the
    /// decision, actions, state changes and log. Touches no database.
    Run {
        /// The plugin file (`plugins/NAME.rhai`); its `NAME.toml` is read too.
        file: std::path::PathBuf,
        /// The hook: `on_message`, or just `message`.
        hook: String,
        /// A JSON file with the sample ctx: actor, target, context, params, now_ms.
        #[arg(long)]
        ctx: std::path::PathBuf,
        /// A JSON object of state keys to start from.
        #[arg(long)]
        state: Option<std::path::PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line; the exit code says whether it went well.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => match crate::rest::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&format!("cannot render the OpenAPI document: {err}")),
        },
        Command::Schema => {
            print!("{}", crate::graphql::sdl());
            ExitCode::SUCCESS
        }
        Command::Serve => with_config(|config| async move { crate::serve(config).await }),
        Command::Reindex { channel } => {
            with_config(move |config| async move { reindex(config, channel).await })
        }
        Command::Plugins { command } => match command {
            PluginsCommand::Check { dir } => {
                let dir = dir
                    .or_else(|| std::env::var_os("BRIGHTCHAT_PLUGINS_DIR").map(Into::into))
                    .unwrap_or_else(|| "plugins".into());
                crate::plugins::cli::check(&dir)
            }
            PluginsCommand::Run {
                file,
                hook,
                ctx,
                state,
                json,
            } => crate::plugins::cli::run(&file, &hook, &ctx, state.as_deref(), json),
        },
        Command::Backup { path } => {
            with_config(move |config| async move { backup(&config, &path).await })
        }
        Command::Migrate => with_config(|config| async move {
            std::fs::create_dir_all(&config.data_dir)?;
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            tracing::info!("migrations are up to date");
            Ok(())
        }),
    }
}

/// `brightchat reindex`: rebuilds here, or asks the running server that holds the
/// embedded index to, and shows a progress bar and the final count either way.
async fn reindex(config: Config, channel: Option<uuid::Uuid>) -> anyhow::Result<()> {
    use crate::search::indexer;
    let bar = progress_bar();
    match crate::search::open(&config).await {
        Ok(index) => {
            let state = crate::open_state_with(config, index).await?;
            let index = state.search.index.clone();
            let (count, _) = indexer::rebuild(&state, index.as_ref(), channel, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
            bar.finish_and_clear();
            println!("reindexed {count} messages into the {} index", index.name());
            Ok(())
        }
        Err(open_error) if config.meili_url.is_none() => {
            // The embedded index takes one writer: a running server holds it.
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            let id = indexer::request_rebuild(&db, channel).await?;
            eprintln!("the search index is in use by a running server; it rebuilds now");
            let asked = std::time::Instant::now();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                match indexer::rebuild_progress(&db, id).await? {
                    Some(progress) if progress.finished => {
                        bar.finish_and_clear();
                        if let Some(error) = progress.error {
                            anyhow::bail!("the server's rebuild failed: {error}");
                        }
                        println!(
                            "reindexed {} messages into the embedded index",
                            progress.done
                        );
                        return Ok(());
                    }
                    Some(progress) => {
                        bar.set_length(progress.total);
                        bar.set_position(progress.done);
                    }
                    None if asked.elapsed() > std::time::Duration::from_secs(30) => {
                        anyhow::bail!(
                            "no running server took up the rebuild, and the index cannot be opened here: {open_error}"
                        );
                    }
                    None => {}
                }
            }
        }
        Err(err) => Err(err),
    }
}

/// `brightchat backup PATH`: `VACUUM INTO` through the server's own reader connections, so
/// it reads one consistent snapshot (WAL) while writes go on.
async fn backup(config: &Config, path: &std::path::Path) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Statement};
    if !config.is_sqlite() {
        anyhow::bail!(
            "backup copies SQLite databases only; for PostgreSQL use pg_dump (see docs/operations.md)"
        );
    }
    if path.exists() {
        anyhow::bail!("{} exists already; backup never overwrites", path.display());
    }
    if config.database_url.is_none() {
        let file = config.data_dir.join("brightchat.db");
        if !file.exists() {
            anyhow::bail!("no database at {} (BRIGHTCHAT_DATA_DIR)", file.display());
        }
    }
    let target = path
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{}: not a UTF-8 path", path.display()))?;
    let db = crate::db::connect(config).await?;
    db.read
        .execute_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "VACUUM INTO ?",
            [target.into()],
        ))
        .await
        .map_err(|err| anyhow::anyhow!("cannot write the backup to {target}: {err}"))?;
    println!("wrote a consistent copy of the database to {target}");
    eprintln!(
        "\n\
         WARNING: THE BACKUP DOES NOT HOLD THE SERVER KEY.\n\
         Back up the server key separately ({key}) and keep it safe:\n\
         without it the messages in this backup cannot be read.\n",
        key = match &config.server_key_hex {
            Some(_) => "the BRIGHTCHAT_SERVER_KEY variable".to_owned(),
            None => format!("the file {}", config.data_dir.join("server.key").display()),
        }
    );
    Ok(())
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} messages ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

fn with_config<F, Fut>(action: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(&err.to_string()),
    };
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    match runtime.block_on(action(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err.to_string()),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("BRIGHTCHAT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, not for files and log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("brightchat: {message}");
    ExitCode::FAILURE
}
