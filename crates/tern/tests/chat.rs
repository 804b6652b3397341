//! `tern chat` driven through a real terminal (tmux) against a real
//! `tern serve`: alice uses the chat, bob the SDK.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;
use tern_client::{Client, Event, Events, OutMessage};

/// A tmux server of its own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        // One server per test (tests of this binary run at once).
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("tern-chat-test-{}-{n}", std::process::id());
        let t = Tmux { socket };
        let ok = t
            .tmux(&[
                "new-session",
                "-d",
                "-s",
                "chat",
                "-x",
                "120",
                "-y",
                "40",
                cmd,
            ])
            .status
            .success();
        assert!(ok, "tmux new-session failed");
        t
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Types a line and presses Enter.
    fn line(&self, text: &str) {
        assert!(self
            .tmux(&["send-keys", "-t", "chat", "-l", text])
            .status
            .success());
        assert!(self
            .tmux(&["send-keys", "-t", "chat", "Enter"])
            .status
            .success());
    }

    /// The screen and its scrollback.
    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "chat", "-S", "-500"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `what`.
    async fn wait_for(&self, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if s.contains(what) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("the screen never showed {what:?}; it shows:\n{s}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

async fn next_message(events: &mut Events) -> tern_client::wire::MsgView<'static> {
    let find = async {
        loop {
            match events.recv().await {
                Some(Event::Message(m)) => return m,
                Some(_) => {}
                None => panic!("bob's session ended"),
            }
        }
    };
    tokio::time::timeout(WAIT, find).await.expect("a message")
}

#[tokio::test]
async fn chat_sends_receives_and_shows_unread_and_read_marks() {
    let dir = tempfile::tempdir().unwrap();
    let tern = Tern::start(dir.path()).await;
    let url = format!("http://{}", tern.addr);
    let server = Client::new(&url).unwrap();
    server.register("bob", PASSWORD, None).await.unwrap();
    let bob = server.login("bob", PASSWORD).await.unwrap();
    let (b, mut be) = bob.connect("phone").await.unwrap();

    let cmd = format!(
        "{} chat --url {url} --user alice --register",
        env!("CARGO_BIN_EXE_tern")
    );
    let t = Tmux::start(&cmd);
    t.wait_for("password for alice:").await;
    t.line(PASSWORD);
    t.wait_for("logged in as alice").await;
    t.wait_for("conversations (unread 0)").await;
    // The password was not echoed.
    assert!(!t.screen().contains(PASSWORD));

    // Bob writes first: a notice and an unread count.
    b.send(OutMessage::text_to("alice", "hi alice"))
        .await
        .unwrap();
    t.wait_for("new message in bob from bob (unread 1)").await;
    t.line("/list");
    t.wait_for("1. bob [online]  unread 1  - bob: hi alice")
        .await;

    // Opening reads it; bob's device gets the read receipt.
    t.line("/open bob");
    t.wait_for("#1 bob: hi alice").await;
    let read = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::Receipt(r)) = be.recv().await {
                if r.read_seq.is_some() {
                    return r.read_seq;
                }
            }
        }
    })
    .await
    .expect("a read receipt");
    assert_eq!(read, Some(1));

    // Alice answers from the terminal; bob's SDK gets it.
    t.line("hello bob");
    t.wait_for("#2 alice (you): hello bob").await;
    let m = next_message(&mut be).await;
    assert_eq!(
        (m.from.as_ref(), m.seq, m.content.as_ref().map(|c| c.get())),
        ("alice", 2, Some("\"hello bob\""))
    );
    // Delivered (bob's session acks), then read.
    t.wait_for("✓ delivered to bob up to #2").await;
    b.read("dm:alice:bob", 2).await.unwrap();
    t.wait_for("✓✓ read by bob up to #2").await;

    // Typing shows in the open conversation.
    b.typing("dm:alice:bob").unwrap();
    t.wait_for("bob is typing").await;

    // A group: created from the chat, bob gets its messages.
    t.line("/group team bob");
    t.wait_for("created group").await;
    let screen = t.screen();
    let gid = screen
        .lines()
        .find_map(|l| l.strip_prefix("created group "))
        .and_then(|r| r.split_whitespace().next())
        .expect("group id on screen")
        .to_owned();
    t.line(&format!("/open #{gid}"));
    t.wait_for(&format!("--- #{gid} ---")).await;
    t.line("hi team");
    let m = loop {
        let m = next_message(&mut be).await;
        if m.kind == "text" {
            break m;
        }
    };
    assert_eq!(m.group.as_deref(), Some(gid.as_str()));
    t.line("/quit");
}

