//! 5.6 durable jobs: claims and their leases, dedup by key, retries, and
//! jobs written in a message's own transaction.

use std::collections::HashSet;
use std::sync::Arc;

use tern_core::store::{Appended, NewJob, Store};

use super::{dm, send};

fn job(key: &str, due_at: i64) -> NewJob {
    NewJob {
        kind: "test".into(),
        key: key.into(),
        payload: format!("{{\"key\":\"{key}\"}}"),
        created_at: due_at,
        due_at,
    }
}

pub async fn jobs_claimed_once_until_the_lease_ends(s: &dyn Store) {
    s.enqueue_jobs(&[job("a", 100), job("b", 200), job("later", 10_000)])
        .await
        .unwrap();
    // Enqueueing a key again does nothing, whatever its payload.
    let mut again = job("a", 50);
    again.payload = "{}".into();
    s.enqueue_jobs(&[again]).await.unwrap();
    assert_eq!(s.count_jobs("test").await.unwrap(), 3);
    assert_eq!(s.count_jobs("other").await.unwrap(), 0);

    let got = s.claim_jobs("test", 1_000, 5_000, 10).await.unwrap();
    let keys: Vec<&str> = got.iter().map(|j| j.key.as_str()).collect();
    assert_eq!(
        keys,
        ["a", "b"],
        "due jobs, oldest first; not the later one"
    );
    assert_eq!(got[0].payload, "{\"key\":\"a\"}");
    assert_eq!((got[0].attempts, got[0].due_at), (0, 100));
    assert_eq!(got[0].last_error, None);
    // Claimed: nobody else gets them until the lease ends.
    assert!(s
        .claim_jobs("test", 2_000, 5_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .claim_jobs("other", 2_000, 5_000, 10)
        .await
        .unwrap()
        .is_empty());
    let after = s.claim_jobs("test", 6_000, 5_000, 1).await.unwrap();
    assert_eq!(after.len(), 1, "at most max");
    assert_eq!(after[0].key, "a");

    // A retry moves due_at and frees the job.
    s.retry_job(after[0].id, 20_000, 1, "HTTP 500")
        .await
        .unwrap();
    let due = s.claim_jobs("test", 12_000, 60_000, 10).await.unwrap();
    let keys: Vec<&str> = due.iter().map(|j| j.key.as_str()).collect();
    assert_eq!(keys, ["b", "later"], "a is not due before 20000");
    let retried = s.claim_jobs("test", 20_000, 5_000, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].key, "a");
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].due_at, 20_000);
    assert_eq!(retried[0].last_error.as_deref(), Some("HTTP 500"));

    // Finished jobs are gone; their key may come back as a new job.
    for j in due.iter().chain(&retried) {
        s.finish_job(j.id).await.unwrap();
    }
    s.finish_job(i64::MAX).await.unwrap();
    assert_eq!(s.count_jobs("test").await.unwrap(), 0);
    assert!(s
        .claim_jobs("test", 99_000, 5_000, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn jobs_commit_with_their_message(s: &dyn Store) {
    let mut m = dm("jon", "kim", 500, "j1");
    m.extras.jobs = vec![job("created-1", 500)];
    let stored = send(s, m).await;
    assert_eq!(s.count_jobs("test").await.unwrap(), 1);
    // A duplicate stores nothing, its jobs neither.
    let mut dup = dm("jon", "kim", 501, "j1");
    dup.extras.jobs = vec![job("created-2", 501)];
    let out = s.append_messages(vec![dup]).await.unwrap();
    assert!(matches!(out[0], Appended::Duplicate(_)));
    assert_eq!(s.count_jobs("test").await.unwrap(), 1);
    let got = s.claim_jobs("test", 600, 1_000, 10).await.unwrap();
    assert_eq!(got[0].key, "created-1");

    // The message a job names, by id.
    let by_id = s.message_by_id(stored.msg_id).await.unwrap();
    assert_eq!(by_id, Some(stored));
    assert_eq!(s.message_by_id(u64::MAX).await.unwrap(), None);
}

/// Several handles claiming at once (several nodes): each job is taken
/// once.
pub async fn concurrent_claims_take_each_job_once(stores: Vec<Arc<dyn Store>>) {
    let jobs: Vec<NewJob> = (0..60).map(|i| job(&format!("c{i}"), i)).collect();
    stores[0].enqueue_jobs(&jobs).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let store = stores[t % stores.len()].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_jobs("test", 1_000, 60_000, 4).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|j| j.key));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for key in t.await.unwrap() {
            assert!(seen.insert(key.clone()), "{key} claimed twice");
        }
    }
    assert_eq!(seen.len(), 60);
}
