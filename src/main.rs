//! The `incidentd` command: flags and logging, then the library does the work.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use incidentd::app::{self, App, Options};
use incidentd::config::Config;

#[derive(Parser)]
#[command(
    name = "incidentd",
    version,
    about = "Alertmanager webhooks in; incidents, timelines and post-mortem drafts out"
)]
struct Cli {
    /// Log format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long = "log.level", default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Configuration file; without it, embedded defaults.
        #[arg(long = "config.file")]
        config_file: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long = "web.listen-address", default_value = "0.0.0.0:9097")]
        listen_address: String,
        /// Directory of the database (overrides storage.path).
        #[arg(long = "storage.path")]
        storage_path: Option<PathBuf>,
    },
    /// Check a configuration file (and the rules and template it names); non-zero on error.
    CheckConfig {
        #[arg(default_value = "incidentd.yml")]
        file: PathBuf,
    },
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("incidentd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("incidentd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            config_file,
            listen_address,
            storage_path,
        } => {
            let config = match &config_file {
                Some(path) => Config::load(path)?,
                None => Config::from_env()?,
            };
            let app = App::build(
                config,
                Options {
                    listen_address,
                    storage_path,
                },
                app::system_clock(),
            )
            .await?;
            app.run_until(app::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => {
            println!("Checking {}", file.display());
            match Config::load(&file) {
                Ok(_) => {
                    println!("  SUCCESS: {} is valid", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("  FAILED: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
