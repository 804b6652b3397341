//! `tern bench dm`: N sender/receiver pairs, each sender writing to its own
//! receiver at rate R/N, open loop (`--sdk`: on SDK sessions, `sdk.rs`).

use super::client::{run_prefix, Target};
use super::load::{self, Conn, ExpectSpec};
use super::report::Report;
use super::stats::rss_kb;
use super::DmArgs;
use anyhow::ensure;
use std::io::IsTerminal;
use std::sync::Arc;

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
    if a.sdk {
        return super::sdk::dm(&a, &target, &prefix, &tokens, progress).await;
    }
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
    let (r, _) = load::measure("dm", a.rate, conns, a.duration, c, progress, rss_before).await;
    Ok(r)
}
