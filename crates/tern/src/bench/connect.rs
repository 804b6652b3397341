//! `tern bench connect`: N authenticated idle connections, spread over
//! worker processes (this same binary, `--worker i`) so no process passes
//! its file limit. Each worker of a loopback target connects from its own
//! source address 127.0.0.(2+i), so the client port range is never the
//! limit either.
//!
//! Workers talk to the parent in lines: they print `users` once their users
//! exist, wait for a line on stdin, connect, print one JSON result line, and
//! hold their connections until stdin closes. The parent samples the
//! server's RSS between "users exist" and "all connected", so the figure per
//! connection excludes account setup.

use super::client::{run_prefix, Target};
use super::report::Report;
use super::stats::{cpu_time, rss_kb};
use super::ConnectArgs;
use anyhow::{anyhow, bail, ensure, Context};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Connections one worker process opens at most by default.
const PER_PROC: usize = 15_000;

#[derive(Serialize, Deserialize)]
struct WorkerResult {
    connected: usize,
    errors: u64,
    secs: f64,
    cpu_secs: f64,
}

pub async fn run(a: ConnectArgs) -> anyhow::Result<Report> {
    ensure!(a.conns > 0, "--conns must be positive");
    let c = &a.common;
    let progress = std::io::stderr().is_terminal() && !c.json;
    let procs = a
        .procs
        .unwrap_or(a.conns.div_ceil(PER_PROC))
        .clamp(1, a.conns);
    let prefix = run_prefix(&c.prefix);
    let exe = std::env::current_exe().context("locating the tern binary")?;

    let mut children = Vec::new();
    for i in 0..procs {
        let n = a.conns / procs + usize::from(i < a.conns % procs);
        let mut child = Command::new(&exe)
            .arg("bench")
            .arg("connect")
            .args(c.url.iter().flat_map(|u| ["--url", u.as_str()]))
            .arg("--prefix")
            .arg(format!("{prefix}-w{i}"))
            .args([
                "--conns",
                &n.to_string(),
                "--devices",
                &a.devices.to_string(),
            ])
            .args([
                "--setup-concurrency",
                &c.setup_concurrency.div_ceil(procs).to_string(),
            ])
            .args(["--worker", &i.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a bench worker")?;
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        children.push((child, stdin, lines));
    }
    if progress {
        eprintln!("creating users in {procs} worker process(es)...");
    }
    for (_, _, lines) in children.iter_mut() {
        let l = lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("a worker exited during setup"))?;
        ensure!(l == "users", "unexpected worker line: {l}");
    }
    let rss_before = c.server_pid.and_then(rss_kb);
    if progress {
        eprintln!("connecting {} connections...", a.conns);
    }
    for (_, stdin, _) in children.iter_mut() {
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
    }
    let mut connected = 0;
    let mut errors = 0;
    let mut secs: f64 = 0.0;
    let mut cpu_secs = 0.0;
    for (_, _, lines) in children.iter_mut() {
        let l = lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("a worker exited while connecting"))?;
        let r: WorkerResult =
            serde_json::from_str(&l).with_context(|| format!("worker said {l}"))?;
        connected += r.connected;
        errors += r.errors;
        secs = secs.max(r.secs);
        cpu_secs += r.cpu_secs;
    }
    if progress {
        eprintln!("holding {connected} connections for {} s...", a.hold);
    }
    tokio::time::sleep(Duration::from_secs(a.hold)).await;
    let rss_after = c.server_pid.and_then(rss_kb);
    for (mut child, stdin, _) in children {
        drop(stdin);
        let _ = child.wait().await;
    }
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => Some((a as f64 - b as f64) / connected as f64),
        _ => None,
    };
    Ok(Report {
        scenario: "connect",
        conns: connected,
        duration_s: secs,
        errors,
        connect_per_s: Some(connected as f64 / secs.max(1e-9)),
        client_cpu_pct: 100.0 * cpu_secs / secs.max(1e-9),
        client_cpu_s: cpu_secs,
        server_rss_kb_before: rss_before,
        server_rss_kb_after: rss_after,
        server_rss_kb_per_conn: per_conn,
        ..Default::default()
    })
}

/// One worker process: see the module docs for its line protocol.
pub async fn worker(a: ConnectArgs, index: usize) -> anyhow::Result<()> {
    let c = &a.common;
    let target = Arc::new(Target::new(&c.url).await?);
    let prefix = c
        .prefix
        .clone()
        .ok_or_else(|| anyhow!("a worker needs --prefix"))?;
    let devices = a.devices.max(1);
    let names: Vec<String> = (0..a.conns.div_ceil(devices))
        .map(|i| format!("{prefix}-u{i}"))
        .collect();
    let tokens = target.users(&names, c.setup_concurrency, false).await?;
    let mut stdout = tokio::io::stdout();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    stdout.write_all(b"users\n").await?;
    stdout.flush().await?;
    if stdin.next_line().await?.is_none() {
        bail!("the parent went away");
    }

    let source: Option<IpAddr> = match target.addr().ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            Some(IpAddr::from([127, 0, 0, 2 + (index % 250) as u8]))
        }
        _ => None,
    };
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..a.conns)
        .map(|i| {
            let target = target.clone();
            let token = tokens[i / devices].clone();
            async move {
                target
                    .connect(i, &token, &format!("d{}", i % devices), source)
                    .await
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = cpu_time().saturating_sub(cpu0).as_secs_f64();
    let mut held = Vec::with_capacity(results.len());
    let mut errors = 0;
    for r in results {
        match r {
            Ok(ws) => held.push(ws),
            Err(e) => {
                if errors == 0 {
                    eprintln!("worker {index}: connect failed: {e:#}");
                }
                errors += 1;
            }
        }
    }
    let line = serde_json::to_string(&WorkerResult {
        connected: held.len(),
        errors,
        secs,
        cpu_secs,
    })?;
    stdout.write_all(format!("{line}\n").as_bytes()).await?;
    stdout.flush().await?;
    // Hold until the parent closes stdin. Idle connections must answer
    // nothing: the server only talks when spoken to or pinged, and the run
    // is far shorter than the idle timeout.
    while stdin.next_line().await?.is_some() {}
    drop(held);
    Ok(())
}
