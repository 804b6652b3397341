//! 5.3: profiles (the avatar beside the name), a user's settings of a
//! conversation, and sessions.

use super::*;
use tern_core::store::{ConvSettings, Profile, SessionRecord};

pub async fn profiles_name_and_avatar(s: &dyn Store) {
    s.create_user(user("pro", 1)).await.unwrap();
    assert_eq!(s.profile("nobody").await.unwrap(), None);
    let p = s.profile("pro").await.unwrap().unwrap();
    assert_eq!(p.avatar, None);
    let set = |name: Option<&'static str>, avatar: Option<&'static str>| async move {
        s.set_profile("pro", name, avatar).await.unwrap()
    };
    let want = |name: &str, avatar: Option<&str>| {
        Some(Profile {
            name: name.into(),
            avatar: avatar.map(str::to_owned),
            bot: false,
        })
    };
    assert_eq!(set(Some("Pro"), Some("m1")).await, want("Pro", Some("m1")));
    assert_eq!(set(None, Some("m2")).await, want("Pro", Some("m2")));
    assert_eq!(set(Some("Pro 2"), None).await, want("Pro 2", Some("m2")));
    assert_eq!(set(None, Some("")).await, want("Pro 2", None));
    assert_eq!(s.profile("pro").await.unwrap(), want("Pro 2", None));
    // The account's own record follows the name.
    assert_eq!(s.get_user("pro").await.unwrap().unwrap().name, "Pro 2");
    assert_eq!(
        s.set_profile("nobody", Some("x"), None).await.unwrap(),
        None
    );
}

pub async fn conv_settings_per_user(s: &dyn Store) {
    let set = |user: &'static str, conv: &'static str, m: Option<i64>, p: Option<bool>| async move {
        s.set_conv_settings(user, conv, m, p).await.unwrap()
    };
    let cs = |conv: &str, muted_until: i64, pinned: bool| ConvSettings {
        conv: conv.into(),
        muted_until,
        pinned,
        retention_days: 0,
    };
    assert!(s.conv_settings("sa").await.unwrap().is_empty());
    assert_eq!(
        set("sa", "dm:sa:sb", Some(500), None).await,
        cs("dm:sa:sb", 500, false)
    );
    assert_eq!(
        set("sa", "dm:sa:sb", None, Some(true)).await,
        cs("dm:sa:sb", 500, true)
    );
    assert_eq!(
        set("sa", "group:g1", None, Some(true)).await,
        cs("group:g1", 0, true)
    );
    assert_eq!(
        set("sb", "dm:sa:sb", Some(9), Some(false)).await,
        cs("dm:sa:sb", 9, false)
    );
    assert_eq!(
        s.conv_settings("sa").await.unwrap(),
        vec![cs("dm:sa:sb", 500, true), cs("group:g1", 0, true)]
    );
    // Back at the defaults: no row.
    assert_eq!(
        set("sa", "group:g1", Some(0), Some(false)).await,
        cs("group:g1", 0, false)
    );
    assert_eq!(
        s.conv_settings("sa").await.unwrap(),
        vec![cs("dm:sa:sb", 500, true)]
    );
    assert_eq!(
        s.conv_settings("sb").await.unwrap(),
        vec![cs("dm:sa:sb", 9, false)]
    );
}

pub async fn sessions_recorded_touched_and_forgotten(s: &dyn Store) {
    let rec = |id: char, user: &str, created: i64, expires: i64, seen: i64| SessionRecord {
        session: id.to_string().repeat(32),
        user: user.into(),
        created_at: created,
        expires_at: expires,
        last_seen: seen,
    };
    s.touch_session(&rec('b', "ses", 20, 1_000, 20))
        .await
        .unwrap();
    s.touch_session(&rec('a', "ses", 10, 1_000, 10))
        .await
        .unwrap();
    s.touch_session(&rec('c', "ses", 30, 50, 30)).await.unwrap();
    s.touch_session(&rec('d', "oth", 30, 1_000, 30))
        .await
        .unwrap();
    // last_seen moves forward only; created and expiry stay.
    s.touch_session(&rec('a', "ses", 99, 9_999, 40))
        .await
        .unwrap();
    s.touch_session(&rec('a', "ses", 99, 9_999, 35))
        .await
        .unwrap();
    assert_eq!(
        s.sessions("ses", 40).await.unwrap(),
        vec![
            rec('a', "ses", 10, 1_000, 40),
            rec('b', "ses", 20, 1_000, 20),
            rec('c', "ses", 30, 50, 30),
        ]
    );
    // Expired ones are not listed.
    assert_eq!(s.sessions("ses", 50).await.unwrap().len(), 2);
    // A new session of the user drops its expired ones.
    s.touch_session(&rec('e', "ses", 60, 1_000, 60))
        .await
        .unwrap();
    assert_eq!(s.sessions("ses", 0).await.unwrap().len(), 3);
    s.delete_session(&"b".repeat(32)).await.unwrap();
    s.delete_session(&"b".repeat(32)).await.unwrap();
    let left: Vec<String> = s
        .sessions("ses", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.session[..1].to_owned())
        .collect();
    assert_eq!(left, ["a", "e"]);
    assert_eq!(s.sessions("oth", 0).await.unwrap().len(), 1);
}
