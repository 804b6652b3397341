//! `tern bench group`: G groups of M members with O online, messages sent
//! into the groups at a total rate R; measures fan-out deliveries.
//!
//! Each online member has one receiving device. The sending is spread over
//! extra "send" devices of the first members of each group, at most 100
//! messages/s each (under the per-connection frame limit); those devices
//! receive the group's traffic too, except their own sends.

use super::client::{run_prefix, Target};
use super::load::{self, Conn, ExpectSpec};
use super::report::Report;
use super::stats::rss_kb;
use super::GroupArgs;
use anyhow::ensure;
use std::io::IsTerminal;
use std::sync::Arc;

/// Most messages per second one sending connection offers.
const PER_SENDER: f64 = 100.0;

pub async fn run(a: GroupArgs) -> anyhow::Result<Report> {
    ensure!(
        a.groups > 0 && a.members > 0 && a.rate > 0.0 && a.duration > 0,
        "--groups, --members, --rate and --duration must be positive"
    );
    ensure!(
        a.online >= 1 && a.online <= a.members,
        "--online must be between 1 and --members"
    );
    let c = &a.common;
    let progress = std::io::stderr().is_terminal() && !c.json;
    let target = Arc::new(Target::new(&c.url).await?);
    let prefix = run_prefix(&c.prefix);
    let name = |g: usize, m: usize| format!("{prefix}-g{g}-{m}");
    let names: Vec<String> = (0..a.groups)
        .flat_map(|g| (0..a.members).map(move |m| (g, m)))
        .map(|(g, m)| name(g, m))
        .collect();
    let tokens = target.users(&names, c.setup_concurrency, progress).await?;
    let token = |g: usize, m: usize| tokens[g * a.members + m].clone();

    let per_group = a.rate / a.groups as f64;
    let senders = ((per_group / PER_SENDER).ceil() as usize).clamp(1, a.online);
    let mut gids = Vec::new();
    for g in 0..a.groups {
        let members: Vec<String> = (0..a.members).map(|m| name(g, m)).collect();
        gids.push(target.group(&token(g, 0), &name(g, 0), &members).await?);
    }

    // Per group: `senders` send devices, then `online` receiving devices.
    let mut logins = Vec::new();
    for g in 0..a.groups {
        for m in 0..senders {
            logins.push((token(g, m), "send".to_owned()));
        }
        for m in 0..a.online {
            logins.push((token(g, m), "bench".to_owned()));
        }
    }
    let rss_before = c.server_pid.and_then(rss_kb);
    let ws = target.connect_all(&logins, 64, progress, |_| None).await?;

    let per_sender = per_group / senders as f64;
    let mut conns = Vec::with_capacity(ws.len());
    let per = senders + a.online;
    for (i, ws) in ws.into_iter().enumerate() {
        let g = i / per;
        let j = i % per;
        let group_sources: Vec<usize> = (g * senders..(g + 1) * senders).collect();
        if j < senders {
            let gid = gids[g].clone();
            let run = super::client::run_nonce();
            let make: load::MakeFrame = Box::new(move |k, at| {
                format!(
                    r#"{{"type":"send","id":"{k}","group":"{gid}","client_msg_id":"{run}-{k}","kind":"text","content":"{at}"}}"#
                )
            });
            let me = g * senders + j;
            let others = group_sources.into_iter().filter(|s| *s != me).collect();
            conns.push(Conn {
                ws,
                sends: Some((make, per_sender)),
                expect: ExpectSpec::Sources(others),
            });
        } else {
            conns.push(Conn {
                ws,
                sends: None,
                expect: ExpectSpec::Sources(group_sources),
            });
        }
    }
    let (r, _) = load::measure("group", a.rate, conns, a.duration, c, progress, rss_before).await;
    Ok(r)
}
