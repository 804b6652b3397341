//! `system` messages (membership and 5.4 moderation events) as sentences
//! for people.

use serde_json::Value;

/// `HH:MM` (UTC) of a time in ms.
pub(super) fn clock(ts: i64) -> String {
    let secs = ts.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}", secs / 3600, secs / 60 % 60)
}

/// The event `v` (a `system` message's content) sent by `from`.
pub fn system_text(v: &Value, from: &str) -> String {
    let user = v["user"].as_str().unwrap_or("");
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    match v["event"].as_str().unwrap_or("") {
        "group_created" => format!("{user} created the group"),
        "member_joined" => format!("{user} joined"),
        "member_left" => format!("{user} left"),
        "member_removed" => format!("{user} was removed by {from}"),
        "admin_added" => format!("{user} is now an admin"),
        "admin_removed" => format!("{user} is no longer an admin"),
        "member_muted" => match v["until"].as_i64() {
            Some(t) => format!("{user} is muted by {from} until {} UTC", clock(t)),
            None => format!("{user} is muted by {from}"),
        },
        "member_unmuted" => format!("{user} may speak again"),
        "group_renamed" => format!("{from} renamed the group to {}", s("name")),
        "announcement_changed" if s("announcement").is_empty() => {
            format!("{from} cleared the announcement")
        }
        "announcement_changed" => format!("{from} set the announcement: {}", s("announcement")),
        "muted_all_changed" if v["muted_all"] == true => {
            format!("{from} muted everyone but the owner and admins")
        }
        "muted_all_changed" => format!("{from} let everyone speak again"),
        "group_dissolved" => format!("{from} dissolved the group (it stays readable)"),
        other => format!("({other} {user})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_as_sentences() {
        let t = |v: Value| system_text(&v, "alice");
        assert_eq!(
            t(json!({"event":"admin_added","user":"bob"})),
            "bob is now an admin"
        );
        assert_eq!(
            t(json!({"event":"member_muted","user":"bob","until": 13 * 3_600_000 + 5 * 60_000})),
            "bob is muted by alice until 13:05 UTC"
        );
        assert_eq!(
            t(json!({"event":"group_renamed","user":"alice","name":"ops"})),
            "alice renamed the group to ops"
        );
        assert_eq!(
            t(json!({"event":"muted_all_changed","user":"alice","muted_all":true})),
            "alice muted everyone but the owner and admins"
        );
        assert_eq!(
            t(json!({"event":"group_dissolved","user":"alice"})),
            "alice dissolved the group (it stays readable)"
        );
        assert_eq!(t(json!({"event":"future","user":"bob"})), "(future bob)");
    }
}