/// 5.4 and blocks from the terminal: group moderation commands, their
/// events shown as sentences, and a block.
#[tokio::test]
async fn chat_moderates_a_group_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let tern = Tern::start(dir.path()).await;
    let url = format!("http://{}", tern.addr);
    let server = Client::new(&url).unwrap();
    server.register("bob", PASSWORD, None).await.unwrap();
    let bob = server.login("bob", PASSWORD).await.unwrap();
    let (b, _be) = bob.connect("phone").await.unwrap();

    let cmd = format!(
        "{} chat --url {url} --user alice --register",
        env!("CARGO_BIN_EXE_tern")
    );
    let t = Tmux::start(&cmd);
    t.wait_for("password for alice:").await;
    t.line(PASSWORD);
    t.wait_for("logged in as alice").await;
    t.line("/group team bob");
    t.wait_for("created group").await;
    let gid = t
        .screen()
        .lines()
        .find_map(|l| l.strip_prefix("created group "))
        .and_then(|r| r.split_whitespace().next())
        .expect("group id on screen")
        .to_owned();
    t.line(&format!("/open #{gid}"));
    t.wait_for(&format!("--- #{gid} ---")).await;
    t.wait_for("(bob joined)").await;

    t.line("/admin bob");
    t.wait_for("(bob is now an admin)").await;
    t.line("/unadmin bob");
    t.wait_for("(bob is no longer an admin)").await;
    t.line("/mute bob 10");
    t.wait_for("(bob is muted by alice until").await;
    let refused = b
        .send(OutMessage::text_to_group(&gid, "may I?"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(tern_client::ErrorCode::Muted),
        "{refused}"
    );
    t.line("/mute bob 0");
    t.wait_for("(bob may speak again)").await;
    t.line("/rename ops");
    t.wait_for("(alice renamed the group to ops)").await;
    t.line("/announce read the rules");
    t.wait_for("(alice set the announcement: read the rules)")
        .await;
    t.line("/mute bob soon");
    t.wait_for("MINUTES is a number").await;

    t.line("/block bob");
    t.wait_for("bob is blocked").await;
    let refused = b
        .send(OutMessage::text_to("alice", "hello?"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(tern_client::ErrorCode::Blocked),
        "{refused}"
    );
    t.line("/unblock bob");
    t.wait_for("bob is unblocked").await;

    t.line("/dissolve");
    t.wait_for("(alice dissolved the group (it stays readable))")
        .await;
    let refused = b
        .send(OutMessage::text_to_group(&gid, "still here?"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(tern_client::ErrorCode::Forbidden),
        "{refused}"
    );
    t.line("/quit");
}

/// 5.3 from the terminal: the display name, pin and silence of the open
/// conversation, sessions listed and ended; profile and settings events
/// shown as lines.
#[tokio::test]
async fn chat_profile_settings_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let tern = Tern::start(dir.path()).await;
    let url = format!("http://{}", tern.addr);
    let server = Client::new(&url).unwrap();
    server.register("bob", PASSWORD, None).await.unwrap();
    let bob = server.login("bob", PASSWORD).await.unwrap();
    let (b, mut be) = bob.connect("phone").await.unwrap();

    // The pane stays after the chat exits (its session ends at the end).
    let cmd = format!(
        "{} chat --url {url} --user alice --register; sleep 60",
        env!("CARGO_BIN_EXE_tern")
    );
    let t = Tmux::start(&cmd);
    t.wait_for("password for alice:").await;
    t.line(PASSWORD);
    t.wait_for("logged in as alice").await;
    t.line("/friend bob");
    t.wait_for("bob: Requested").await;
    bob.add_friend("alice").await.unwrap();
    t.wait_for("you and bob are friends").await;

    // Bob's new name shows; alice's reaches bob.
    bob.update_profile(Some("Bob B."), Some("av-9"))
        .await
        .unwrap();
    t.wait_for("* bob's profile: name Bob B., avatar av-9")
        .await;
    t.line("/name Alice A.");
    t.wait_for("* your name is now Alice A.").await;
    let p = tokio::time::timeout(WAIT, async {
        loop {
            // Bob's own change comes to his devices first.
            match be.recv().await {
                Some(Event::Profile(p)) if p.user == "alice" => return p,
                _ => {}
            }
        }
    })
    .await
    .expect("a profile event");
    assert_eq!((&*p.user, &*p.name), ("alice", "Alice A."));
    t.line("/name");
    t.wait_for("/name NAME").await;

    // Pin and silence the conversation with bob.
    b.send(OutMessage::text_to("alice", "hi")).await.unwrap();
    t.line("/open bob");
    t.wait_for("#1 bob: hi").await;
    t.line("/pin");
    t.wait_for("* bob: pinned, not silenced").await;
    t.line("/silence 30");
    t.wait_for("* bob: pinned, silent until").await;
    t.line("/unpin");
    t.wait_for("* bob: not pinned, silent until").await;
    t.line("/silence forever");
    t.wait_for("/silence MINUTES: a number from 0").await;
    let alice = server.login("alice", PASSWORD).await.unwrap();
    let entry = |s: tern_client::wire::SyncAnswer<'static>| {
        s.convs
            .into_iter()
            .find(|c| c.conv == "dm:alice:bob")
            .map(|c| (c.muted_until > 0, c.pinned))
    };
    assert_eq!(
        entry(alice.conversations().await.unwrap()),
        Some((true, false))
    );
    t.line("/silence 0");
    t.wait_for("* bob: not pinned, not silenced").await;
    assert_eq!(
        entry(alice.conversations().await.unwrap()),
        Some((false, false))
    );

    // Sessions: the chat's own, and a tablet's, ended from the chat.
    let (_tablet, mut te) = alice.connect("tablet").await.unwrap();
    let tablet_session = alice
        .sessions()
        .await
        .unwrap()
        .sessions
        .into_iter()
        .find(|s| s.current)
        .expect("the tablet's session")
        .session
        .into_owned();
    t.line("/sessions");
    t.wait_for("online: chat (this one)").await;
    t.wait_for(&format!("{tablet_session} last seen")).await;
    t.wait_for("online: tablet").await;
    t.line(&format!("/signout {tablet_session}"));
    t.wait_for(&format!("* session {tablet_session} ended"))
        .await;
    let end = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Event::Disconnected { code, .. }) = te.recv().await {
                return code;
            }
        }
    })
    .await
    .expect("the tablet's session ends");
    assert_eq!(end, Some(4001));
    t.line("/signout nope");
    t.wait_for("not_found").await;
    t.line("/signout all");
    t.wait_for("* every session ended, this one too").await;
    t.wait_for("* session ended").await;
}
