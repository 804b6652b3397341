//! 5.3 in `tern chat`: the display name, settings of the open
//! conversation (pin, silence), sessions; and their events as lines.

use super::events::clock;
use super::view::Chat;
use anyhow::Context;
use tern_client::wire::{ConvSettingsPush, ProfilePush, SessionView};
use tern_client::Client;

/// Longest silence, in minutes: a year.
const SILENCE_MAX_MINUTES: i64 = 525_600;

/// Runs `/name`, `/pin`, `/unpin`, `/silence`, `/sessions` or `/signout`;
/// `rest` is the line after the command.
pub async fn command(chat: &mut Chat, me: &Client, cmd: &str, rest: &str) -> anyhow::Result<()> {
    match cmd {
        "/name" => {
            if rest.is_empty() {
                anyhow::bail!("/name NAME");
            }
            let v = me.update_profile(Some(rest), None).await?;
            println!("* your name is now {}", v.name);
        }
        "/sessions" => {
            let list = me.sessions().await?;
            print!("{}", sessions_text(&list.sessions));
        }
        "/signout" => match rest {
            "" => anyhow::bail!("/signout ID (from /sessions) or /signout all"),
            "all" => {
                me.revoke_all_sessions().await?;
                println!("* every session ended, this one too");
            }
            id => {
                me.revoke_session(id).await?;
                println!("* session {id} ended");
            }
        },
        _ => {
            let Some(open) = chat.open.clone() else {
                anyhow::bail!("open a conversation first (/open USER)");
            };
            let (muted_until, pinned) = match cmd {
                "/pin" => (None, Some(true)),
                "/unpin" => (None, Some(false)),
                _ => {
                    let minutes: i64 = rest
                        .parse()
                        .ok()
                        .filter(|m| (0..=SILENCE_MAX_MINUTES).contains(m))
                        .context("/silence MINUTES: a number from 0 (push again) to 525600")?;
                    let until = if minutes == 0 {
                        0
                    } else {
                        super::now_ms() + minutes * 60_000
                    };
                    (Some(until), None)
                }
            };
            // The answer is shown through the `conv_settings` event, which
            // every device of this user gets, this one included.
            me.set_conv_settings(&open.conv, muted_until, pinned)
                .await?;
        }
    }
    Ok(())
}

/// A `profile` event as a line.
pub fn profile_text(p: &ProfilePush<'_>, me: &str) -> String {
    let who = if p.user == me {
        "your profile".to_owned()
    } else {
        format!("{}'s profile", p.user)
    };
    match &p.avatar {
        Some(a) => format!("* {who}: name {}, avatar {a}", p.name),
        None => format!("* {who}: name {}, no avatar", p.name),
    }
}

/// A `conv_settings` event for the conversation titled `title`, at `now`.
pub fn conv_settings_text(title: &str, c: &ConvSettingsPush<'_>, now: i64) -> String {
    let pin = if c.pinned { "pinned" } else { "not pinned" };
    if c.muted_until > now {
        format!(
            "* {title}: {pin}, silent until {} UTC",
            clock(c.muted_until)
        )
    } else {
        format!("* {title}: {pin}, not silenced")
    }
}

/// The answer of `/sessions`: one line per session, its id first.
pub fn sessions_text(list: &[SessionView<'_>]) -> String {
    let mut out = String::new();
    for v in list {
        let devices = if v.devices.is_empty() {
            "no device online".to_owned()
        } else {
            format!("online: {}", v.devices.join(", "))
        };
        out.push_str(&format!(
            "{} last seen {} UTC, {devices}{}\n",
            v.session,
            clock(v.last_seen),
            if v.current { " (this one)" } else { "" }
        ));
    }
    if out.is_empty() {
        out.push_str("(no session)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use tern_client::wire::tag;

    #[test]
    fn events_and_sessions_read_as_lines() {
        let p = ProfilePush {
            ty: tag::Profile,
            user: Cow::Borrowed("bob"),
            name: Cow::Borrowed("Bob B."),
            avatar: None,
        };
        assert_eq!(
            profile_text(&p, "alice"),
            "* bob's profile: name Bob B., no avatar"
        );
        assert_eq!(
            profile_text(&p, "bob"),
            "* your profile: name Bob B., no avatar"
        );
        let c = ConvSettingsPush {
            ty: tag::ConvSettings,
            conv: Cow::Borrowed("dm:alice:bob"),
            muted_until: 13 * 3_600_000 + 5 * 60_000,
            pinned: true,
        };
        assert_eq!(
            conv_settings_text("bob", &c, 0),
            "* bob: pinned, silent until 13:05 UTC"
        );
        assert_eq!(
            conv_settings_text("bob", &c, c.muted_until),
            "* bob: pinned, not silenced"
        );
        let v = SessionView {
            created_at: 0,
            current: true,
            devices: vec![Cow::Borrowed("phone"), Cow::Borrowed("tablet")],
            expires_at: 1,
            last_seen: 60_000,
            session: Cow::Borrowed("00ff"),
        };
        assert_eq!(
            sessions_text(&[v]),
            "00ff last seen 00:01 UTC, online: phone, tablet (this one)\n"
        );
        assert_eq!(sessions_text(&[]), "(no session)\n");
    }
}
