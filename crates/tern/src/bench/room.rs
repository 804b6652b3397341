//! `tern bench room`: one live room with N member connections; messages
//! sent into it at a total rate R by extra sender connections (at most 40/s
//! each, under the default room send cap). Reports broadcast deliveries and
//! how many the per-device rate cap dropped.

use super::client::{run_prefix, In, Target, Ws};
use super::load::{self, Conn, ExpectSpec};
use super::report::Report;
use super::stats::rss_kb;
use super::RoomArgs;
use anyhow::{anyhow, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use std::io::IsTerminal;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// Most room_send frames per second one sending connection offers.
const PER_SENDER: f64 = 40.0;

pub async fn run(a: RoomArgs) -> anyhow::Result<Report> {
    ensure!(
        a.conns > 0 && a.rate > 0.0 && a.duration > 0,
        "--conns, --rate and --duration must be positive"
    );
    let c = &a.common;
    let progress = std::io::stderr().is_terminal() && !c.json;
    let target = Arc::new(Target::new(&c.url).await?);
    let prefix = run_prefix(&c.prefix);
    let devices = a.devices.max(1);
    let senders = (a.rate / PER_SENDER).ceil() as usize;
    let n_users = a.conns.div_ceil(devices).max(senders);
    let names: Vec<String> = (0..n_users).map(|i| format!("{prefix}-u{i}")).collect();
    let tokens = target.users(&names, c.setup_concurrency, progress).await?;
    let mut logins: Vec<(String, String)> = (0..senders)
        .map(|i| (tokens[i].clone(), "send".to_owned()))
        .collect();
    logins.extend((0..a.conns).map(|i| (tokens[i / devices].clone(), format!("d{}", i % devices))));

    let rss_before = c.server_pid.and_then(rss_kb);
    let mut ws = target.connect_all(&logins, 64, progress, |_| None).await?;
    let room = prefix.clone();
    let bar = super::client::bar(progress, ws.len() as u64, "joins");
    for w in ws.iter_mut() {
        join(w, &room).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    let per_sender = a.rate / senders as f64;
    let conns: Vec<Conn> = ws
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let sends = (i < senders).then(|| {
                let room = room.clone();
                let make: load::MakeFrame = Box::new(move |k, at| {
                    format!(r#"{{"type":"room_send","id":"{k}","room":"{room}","content":"{at}"}}"#)
                });
                (make, per_sender)
            });
            Conn {
                ws,
                sends,
                expect: ExpectSpec::BestEffort,
            }
        })
        .collect();
    let (r, o) = load::measure("room", a.rate, conns, a.duration, c, progress, rss_before).await;
    let mut r = r;
    // Every room message goes to every member device but the sending one;
    // the per-device cap drops the rest, by design.
    let offered_deliveries = o.oks * (r.conns as u64 - 1);
    r.late = None;
    r.lost = None;
    r.unchecked = None;
    r.dropped = Some(offered_deliveries.saturating_sub(o.deliveries));
    Ok(r)
}

async fn join(ws: &mut Ws, room: &str) -> anyhow::Result<()> {
    ws.send(Message::text(format!(
        r#"{{"type":"join","id":"join","room":"{room}"}}"#
    )))
    .await?;
    loop {
        let m = ws
            .next()
            .await
            .ok_or_else(|| anyhow!("closed while joining"))??;
        if let Message::Text(t) = m {
            let f: In = serde_json::from_str(t.as_str())?;
            match (f.ty, f.id) {
                ("ok", Some("join")) => return Ok(()),
                ("error", Some("join")) => bail!("join refused: {}", t.as_str()),
                _ => {}
            }
        }
    }
}
