//! `tern`: the one binary. It parses flags and calls into the libraries.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

mod bench;
mod chat;

#[derive(Parser)]
#[command(name = "tern", version, about = "Tern instant-messaging server")]
struct Cli {
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.cmd {
        Cmd::Serve(args) => serve(args),
        Cmd::Bench(cmd) => bench::run(cmd),
        Cmd::Chat(args) => chat::run(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = tern_server::Config::load(args.config.as_deref())?;
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
