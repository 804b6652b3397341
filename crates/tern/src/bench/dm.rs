//! `tern bench dm`: N sender/receiver pairs, each sender writing to its own
//! receiver at rate R/N, open loop.

use super::client::{run_prefix, Target};
use super::load::{self, Conn, ExpectSpec};
use super::report::Report;
use super::stats::{cpu_time, rss_kb};
use super::DmArgs;
use anyhow::ensure;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(a: DmArgs) -> anyhow::Result<Report> {
    ensure!(
        a.pairs > 0 && a.rate > 0.0 && a.duration > 0,
        "--pairs, --rate and --duration must be positive"
    );
    let c = &a.common;
    let progress = std::io::stderr().is_terminal() && !c.json;
    let target = Arc::new(Target::new(&c.url).await?);
    let prefix = run_prefix(&c.prefix);
    let names: Vec<String> = (0..a.pairs)
        .flat_map(|i| [format!("{prefix}-s{i}"), format!("{prefix}-r{i}")])
        .collect();
    let tokens = target.users(&names, c.setup_concurrency, progress).await?;
    let logins: Vec<(String, String)> = tokens
        .into_iter()
        .map(|t| (t, "bench".to_owned()))
        .collect();
    let rss_before = c.server_pid.and_then(rss_kb);
    let ws = target.connect_all(&logins, 64, progress, |_| None).await?;

    let per_pair = a.rate / a.pairs as f64;
    let mut conns = Vec::with_capacity(ws.len());
    for (i, ws) in ws.into_iter().enumerate() {
        let pair = i / 2;
        if i % 2 == 0 {
            let to = format!("{prefix}-r{pair}");
            let make: load::MakeFrame = Box::new(move |k, at| {
                format!(
                    r#"{{"type":"send","id":"{k}","to":"{to}","client_msg_id":"{k}","kind":"text","content":"{at}"}}"#
                )
            });
            conns.push(Conn {
                ws,
                sends: Some((make, per_pair)),
                expect: ExpectSpec::Sources(vec![]),
            });
        } else {
            conns.push(Conn {
                ws,
                sends: None,
                expect: ExpectSpec::Sources(vec![pair]),
            });
        }
    }
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    let o = load::run(
        conns,
        Duration::from_secs(a.duration),
        Duration::from_secs(c.drain),
        progress,
    )
    .await;
    let cpu_pct =
        100.0 * cpu_time().saturating_sub(cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64();
    let rss_after = c.server_pid.and_then(rss_kb);

    let secs = o.duration.as_secs_f64().max(1e-9);
    let mut r = Report {
        scenario: "dm",
        offered_rate: a.rate,
        duration_s: secs,
        conns: a.pairs * 2,
        msgs_sent: o.sent,
        msgs_ok: o.oks,
        msgs_per_s: o.oks as f64 / secs,
        deliveries: o.deliveries,
        deliveries_per_s: o.deliveries as f64 / secs,
        errors: o.errors,
        lost: Some(o.lost),
        duplicates: o.duplicates,
        client_cpu_pct: cpu_pct,
        server_rss_kb_before: rss_before,
        server_rss_kb_after: rss_after,
        ..Default::default()
    };
    r.set_latencies(o.deliver, o.ok);
    Ok(r)
}
