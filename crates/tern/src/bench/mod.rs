//! `tern bench`: a load generator that drives a running server through its
//! public protocol (HTTP for setup, WebSocket for traffic) and reports
//! throughput, latency percentiles, its own CPU use and the server's memory.
//!
//! Scenarios: `connect` (idle connections, RSS per connection), `dm` (1:1
//! pairs), `group` (fan-out), `room` (live-room broadcast), `grow` (1:1
//! pairs while a group grows), `media` (upload and download throughput).
//! Each creates its
//! own users under a fresh prefix, so runs never interfere.

mod client;
mod connect;
mod dm;
mod group;
mod grow;
mod load;
mod media;
mod plot;
mod report;
mod room;
mod sdk;
mod stats;

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// N authenticated idle connections: connect rate, server RSS per connection.
    Connect(ConnectArgs),
    /// N sender/receiver pairs at an offered total rate (open loop).
    Dm(DmArgs),
    /// Group fan-out: G groups of M members, O of them online.
    Group(GroupArgs),
    /// One live room with N member connections and an offered send rate.
    Room(RoomArgs),
    /// 1:1 pairs at an offered rate while one group grows by --step
    /// members per call up to --members.
    Grow(GrowArgs),
    /// Uploads then downloads files of one size: MB/s each way, server
    /// memory held per concurrent upload.
    Media(MediaArgs),
}

/// Options every scenario takes.
#[derive(Args, Clone)]
pub struct Common {
    /// Server base URL (HTTP); the WebSocket endpoint is derived from it.
    /// Repeat it for the nodes of a cluster: connections are spread over
    /// them in turn, setup goes to the first.
    #[arg(long = "url", default_values_t = ["http://127.0.0.1:8080".to_owned()], num_args = 1)]
    pub url: Vec<String>,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write latency plots (SVG) and the report (JSON) into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Server process id: its RSS is sampled before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Prefix of the users this run creates (default: a fresh random one).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Concurrent HTTP requests while creating users and groups.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// Seconds to wait for outstanding replies and pushes after sending stops.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
}

#[derive(Args, Clone)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Devices per user (connections share users, so setup is cheaper).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Client processes (default: one per 15,000 connections, to stay under
    /// the per-process file limit). Each uses its own source address
    /// 127.0.0.x when the server is on loopback.
    #[arg(long)]
    pub procs: Option<usize>,
    /// Seconds to hold the connections open before measuring.
    #[arg(long, default_value_t = 2)]
    pub hold: u64,
    /// Internal: run as one worker process of a multi-process run.
    #[arg(long, hide = true)]
    pub worker: Option<usize>,
}

#[derive(Args, Clone)]
pub struct DmArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Offered total rate, messages per second (spread evenly over pairs).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Drive the connections with the SDK (`tern_client::Session`) instead
    /// of the bench's own client, to compare the client CPU per message.
    #[arg(long)]
    pub sdk: bool,
}

#[derive(Args, Clone)]
pub struct GroupArgs {
    #[command(flatten)]
    pub common: Common,
    /// Groups.
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Members per group.
    #[arg(long, default_value_t = 500)]
    pub members: usize,
    /// Online members per group (each with one connected device).
    #[arg(long, default_value_t = 500)]
    pub online: usize,
    /// Offered total rate, group messages per second (over all groups).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

#[derive(Args, Clone)]
pub struct RoomArgs {
    #[command(flatten)]
    pub common: Common,
    /// Member connections (joined, receiving).
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Offered total rate of room_send, messages per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Devices per user.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
}

#[derive(Args, Clone)]
pub struct GrowArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Offered total 1:1 rate, messages per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending (cover the growth).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Members the group ends with (the owner included).
    #[arg(long, default_value_t = 100_000)]
    pub members: usize,
    /// Members added per call (at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub step: usize,
}

#[derive(Args, Clone)]
pub struct MediaArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bytes per file (`1048576`, `64k`, `20M`).
    #[arg(long, default_value = "1M", value_parser = media::parse_size)]
    pub size: u64,
    /// Files to upload (and then download).
    #[arg(long, default_value_t = 50)]
    pub count: usize,
    /// Uploads (then downloads) in flight, one user each.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// `Content-Type` of the uploads (one the server allows).
    #[arg(long, default_value = "application/octet-stream")]
    pub mime: String,
}

/// Runs one scenario on a fresh multi-threaded runtime.
pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (common, report) = match cmd {
            BenchCmd::Connect(a) => {
                if let Some(index) = a.worker {
                    return connect::worker(a, index).await;
                }
                (a.common.clone(), connect::run(a).await?)
            }
            BenchCmd::Dm(a) => (a.common.clone(), dm::run(a).await?),
            BenchCmd::Group(a) => (a.common.clone(), group::run(a).await?),
            BenchCmd::Room(a) => (a.common.clone(), room::run(a).await?),
            BenchCmd::Grow(a) => (a.common.clone(), grow::run(a).await?),
            BenchCmd::Media(a) => return media::run(a).await,
        };
        report::emit(&common, &report)
    })
}
