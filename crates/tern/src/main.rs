//! `tern`: the one binary. It parses flags and calls into the libraries.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use tern_server::config::LogFormat;

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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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

/// Logs to stderr: `RUST_LOG` filters (default `level`); text is coloured
/// only when stderr is a terminal and `NO_COLOR` is unset, so files and
/// pipes get no escape codes; json writes one object per line.
fn init_log(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
