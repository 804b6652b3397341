//! `tern`: the one binary. It parses flags and calls into the libraries.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use tern_server::config::LogFormat;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

mod admin;
mod bench;
mod chat;

#[derive(Parser)]
#[command(name = "tern", version, about = "Tern instant-messaging server")]
struct Cli {
    /// Log format on standard error: text (coloured only on a terminal) or
    /// json (one object per line). Default: `log.format` of the
    /// configuration.
    #[arg(long, global = true, value_name = "text|json")]
    log_format: Option<LogFormat>,
    /// On a fatal error, print its whole cause chain and, when one was
    /// captured (`RUST_BACKTRACE=1`), its backtrace; also implied by a
    /// `RUST_LOG` at `debug` or `trace`.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (embedded with no configuration).
    Serve(ServeArgs),
    /// Drive a running server with simulated clients; report throughput,
    /// latency percentiles and memory.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Manage users on the configured store (works while a server runs).
    #[command(subcommand)]
    User(admin::UserCmd),
    /// Print a session token for a user, for bots and scripts.
    Token(admin::TokenArgs),
    /// Manage the keys that sign session tokens (works while servers run).
    #[command(subcommand)]
    Secret(admin::SecretCmd),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(admin::ConfigCmd),
    /// A terminal client for people: conversations, history, sending,
    /// receipts, typing, groups.
    Chat(chat::ChatArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory of the embedded store (default ./tern-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// TOML configuration file; `TERN_*` variables and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let flag = cli.log_format;
    let verbose = cli.verbose || rust_log_debug();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, flag, verbose);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let flag = cli.log_format;
    // A command's configuration is loaded first: it names the log format.
    match cli.cmd {
        Cmd::Serve(args) => {
            let cfg = tern_server::Config::load(args.config.as_deref())?;
            start_log(flag, Some(&cfg), "info");
            serve(args, cfg)
        }
        Cmd::Bench(cmd) => {
            start_log(flag, None, "info");
            bench::run(cmd)
        }
        // Admin commands print their answer on stdout; their log stays
        // quiet.
        Cmd::User(cmd) => {
            let admin::UserCmd::Add(args) = &cmd;
            let cfg = args.store.load()?;
            start_log(flag, Some(&cfg), "warn");
            admin::user(cmd, cfg)
        }
        Cmd::Token(args) => {
            let cfg = args.store.load()?;
            start_log(flag, Some(&cfg), "warn");
            admin::token(args, cfg)
        }
        Cmd::Secret(cmd) => {
            let admin::SecretCmd::Rotate(args) = &cmd;
            let cfg = args.load()?;
            start_log(flag, Some(&cfg), "warn");
            admin::secret(cmd, cfg)
        }
        Cmd::Config(cmd) => {
            start_log(flag, None, "warn");
            admin::config(cmd)
        }
        // The chat owns the terminal: only warnings and errors are logged.
        Cmd::Chat(args) => {
            start_log(flag, None, "warn");
            chat::run(args)
        }
    }
}

/// Installs the log: the format of the flag, else of the configuration
/// (its file or `TERN_LOG__FORMAT`).
fn start_log(flag: Option<LogFormat>, cfg: Option<&tern_server::Config>, level: &str) {
    let format = match (flag, cfg) {
        (Some(f), _) => f,
        (None, Some(c)) => c.log.format,
        // Commands without a configuration still follow TERN_LOG__FORMAT.
        (None, None) => tern_server::Config::load(None)
            .map(|c| c.log.format)
            .unwrap_or_default(),
    };
    init_log(format, level);
    if cfg.is_some_and(|c| c.auth.weak_hashing_for_tests) {
        tracing::warn!(
            "{}=1: password hashing may be below the argon2 floor; for tests only",
            tern_server::config::WEAK_HASHING_ENV
        );
    }
}

/// The format the log was installed with, for the fatal error.
static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Where database notices are logged: PostgreSQL's "relation ... already
/// exists, skipping" from the schema's `CREATE ... IF NOT EXISTS` at every
/// start, which sqlx logs at INFO.
const DB_NOTICES: &str = "sqlx::postgres::notice";

/// `RUST_LOG` (default `level`), with database notices shown only when
/// the filter asks for debug output or names them itself.
fn log_filter(level: &str) -> EnvFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = Some(spec.trim())
        .filter(|s| !s.is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let debug = filter
        .max_level_hint()
        .is_some_and(|l| l >= LevelFilter::DEBUG);
    if debug || spec.contains(DB_NOTICES) {
        return filter;
    }
    match format!("{DB_NOTICES}=warn").parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

/// Whether `RUST_LOG` asks for debug output (or more).
fn rust_log_debug() -> bool {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .and_then(|f| f.max_level_hint())
        .is_some_and(|l| l >= LevelFilter::DEBUG)
}

/// Prints a fatal error on stderr: one line for people (`tern: error:` and
/// the cause chain joined by `: `), one JSON object in the log's format
/// when the log is JSON. The debug form, with a backtrace if one was
/// captured, only when `verbose`: a `RUST_BACKTRACE` left set in a shell
/// does not turn every typo in a setting into a page of frames.
fn report(e: &anyhow::Error, flag: Option<LogFormat>, verbose: bool) {
    let format = LOG_FORMAT
        .get()
        .copied()
        .or(flag)
        .unwrap_or_else(format_from_env);
    let message = if verbose {
        format!("{e:?}")
    } else {
        // Some sources break their message over lines.
        let chain = format!("{e:#}");
        chain.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    match format {
        LogFormat::Text => eprintln!("tern: error: {message}"),
        LogFormat::Json => eprintln!("{}", json_error(&message)),
    }
}

/// The format `TERN_LOG__FORMAT` names, when the configuration could not
/// be read (that may be the fatal error).
fn format_from_env() -> LogFormat {
    std::env::var("TERN_LOG__FORMAT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_default()
}

/// A fatal error as one line of the JSON log format.
fn json_error(message: &str) -> String {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
    let mut timestamp = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    // Written by hand to keep the log's key order.
    let json = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        r#"{{"timestamp":{},"level":"ERROR","fields":{{"message":{}}},"target":"tern"}}"#,
        json(&timestamp),
        json(message)
    )
}

/// Logs to stderr: `RUST_LOG` filters (default `level`); text is coloured
/// only when stderr is a terminal and `NO_COLOR` is unset, so files and
/// pipes get no escape codes; json writes one object per line.
fn init_log(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    let _ = LOG_FORMAT.set(format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(log_filter(level))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_ansi(false).init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init()
        }
    }
}

fn serve(args: ServeArgs, mut cfg: tern_server::Config) -> anyhow::Result<()> {
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(d) = args.data {
        cfg.data_dir = d;
    }
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        // Printed once the store is open: scripts may wait for this line.
        tern_server::serve_ready(listener, cfg, shutdown_signal(), |addr| {
            println!("tern: listening on {addr}");
        })
        .await
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
