//! 5.5 offline push: registrations per user and device with their bound
//! and their session, and jobs whose pending content a newer one replaces
//! (collapsed pushes).

use tern_core::store::{NewJob, PushRegistration, Store, StoreError};

fn reg(user: &str, device: &str, token: &str, session: &str) -> PushRegistration {
    PushRegistration {
        user: user.into(),
        device: device.into(),
        provider: "fcm".into(),
        token: token.into(),
        endpoint: String::new(),
        p256dh: String::new(),
        auth: String::new(),
        session: session.into(),
        updated_at: 1_000,
    }
}

pub async fn push_registrations_bounded_replaced_and_removed(s: &dyn Store) {
    let user = "pushann";
    assert!(s.push_registrations(user).await.unwrap().is_empty());
    s.push_register(&reg(user, "phone", "t1", "s1"), 2)
        .await
        .unwrap();
    let mut web = reg(user, "web", "", "s2");
    web.provider = "webpush".into();
    web.endpoint = "https://push.example/abc".into();
    web.p256dh = "BPk".into();
    web.auth = "au".into();
    s.push_register(&web, 2).await.unwrap();
    // A third device is over the bound; nothing is stored.
    assert!(matches!(
        s.push_register(&reg(user, "tablet", "t3", "s1"), 2).await,
        Err(StoreError::Forbidden(_))
    ));
    // The same device again replaces its registration, bound or not.
    let mut again = reg(user, "phone", "t2", "s3");
    again.updated_at = 2_000;
    s.push_register(&again, 2).await.unwrap();
    let got = s.push_registrations(user).await.unwrap();
    assert_eq!(got, vec![again.clone(), web.clone()], "by device");
    // Another user's bound is their own.
    s.push_register(&reg("pushbob", "phone", "b1", "s9"), 2)
        .await
        .unwrap();
    assert_eq!(s.push_registrations("pushbob").await.unwrap().len(), 1);

    assert!(s.push_unregister(user, "web").await.unwrap());
    assert!(
        !s.push_unregister(user, "web").await.unwrap(),
        "gone already"
    );
    assert!(!s.push_unregister(user, "nosuch").await.unwrap());
    assert_eq!(s.push_registrations(user).await.unwrap(), vec![again]);

    // Revoking a session takes the registrations it made, only those.
    s.push_register(&reg(user, "tablet", "t3", "s1"), 5)
        .await
        .unwrap();
    assert_eq!(
        s.push_unregister_session(user, Some("s3")).await.unwrap(),
        1
    );
    let left: Vec<String> = s
        .push_registrations(user)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.device)
        .collect();
    assert_eq!(left, ["tablet"]);
    s.push_register(&reg(user, "phone", "t4", "s4"), 5)
        .await
        .unwrap();
    assert_eq!(s.push_unregister_session(user, None).await.unwrap(), 2);
    assert!(s.push_registrations(user).await.unwrap().is_empty());
    assert_eq!(
        s.push_registrations("pushbob").await.unwrap().len(),
        1,
        "other users keep theirs"
    );
}

fn job(key: &str, payload: &str, due_at: i64) -> NewJob {
    NewJob {
        kind: "collapse".into(),
        key: key.into(),
        payload: payload.into(),
        created_at: due_at,
        due_at,
    }
}

pub async fn put_jobs_replace_pending_content(s: &dyn Store) {
    s.put_jobs(&[job("c1", "seq 1", 100)]).await.unwrap();
    // Pending: a newer content replaces it, no second job.
    s.put_jobs(&[job("c1", "seq 2", 150)]).await.unwrap();
    assert_eq!(s.count_jobs("collapse").await.unwrap(), 1);
    let got = s.claim_jobs("collapse", 1_000, 5_000, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].payload.as_str(), got[0].due_at), ("seq 2", 100));

    // Retrying: it keeps its schedule and attempts, takes the new content.
    s.retry_job(got[0].id, 9_000, 1, "HTTP 500").await.unwrap();
    s.put_jobs(&[job("c1", "seq 3", 2_000)]).await.unwrap();
    assert!(s
        .claim_jobs("collapse", 2_000, 5_000, 10)
        .await
        .unwrap()
        .is_empty());
    let got = s.claim_jobs("collapse", 9_000, 5_000, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].payload.as_str(), got[0].attempts, got[0].due_at),
        ("seq 3", 1, 9_000)
    );

    // Replaced while it ran: completing the old content keeps the job,
    // due now and unclaimed, with the newer content.
    s.put_jobs(&[job("c1", "seq 4", 9_100)]).await.unwrap();
    assert!(!s.complete_job(got[0].id, "seq 3", 9_200).await.unwrap());
    let again = s.claim_jobs("collapse", 9_200, 5_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].payload.as_str(), again[0].due_at),
        ("seq 4", 9_000)
    );
    // Completing the content it holds removes it.
    assert!(s.complete_job(again[0].id, "seq 4", 9_300).await.unwrap());
    assert_eq!(s.count_jobs("collapse").await.unwrap(), 0);
    // A new message after that makes a new job.
    s.put_jobs(&[job("c1", "seq 5", 10_000)]).await.unwrap();
    assert_eq!(s.count_jobs("collapse").await.unwrap(), 1);
}
