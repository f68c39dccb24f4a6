//! The command line: `brightchat [serve|migrate|schema|openapi]`.

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
        Command::Migrate => with_config(|config| async move {
            std::fs::create_dir_all(&config.data_dir)?;
            let db = crate::db::connect(&config).await?;
            crate::db::migrate(&db).await?;
            tracing::info!("migrations are up to date");
            Ok(())
        }),
    }
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
