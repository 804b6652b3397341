//! After the drain: what each source stored that a receiver was not
//! pushed, looked up in the receiver's history (late or lost).

use super::{ConvState, Source};
use crate::bench::client::{Sink, Stream};
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

/// Where each source's sends were stored: `(conv, seqs)`.
pub(super) fn stored_by(srcs: &[Arc<Source>]) -> Vec<(String, Vec<u64>)> {
    srcs.iter()
        .filter_map(|s| {
            let st = s.stored.lock().unwrap_or_else(|e| e.into_inner());
            Some((st.conv.clone()?, st.seqs.clone()))
        })
        .collect()
}

/// The stored seqs (`(conv, seqs)` per source) that this reader was not
/// pushed, by conversation, ascending.
pub(super) fn missing(
    stored: &[(String, Vec<u64>)],
    convs: &[ConvState],
) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (conv, seqs) in stored {
        let got = convs.iter().find(|c| &c.conv == conv).map(|c| &c.got[..]);
        for seq in seqs {
            if got.is_none_or(|g| g.binary_search(seq).is_err()) {
                out.entry(conv.clone()).or_default().push(*seq);
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

/// Reads the history around the missing seqs over the reader's own
/// connection. Returns the `(conv, seq)` pairs found stored or pushed
/// meanwhile; `None` if the connection fails or stops answering.
pub(super) async fn look_up<'a>(
    stream: &mut Stream,
    sink: &Mutex<Sink>,
    missing: &'a BTreeMap<String, Vec<u64>>,
) -> Option<HashSet<(&'a str, u64)>> {
    const PAGE: u64 = 500;
    let mut found = HashSet::new();
    for (n, (conv, seqs)) in missing.iter().enumerate() {
        let (Some(&lo), Some(&hi)) = (seqs.first(), seqs.last()) else {
            continue;
        };
        let wanted: HashSet<u64> = seqs.iter().copied().collect();
        let mut after = lo.saturating_sub(1);
        let mut page = 0;
        while after < hi {
            let id = format!("lookup-{n}-{page}");
            page += 1;
            let req = serde_json::json!({
                "type": "history", "id": id, "conv": conv,
                "after_seq": after, "limit": PAGE.min(hi - after),
            });
            let mut s = sink.lock().await;
            s.send(Message::text(req.to_string())).await.ok()?;
            drop(s);
            let reply = loop {
                let m = tokio::time::timeout(Duration::from_secs(10), stream.next())
                    .await
                    .ok()??
                    .ok()?;
                let Message::Text(t) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).ok()?;
                match v["type"].as_str() {
                    Some("ok" | "error") if v["id"] == id.as_str() => break v,
                    // A late push counts as found.
                    Some("msg") if v["msg"]["conv"] == conv.as_str() => {
                        if let Some(seq) = v["msg"]["seq"].as_u64() {
                            if wanted.contains(&seq) {
                                found.insert((conv.as_str(), seq));
                            }
                        }
                    }
                    _ => {}
                }
            };
            let msgs = reply["msgs"].as_array()?;
            let Some(top) = msgs.last().and_then(|m| m["seq"].as_u64()) else {
                break;
            };
            for m in msgs {
                if let Some(seq) = m["seq"].as_u64() {
                    if wanted.contains(&seq) {
                        found.insert((conv.as_str(), seq));
                    }
                }
            }
            after = top;
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::Target;

    fn conv(name: &str, got: &[u64]) -> ConvState {
        ConvState {
            conv: name.to_owned(),
            last: got.last().copied().unwrap_or(0),
            acked: 0,
            got: got.to_vec(),
        }
    }

    #[test]
    fn missing_lists_stored_seqs_not_pushed() {
        let stored = vec![
            ("dm:a:b".to_owned(), vec![1, 2, 4, 5]),
            ("group:g".to_owned(), vec![9, 7]),
            ("group:g".to_owned(), vec![8]),
        ];
        let convs = [conv("dm:a:b", &[1, 2, 3, 5]), conv("group:g", &[8])];
        let m = missing(&stored, &convs);
        assert_eq!(m.len(), 2);
        assert_eq!(m["dm:a:b"], [4]);
        assert_eq!(m["group:g"], [7, 9]);
        assert!(missing(&stored[..1], &[conv("dm:a:b", &[1, 2, 4, 5])]).is_empty());
    }

    /// Against a real server: stored seqs a reader was not pushed are found
    /// in its history (late); a seq that was never stored is not (lost).
    #[tokio::test]
    async fn look_up_finds_stored_messages_in_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = tern_server::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        cfg.auth.argon2_m_cost_kib = 8;
        cfg.auth.argon2_t_cost = 1;
        cfg.auth.weak_hashing_for_tests = true;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(tern_server::serve(listener, cfg, async move {
            let _ = stopped.await;
        }));
        let target = Target::new(&[url]).await.unwrap();
        let ta = target.user("lookup-a").await.unwrap();
        let tb = target.user("lookup-b").await.unwrap();
        let ws = target.connect(0, &tb, "d", None).await.unwrap();
        let (sink, mut stream) = ws.split();
        let sink = Mutex::new(sink);
        let mut conv = String::new();
        for k in 1..=3 {
            let m = tern_client::OutMessage::text_to("lookup-b", "x")
                .with_client_msg_id(&k.to_string());
            let ok = target.client_for(&ta).send_http(m).await.unwrap();
            assert_eq!(ok.seq, k, "{ok:?}");
            conv = ok.conv.into_owned();
        }
        // Take the three pushes first, so only history can answer.
        let mut pushed = 0;
        while pushed < 3 {
            if let Some(Ok(Message::Text(t))) = stream.next().await {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                pushed += u64::from(v["type"] == "msg");
            }
        }
        let missing: BTreeMap<String, Vec<u64>> = [(conv.clone(), vec![2, 3, 7])].into();
        let found = look_up(&mut stream, &sink, &missing).await.unwrap();
        assert!(found.contains(&(conv.as_str(), 2)), "{found:?}");
        assert!(found.contains(&(conv.as_str(), 3)), "{found:?}");
        assert!(
            !found.contains(&(conv.as_str(), 7)),
            "never stored: {found:?}"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
