//! 5.5 media: metadata stored and read back, the reference mark (only
//! the owner's), and the sweep of what nothing refers to.

use super::*;
use tern_core::store::MediaRecord;

fn media(id: &str, owner: &str, created_at: i64) -> MediaRecord {
    MediaRecord {
        id: id.into(),
        owner: owner.into(),
        size: 1234,
        mime: "image/png".into(),
        sha256: "ab".repeat(32),
        w: Some(640),
        h: Some(480),
        filename: "cat.png".into(),
        created_at,
        referenced: false,
    }
}

pub async fn media_stored_referenced_and_swept(s: &dyn Store) {
    let a = media(&"a".repeat(32), "mowner", 1_000);
    let b = MediaRecord {
        w: None,
        h: None,
        mime: "application/pdf".into(),
        filename: String::new(),
        ..media(&"b".repeat(32), "mowner", 2_000)
    };
    let c = media(&"c".repeat(32), "mother", 3_000);
    for m in [&a, &b, &c] {
        s.media_add(m).await.unwrap();
    }
    assert!(matches!(s.media_add(&a).await, Err(StoreError::Conflict)));
    assert_eq!(s.media_get(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.media_get(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(s.media_get(&"d".repeat(32)).await.unwrap(), None);

    // Only the owner's reference counts.
    assert_eq!(s.media_reference(&a.id, "mother").await.unwrap(), None);
    assert!(!s.media_get(&a.id).await.unwrap().unwrap().referenced);
    let got = s.media_reference(&a.id, "mowner").await.unwrap().unwrap();
    assert!(got.referenced);
    assert_eq!(
        s.media_reference(&"d".repeat(32), "mowner").await.unwrap(),
        None
    );

    // Nothing created at or after the cutoff goes; referenced media stay.
    assert_eq!(s.media_sweep(1_000, 100).await.unwrap(), Vec::new());
    let gone = s.media_sweep(2_500, 100).await.unwrap();
    assert_eq!(gone, vec![b.clone()]);
    assert_eq!(s.media_get(&b.id).await.unwrap(), None);
    assert!(s.media_get(&a.id).await.unwrap().is_some());
    // At most `max` per call.
    let d = media(&"d".repeat(32), "mother", 3_100);
    s.media_add(&d).await.unwrap();
    assert_eq!(s.media_sweep(10_000, 1).await.unwrap().len(), 1);
    assert_eq!(s.media_sweep(10_000, 10).await.unwrap().len(), 1);
    assert_eq!(s.media_sweep(10_000, 10).await.unwrap(), Vec::new());
    // A swept media cannot be referenced any more.
    assert_eq!(s.media_reference(&c.id, "mother").await.unwrap(), None);
    assert!(s.media_get(&a.id).await.unwrap().unwrap().referenced);
}
