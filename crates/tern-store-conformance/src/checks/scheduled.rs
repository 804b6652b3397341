//! 5.6 scheduled messages: the per-user bound, the list, cancellation,
//! and claims with their leases.

use super::*;
use std::sync::Arc;
use tern_core::store::Scheduled;

fn row(id: &str, user: &str, at: i64) -> Scheduled {
    Scheduled {
        id: id.into(),
        user: user.into(),
        conv: dm_conv(user, "peer"),
        peer: "peer".into(),
        at,
        kind: "text".into(),
        content: format!("\"{id}\""),
        client_msg_id: format!("c-{id}"),
        reply_to: 0,
        mentions: Vec::new(),
        created_at: 1,
    }
}

pub async fn scheduled_bound_list_and_cancel(s: &dyn Store) {
    let mut g = row("g1", "su", 500);
    g.conv = "group:sg".into();
    g.peer = "sg".into();
    g.reply_to = 3;
    g.mentions = vec!["x".into(), "y".into()];
    g.content = r#"{"url":"https://x/y.png","w":2}"#.into();
    g.kind = "image".into();
    s.schedule(&g, 2).await.unwrap();
    s.schedule(&row("a1", "su", 400), 2).await.unwrap();
    assert!(matches!(
        s.schedule(&row("a2", "su", 300), 2).await,
        Err(StoreError::Forbidden(_))
    ));
    // Another user's bound is their own.
    s.schedule(&row("b1", "sv", 100), 2).await.unwrap();
    let list = s.scheduled("su").await.unwrap();
    assert_eq!(list, vec![row("a1", "su", 400), g.clone()]);
    assert_eq!(s.scheduled("nobody").await.unwrap(), Vec::new());
    // Only its user removes a row.
    assert!(!s.unschedule("sv", "a1").await.unwrap());
    assert!(!s.unschedule("su", "zz").await.unwrap());
    assert!(s.unschedule("su", "a1").await.unwrap());
    assert!(!s.unschedule("su", "a1").await.unwrap());
    assert_eq!(s.scheduled("su").await.unwrap(), vec![g]);
    // Room again under the bound.
    s.schedule(&row("a3", "su", 300), 2).await.unwrap();
}

pub async fn scheduled_claims_take_due_rows_under_a_lease(s: &dyn Store) {
    assert_eq!(s.next_scheduled().await.unwrap(), None);
    for (id, at) in [("r1", 100), ("r2", 200), ("r3", 300)] {
        s.schedule(&row(id, "sl", at), 10).await.unwrap();
    }
    assert_eq!(s.next_scheduled().await.unwrap(), Some(100));
    assert!(s.claim_scheduled(50, 1050, 10).await.unwrap().is_empty());
    let got = s.claim_scheduled(150, 1150, 10).await.unwrap();
    assert_eq!(got, vec![row("r1", "sl", 100)]);
    // Claimed: not again while its lease runs.
    assert!(s.claim_scheduled(150, 1150, 10).await.unwrap().is_empty());
    assert_eq!(s.next_scheduled().await.unwrap(), Some(200));
    // After the lease: claimable again (its sender died), the earliest
    // first, at most `max`.
    let got = s.claim_scheduled(1200, 2200, 2).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    assert_eq!(s.next_scheduled().await.unwrap(), Some(300));
    for id in ["r1", "r2", "r3"] {
        assert!(s.unschedule("sl", id).await.unwrap());
    }
    assert_eq!(s.next_scheduled().await.unwrap(), None);
}

/// Handles on one store (nodes) claiming at once: every due row is
/// claimed by exactly one of them.
pub async fn scheduled_claimed_once(stores: Vec<Arc<dyn Store>>) {
    const ROWS: usize = 60;
    for i in 0..ROWS {
        stores[0]
            .schedule(
                &row(&format!("k{i:03}"), &format!("u{}", i % 3), 10 + i as i64),
                1000,
            )
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let store = stores[t % stores.len()].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_scheduled(1_000, 60_000, 7).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|r| r.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort();
    let want: Vec<String> = (0..ROWS).map(|i| format!("k{i:03}")).collect();
    assert_eq!(all, want, "each row claimed once");
}
