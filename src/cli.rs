//! The command line: `brightchat [serve|migrate|schema|openapi|reindex|plugins]`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// BrightChat: a self-hostable, encrypted chat server. Configured by BRIGHTCHAT_*
/// environment variables (see docs/operations.md).
#[derive(Debug, Parser)]
#[command(name = "brightchat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Run database migrations and exit.
    Migrate,
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
