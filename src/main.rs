//! The `incidentd` command: flags and logging, then the library does the work.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use incidentd::app::{self, App, Options};
use incidentd::cli::{self, incidents, replay};
use incidentd::config::{self, Config};
use incidentd::incident::Status;

// The webhook path allocates many small maps and strings per alert; mimalloc handles that
// with far less time in the allocator than glibc's malloc (measured: see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "incidentd",
    version,
    about = "Alertmanager webhooks in; incidents, timelines, evidence and post-mortem drafts out"
)]
struct Cli {
    /// Log format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long = "log.level", default_value = "info", global = true)]
    log_level: String,
    /// Colour in text logs: auto (only when standard error is a terminal and NO_COLOR is
    /// unset or empty), always, never.
    #[arg(long = "log.color", value_enum, default_value_t = LogColor::Auto, global = true)]
    log_color: LogColor,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogColor {
    Auto,
    Always,
    Never,
}

impl LogColor {
    /// Whether to write ANSI colour codes to a log writer that is (or is not) a terminal,
    /// given the value of `NO_COLOR` (no-color.org: any non-empty value disables colour;
    /// an explicit `always` still wins).
    fn enabled(self, writer_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            LogColor::Always => true,
            LogColor::Never => false,
            LogColor::Auto => writer_is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Address to listen on.
        #[arg(long = "web.listen-address", default_value = "0.0.0.0:9097")]
        listen_address: String,
        /// TLS and basic authentication, in the format of Prometheus's exporter-toolkit
        /// (tls_server_config, basic_auth_users, http_server_config.headers).
        #[arg(long = "web.config.file")]
        web_config_file: Option<PathBuf>,
    },
    /// Check a configuration file, the rules directory and the template it names.
    CheckConfig {
        #[arg(default_value = "incidentd.yml")]
        file: PathBuf,
    },
    /// Check a --web.config.file (TLS certificate and key, bcrypt hashes, headers), like
    /// `promtool check web-config`.
    CheckWebConfig { file: PathBuf },
    /// Post captured Alertmanager payloads (a file, or a directory of them) to a daemon.
    Replay {
        /// A payload file or a directory (with an index.json, its order is used).
        path: PathBuf,
        #[command(flatten)]
        target: Target,
        /// File holding the webhook bearer token.
        #[arg(long)]
        bearer_token_file: Option<PathBuf>,
        /// Basic auth user name for the webhook (with --basic-auth-password-file).
        #[arg(long, requires = "basic_auth_password_file")]
        basic_auth_user: Option<String>,
        /// File holding the basic auth password.
        #[arg(long, requires = "basic_auth_user")]
        basic_auth_password_file: Option<PathBuf>,
        /// Pause between posts, e.g. 500ms or 2s.
        #[arg(long, value_parser = incidentd::time::parse_duration)]
        delay: Option<Duration>,
    },
    /// Render an incident's post-mortem draft from the data in the database as it is now
    /// (a debugging aid: the draft the API serves is the one the daemon stored).
    Render {
        /// Incident id, e.g. INC-2026-0001.
        id: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// Template to render with instead of the configured one.
        #[arg(long)]
        template: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Copy an installation's SQLite database into the empty PostgreSQL database that a
    /// configuration names (storage.backend: postgres). Run it with the daemon stopped.
    Migrate {
        /// The SQLite database's directory (the old storage.path), as `sqlite:DIR` or `DIR`.
        #[arg(long)]
        from: String,
        /// The configuration whose storage.postgres is the destination (its password from
        /// url_file or INCIDENTD_POSTGRES_URL, never the command line).
        #[arg(long = "config.file")]
        config_file: PathBuf,
    },
    /// Incidents of a running daemon.
    Incidents {
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// Figures across a running daemon's incidents: per service and week or month, MTTD,
    /// MTTA, MTTR and duration (mean, p50, p90), the alerts that fire most, the incidents that
    /// flap most.
    Report {
        #[command(flatten)]
        target: Target,
        /// Start of the range: a duration before now (30d), an RFC 3339 time or a date.
        #[arg(long, default_value = "30d")]
        since: String,
        /// End of the range (default: now), in the same forms.
        #[arg(long)]
        until: Option<String>,
        /// Periods: week (ISO weeks) or month.
        #[arg(long, value_parser = ["week", "month"])]
        by: Option<String>,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ConfigArgs {
    /// Configuration file; without it, embedded defaults.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    /// Directory of the database (overrides storage.path).
    #[arg(long = "storage.path")]
    storage_path: Option<PathBuf>,
}

#[derive(Args)]
struct Target {
    /// The daemon's base URL.
    #[arg(long, default_value = "http://127.0.0.1:9097", env = "INCIDENTD_URL")]
    url: String,
    /// How to connect (TLS, basic auth or a token), in the format amtool and promtool take.
    #[arg(long = "http.config.file")]
    http_config_file: Option<PathBuf>,
}

impl Target {
    fn daemon(&self) -> Result<cli::Daemon, cli::CliError> {
        Ok(cli::Daemon {
            url: self.url.clone(),
            http: match &self.http_config_file {
                Some(path) => cli::http_config::HttpConfig::load(path)?,
                None => Default::default(),
            },
        })
    }
}

#[derive(Args)]
struct Writer {
    #[command(flatten)]
    target: Target,
    /// Who does it (recorded in the timeline).
    #[arg(long, env = "USER")]
    by: String,
    /// File holding the API token (web.api_token_file).
    #[arg(long)]
    api_token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        #[command(flatten)]
        target: Target,
        /// open, acknowledged or resolved.
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one incident with its alerts and timeline.
    Show {
        id: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an incident.
    Ack {
        id: String,
        #[command(flatten)]
        writer: Writer,
    },
    /// Add a note to an incident's timeline.
    Note {
        id: String,
        /// The note.
        text: String,
        #[command(flatten)]
        writer: Writer,
    },
    /// Resolve an incident by hand.
    Resolve {
        id: String,
        #[command(flatten)]
        writer: Writer,
    },
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| format!("{s:?} is not one of open, acknowledged, resolved"))
}

fn init_logging(format: LogFormat, level: &str, color: LogColor) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The log writer is standard error: colour only when a person watches it.
    let ansi = color.enabled(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level, cli.log_color);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("incidentd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("incidentd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config_file {
        Some(path) => Config::load(path)?,
        None => Config::from_env()?,
    };
    if let Some(path) = &args.storage_path {
        config.storage.path = path.clone();
    }
    Ok(config)
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout();
    match command {
        Command::Serve {
            config,
            listen_address,
            web_config_file,
        } => {
            let cfg = load_config(&config)?;
            let web_config = match &web_config_file {
                Some(path) => Some(incidentd::http::web_config::WebConfigFile::load(path)?),
                None => None,
            };
            let app = App::build(
                cfg,
                Options {
                    listen_address,
                    storage_path: None,
                },
                app::system_clock(),
            )
            .await?;
            let app = match web_config {
                Some(file) => app.with_web_config(file),
                None => app,
            };
            app.run_until(app::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => Ok(check_config(&file)),
        Command::CheckWebConfig { file } => {
            match incidentd::http::web_config::WebConfigFile::load(&file) {
                Ok(_) => {
                    println!("{} SUCCESS", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{} FAILED: {e}", file.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Replay {
            path,
            target,
            bearer_token_file,
            basic_auth_user,
            basic_auth_password_file,
            delay,
        } => {
            replay::run(replay::ReplayArgs {
                path,
                daemon: &target.daemon().map_err(cli_error)?,
                bearer_token_file,
                basic_auth: basic_auth_user.zip(basic_auth_password_file),
                delay,
                out: &mut out,
            })
            .await
            .map_err(cli_error)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Render {
            id,
            config,
            template,
            output,
        } => {
            let mut cfg = load_config(&config)?;
            if template.is_some() {
                cfg.postmortem.template = template;
            }
            let markdown = app::render_offline(&cfg, &id).await?;
            match output {
                Some(path) => std::fs::write(&path, markdown)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => out.write_all(markdown.as_bytes())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { from, config_file } => {
            let cfg = Config::load(&config_file)?;
            let Some(to) = cfg
                .storage
                .postgres
                .as_ref()
                .filter(|_| cfg.storage.backend == config::StorageBackend::Postgres)
            else {
                anyhow::bail!(
                    "{}: storage.backend is not postgres; name the destination database there",
                    config_file.display()
                );
            };
            let dir = PathBuf::from(from.strip_prefix("sqlite:").unwrap_or(&from));
            let target = to.url.redacted();
            let to = to.clone();
            let copied = tokio::task::spawn_blocking(move || {
                incidentd::store::migrate::sqlite_to_postgres(&dir, &to)
            })
            .await??;
            writeln!(out, "copied into {target}:")?;
            for (table, rows) in copied.tables {
                writeln!(out, "  {table:<20} {rows:>8} rows")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Incidents { command } => {
            incidents_command(command, &mut out)
                .await
                .map_err(cli_error)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            target,
            since,
            until,
            by,
            service,
            json,
        } => {
            cli::report::report(cli::report::ReportArgs {
                daemon: &target.daemon().map_err(cli_error)?,
                since,
                until,
                by,
                service,
                json,
                out: &mut out,
            })
            .await
            .map_err(cli_error)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// CLI errors already carry their causes in their message: print them once.
fn cli_error(e: cli::CliError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn incidents_command(
    command: IncidentsCommand,
    out: &mut std::io::Stdout,
) -> Result<(), cli::CliError> {
    match command {
        IncidentsCommand::List {
            target,
            status,
            service,
            limit,
            json,
        } => {
            incidents::list(incidents::ListArgs {
                daemon: &target.daemon()?,
                status,
                service,
                limit,
                json,
                out,
            })
            .await
        }
        IncidentsCommand::Show { id, target, json } => {
            incidents::show(incidents::ShowArgs {
                daemon: &target.daemon()?,
                id,
                json,
                out,
            })
            .await
        }
        IncidentsCommand::Ack { id, writer } => {
            incidents::ack(
                &writer.target.daemon()?,
                &id,
                &writer.by,
                writer.api_token_file.as_deref(),
                out,
            )
            .await
        }
        IncidentsCommand::Note { id, text, writer } => {
            incidents::note(
                &writer.target.daemon()?,
                &id,
                &writer.by,
                &text,
                writer.api_token_file.as_deref(),
                out,
            )
            .await
        }
        IncidentsCommand::Resolve { id, writer } => {
            incidents::resolve(
                &writer.target.daemon()?,
                &id,
                &writer.by,
                writer.api_token_file.as_deref(),
                out,
            )
            .await
        }
    }
}

/// Like `promtool check config`: the file, then what it points at. Every problem found is
/// printed on its own `FAILED:` line.
fn check_config(file: &Path) -> ExitCode {
    println!("Checking {}", file.display());
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            for error in e.errors() {
                println!("  FAILED: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    println!("  SUCCESS: {} is valid", file.display());
    let mut ok = true;
    match &config.rules_dir {
        Some(dir) if dir.is_dir() => {
            match incidentd::evidence_rules::EvidenceRules::load_dir(dir) {
                Ok(_) => println!("  SUCCESS: rules in {} are valid", dir.display()),
                Err(e) => {
                    println!("  FAILED: {e}");
                    ok = false;
                }
            }
        }
        // With Prometheus configured, loading the configuration refused this already.
        Some(dir) => println!(
            "  NOTE: no rules directory at {}: unused without prometheus",
            dir.display()
        ),
        None => println!("  NOTE: rules_dir is \"\": drafts get no extra queries"),
    }
    match incidentd::postmortem::check_template(config.postmortem.template.as_deref()) {
        Ok(()) => println!(
            "  SUCCESS: post-mortem template {} renders",
            config
                .postmortem
                .template
                .as_ref()
                .map_or("(embedded default)".to_string(), |p| p
                    .display()
                    .to_string())
        ),
        Err(e) => {
            println!("  FAILED: postmortem.template: {e}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::LogColor;
    use std::ffi::OsStr;

    #[test]
    fn auto_colours_a_terminal_unless_no_color_is_set_and_non_empty() {
        assert!(LogColor::Auto.enabled(true, None));
        assert!(LogColor::Auto.enabled(true, Some(OsStr::new(""))));
        assert!(!LogColor::Auto.enabled(true, Some(OsStr::new("1"))));
        assert!(!LogColor::Auto.enabled(false, None));
        assert!(LogColor::Always.enabled(false, Some(OsStr::new("1"))));
        assert!(!LogColor::Never.enabled(true, None));
    }
}
