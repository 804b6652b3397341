//! `tern bench grow`: 1:1 latency while a large group grows. N sender/
//! receiver pairs send at a total rate R (as `dm` does) while one owner
//! adds `--step` members per call to one group, call after call, until it
//! holds `--members`. The report is the 1:1 traffic's; the growth calls
//! (count, duration of each, final size) are printed to stderr. Run the
//! same `dm` load without growth (`tern bench dm`) for the baseline.

use super::client::{run_prefix, Target};
use super::load::{self, Conn, ExpectSpec};
use super::report::Report;
use super::stats::rss_kb;
use super::GrowArgs;
use anyhow::ensure;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(a: GrowArgs) -> anyhow::Result<Report> {
    ensure!(
        a.pairs > 0 && a.rate > 0.0 && a.duration > 0,
        "--pairs, --rate and --duration must be positive"
    );
    ensure!(
        a.step > 0 && a.step <= 1000 && a.members > a.step,
        "--step must be 1..=1000 and below --members"
    );
    let c = &a.common;
    let progress = std::io::stderr().is_terminal() && !c.json;
    let target = Arc::new(Target::new(&c.url).await?);
    let prefix = run_prefix(&c.prefix);

    // The group's future members exist before the clock starts.
    let owner = format!("{prefix}-owner");
    let mut names: Vec<String> = vec![owner.clone()];
    names.extend((1..a.members).map(|i| format!("{prefix}-m{i}")));
    let tokens = target.users(&names, c.setup_concurrency, progress).await?;
    let owner_token = tokens[0].clone();
    let gid = target.group(&owner_token, &owner, &[]).await?;

    let pairs: Vec<String> = (0..a.pairs)
        .flat_map(|i| [format!("{prefix}-s{i}"), format!("{prefix}-r{i}")])
        .collect();
    let pair_tokens = target.users(&pairs, c.setup_concurrency, progress).await?;
    let logins: Vec<(String, String)> = pair_tokens
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
            let run = super::client::run_nonce();
            let make: load::MakeFrame = Box::new(move |k, at| {
                format!(
                    r#"{{"type":"send","id":"{k}","to":"{to}","client_msg_id":"{run}-{k}","kind":"text","content":"{at}"}}"#
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

    // The growth, beside the 1:1 load.
    let members: Vec<String> = names[1..].to_vec();
    let step = a.step;
    let grower = {
        let target = target.clone();
        let gid = gid.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut calls: Vec<Duration> = Vec::new();
            for chunk in members.chunks(step) {
                let t = Instant::now();
                let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
                target.add_members(&owner_token, &gid, &chunk).await?;
                calls.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>((calls, started.elapsed()))
        })
    };
    let (r, _) = load::measure("grow", a.rate, conns, a.duration, c, progress, rss_before).await;
    let (mut calls, took) = grower.await??;
    calls.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "grow: {} calls of {} members to {} in {:.1} s; call p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms{}",
        calls.len(),
        step,
        a.members,
        took.as_secs_f64(),
        ms(calls[calls.len() / 2]),
        ms(calls[(calls.len() * 99 / 100).min(calls.len() - 1)]),
        ms(*calls.last().unwrap()),
        if took.as_secs() > a.duration {
            " (growth outlasted the measured window)"
        } else {
            ""
        }
    );
    Ok(r)
}
