//! `tern chat`: a line-mode terminal client for people, on `tern-client`.
//!
//! It prints the conversation list (unread counts, presence), then reads
//! commands and text from standard input while events from the session are
//! printed as they arrive. Plain text goes to the open conversation;
//! commands start with `/` (see [`HELP`]). Marks after one's own messages:
//! `✓` delivered, `✓✓` read by the other party.

mod view;
// 5.4 and blocks
mod events;
// 5.3
mod settings;

use anyhow::Context;
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use tern_client::{Client, Event, OutMessage, Session, Target};
use view::{Chat, Open};

#[derive(Args)]
pub struct ChatArgs {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// User to log in as.
    #[arg(long)]
    user: String,
    /// Create the account first.
    #[arg(long)]
    register: bool,
    /// Read the password from the first line of standard input instead of
    /// prompting for it.
    #[arg(long)]
    password_stdin: bool,
    /// Device name of this session.
    #[arg(long, default_value = "chat")]
    device: String,
}

pub const HELP: &str = "\
commands:
  /list                    conversations, unread counts, presence
  /open USER | #GROUP | N  open a conversation (N: its number in /list)
  /more                    older messages of the open conversation
  /search WORDS            messages holding every word, newest first
  /group NAME USER...      create a group with these members
  /invite USER...          add users to the open group
  /leave                   leave the open group
  /friend USER             ask USER to be friends (or accept)
  /block USER, /unblock USER   block a user (1:1 messages, requests, presence)
  /admin USER, /unadmin USER   make or unmake an admin of the open group (owner)
  /mute USER MINUTES       mute a member of the open group (0: unmute)
  /rename NAME             rename the open group (owner, admins)
  /announce TEXT           set the open group's announcement (empty: clear)
  /dissolve                dissolve the open group (owner; it stays readable)
  /edit SEQ TEXT           edit your message SEQ of the open conversation
  /reply SEQ TEXT          answer message SEQ of the open conversation
  /react SEQ EMOJI, /unreact SEQ EMOJI   react to message SEQ, or take it back
  /send-file PATH          upload a file and send it (an image for png/jpeg/gif/webp)
  /name NAME               change your display name
  /pin, /unpin             pin the open conversation to the top, or unpin it
  /silence MINUTES         no offline push for the open conversation (0: again)
  /sessions                your sessions and their online devices
  /signout ID | all        end one session (an ID of /sessions) or every one
  /help                    this list
  /quit                    leave
anything else is sent to the open conversation";

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let password = read_password(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(chat(args, password))
}

/// The password: a prompt without echo on a terminal, else the first line.
fn read_password(args: &ChatArgs) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal() && !args.password_stdin;
    if tty {
        print!("password for {}: ", args.user);
        std::io::stdout().flush()?;
        echo(false);
    }
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if tty {
        echo(true);
        println!();
    }
    r.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Turns terminal echo off or on (for the password prompt).
fn echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

async fn chat(args: ChatArgs, password: String) -> anyhow::Result<()> {
    let server = Client::new(&args.url)?;
    if args.register {
        server
            .register(&args.user, &password, None)
            .await
            .context("registering")?;
        println!("registered {}", args.user);
    }
    let me = server
        .login(&args.user, &password)
        .await
        .context("logging in")?;
    let (session, mut events) = me.connect(&args.device).await.context("connecting")?;
    println!(
        "logged in as {} on {}. /help lists the commands.",
        args.user, args.url
    );
    let mut chat = Chat::new(args.user.clone());

    // Standard input is read by the same (std) reader that read the
    // password, on a thread of its own, so no buffered line is lost.
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                match command(&mut chat, &me, &session, line.trim()).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => println!("! {e:#}"),
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                if let Err(e) = on_event(&mut chat, &session, ev).await {
                    println!("! {e:#}");
                }
            }
        }
        std::io::stdout().flush()?;
    }
    session.close().await;
    Ok(())
}

/// One line of input; `false` to quit.
async fn command(chat: &mut Chat, me: &Client, s: &Session, line: &str) -> anyhow::Result<bool> {
    let mut words = line.split_whitespace();
    match words.next() {
        None => {}
        Some("/quit") => return Ok(false),
        Some("/help") => println!("{HELP}"),
        Some("/list") => {
            refresh(chat, s).await?;
            print!("{}", chat.list());
        }
        Some("/open") => {
            let Some(what) = words.next() else {
                anyhow::bail!("/open USER, #GROUP or a number of /list");
            };
            let open = chat.resolve(what)?;
            open_conv(chat, s, open).await?;
        }
        Some("/more") => {
            let Some(open) = chat.open.clone() else {
                anyhow::bail!("no conversation is open");
            };
            let before = chat.oldest_shown.unwrap_or(1);
            if before <= 1 {
                println!("(start of the conversation)");
            } else {
                let h = s.history(&open.conv, Some(before), None, Some(20)).await?;
                if let Some(m) = h.msgs.first() {
                    chat.oldest_shown = Some(m.seq);
                }
                for m in &h.msgs {
                    println!("{}", chat.line(m));
                }
            }
        }
        Some("/search") => {
            let q = words.collect::<Vec<_>>().join(" ");
            if q.is_empty() {
                anyhow::bail!("/search WORDS");
            }
            let found = s.search(&q, None, Some(20), None).await?;
            if found.hits.is_empty() {
                println!("(nothing found)");
            }
            for m in &found.hits {
                println!("[{}] {}", m.conv, chat.line(m));
            }
        }
        Some("/group") => {
            let Some(name) = words.next() else {
                anyhow::bail!("/group NAME USER...");
            };
            let members: Vec<&str> = words.collect();
            let g = me.create_group(name, &members).await?;
            println!(
                "created group {} ({}) with {}",
                g.group,
                g.name,
                g.members.join(", ")
            );
            refresh(chat, s).await?;
        }
        Some("/invite") => {
            let Some(Open {
                target: Target::Group(g),
                ..
            }) = chat.open.clone()
            else {
                anyhow::bail!("open a group first");
            };
            let users: Vec<&str> = words.collect();
            let a = me.add_members(&g, &users).await?;
            println!("members of {}: {}", a.group, a.members.join(", "));
        }
        Some("/leave") => {
            let Some(Open {
                target: Target::Group(g),
                ..
            }) = chat.open.clone()
            else {
                anyhow::bail!("open a group first");
            };
            me.remove_member(&g, &chat.me).await?;
            println!("left group {g}");
            chat.open = None;
        }
        Some("/friend") => {
            let Some(user) = words.next() else {
                anyhow::bail!("/friend USER");
            };
            let a = me.add_friend(user).await?;
            println!("{user}: {:?}", a.status);
        }
        // 5.4 and blocks
        Some(c @ ("/block" | "/unblock")) => {
            let Some(user) = words.next() else {
                anyhow::bail!("{c} USER");
            };
            let on = c == "/block";
            me.block(user, on).await?;
            println!("{user} is {}", if on { "blocked" } else { "unblocked" });
        }
        Some(c @ ("/admin" | "/unadmin" | "/mute" | "/rename" | "/announce" | "/dissolve")) => {
            let Some(Open {
                target: Target::Group(g),
                ..
            }) = chat.open.clone()
            else {
                anyhow::bail!("open a group first");
            };
            let rest = line[c.len()..].trim();
            moderate(me, &g, c, rest).await?;
        }
        // 5.1
        Some(c @ ("/edit" | "/reply" | "/react" | "/unreact")) => {
            let Some(open) = chat.open.clone() else {
                anyhow::bail!("open a conversation first (/open USER)");
            };
            let seq: Option<u64> = words.next().and_then(|w| w.parse().ok());
            let Some(seq) = seq else {
                anyhow::bail!("{c} SEQ ...");
            };
            let rest: Vec<&str> = words.collect();
            let rest = rest.join(" ");
            if rest.is_empty() {
                anyhow::bail!("{c} SEQ needs a text or an emoji");
            }
            match c {
                "/edit" => {
                    s.edit(&open.conv, seq, &rest.as_str().into()).await?;
                    println!("* edited message #{seq}");
                }
                "/reply" => {
                    let msg = OutMessage::new(open.target.clone(), "text", &rest.as_str().into())?
                        .reply_to(seq);
                    let sent = s.send(msg).await?;
                    chat.sent(&sent.conv, sent.seq);
                    println!("{}", chat.own_line(sent.seq, &rest));
                }
                _ => {
                    let on = c == "/react";
                    s.react(&open.conv, seq, &rest, on).await?;
                }
            }
        }
        // 5.3
        Some(c @ ("/name" | "/pin" | "/unpin" | "/silence" | "/sessions" | "/signout")) => {
            let rest = line[c.len()..].trim();
            settings::command(chat, me, c, rest).await?;
        }
        // 5.5
        Some("/send-file") => {
            let path = line["/send-file".len()..].trim();
            send_file(chat, me, s, path).await?;
        }
        Some(c) if c.starts_with('/') => anyhow::bail!("unknown command {c}; /help lists them"),
        Some(_) => {
            let Some(open) = chat.open.clone() else {
                anyhow::bail!("open a conversation first (/open USER)");
            };
            let msg = OutMessage::new(open.target.clone(), "text", &line.into())?;
            let sent = s.send(msg).await?;
            chat.sent(&sent.conv, sent.seq);
            println!("{}", chat.own_line(sent.seq, line));
        }
    }
    Ok(true)
}

/// 5.5 `/send-file PATH`: uploads the file, then sends it to the open
/// conversation, as an `image` for png/jpeg/gif/webp, else as a `file`.
async fn send_file(chat: &mut Chat, me: &Client, s: &Session, path: &str) -> anyhow::Result<()> {
    if path.is_empty() {
        anyhow::bail!("/send-file PATH");
    }
    let Some(open) = chat.open.clone() else {
        anyhow::bail!("open a conversation first (/open USER)");
    };
    let p = std::path::Path::new(path);
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (kind, mime) = match ext.as_str() {
        "png" => ("image", "image/png"),
        "jpg" | "jpeg" => ("image", "image/jpeg"),
        "gif" => ("image", "image/gif"),
        "webp" => ("image", "image/webp"),
        "pdf" => ("file", "application/pdf"),
        "zip" => ("file", "application/zip"),
        "txt" => ("file", "text/plain"),
        _ => ("file", "application/octet-stream"),
    };
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let bytes = tokio::fs::read(p)
        .await
        .with_context(|| format!("reading {path}"))?;
    let up = me.upload_media(bytes, mime, Some(name)).await?;
    let content = serde_json::json!({"media": up.media, "name": name});
    let msg = OutMessage::new(open.target.clone(), kind, &content)?;
    let sent = s.send(msg).await?;
    chat.sent(&sent.conv, sent.seq);
    println!(
        "{}",
        chat.own_line(sent.seq, &format!("[{kind} {name}, {} bytes]", up.size))
    );
    Ok(())
}

/// A group command of 5.4 on group `g`; `rest` is the line after the
/// command. The group's members see its `system` event.
async fn moderate(me: &Client, g: &str, cmd: &str, rest: &str) -> anyhow::Result<()> {
    let mut words = rest.split_whitespace();
    match cmd {
        "/admin" | "/unadmin" => {
            let Some(user) = words.next() else {
                anyhow::bail!("{cmd} USER");
            };
            me.set_admin(g, user, cmd == "/admin").await?;
        }
        "/mute" => {
            let (Some(user), Some(minutes)) = (words.next(), words.next()) else {
                anyhow::bail!("/mute USER MINUTES (0: unmute)");
            };
            let minutes: i64 = minutes
                .parse()
                .ok()
                .filter(|m| (0..=525_600).contains(m))
                .context("MINUTES is a number from 0 to 525600")?;
            let until = (minutes > 0).then(|| now_ms() + minutes * 60_000);
            me.mute_member(g, user, until).await?;
        }
        "/rename" if rest.is_empty() => anyhow::bail!("/rename NAME"),
        "/rename" => {
            me.update_group(g, Some(rest), None, None).await?;
        }
        "/announce" => {
            me.update_group(g, None, Some(rest), None).await?;
        }
        _ => {
            me.dissolve_group(g).await?;
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn refresh(chat: &mut Chat, s: &Session) -> anyhow::Result<()> {
    let sync = s.sync(None, None).await?;
    chat.synced(&sync);
    let peers = chat.peers();
    if !peers.is_empty() {
        let refs: Vec<&str> = peers.iter().map(String::as_str).collect();
        let p = s.presence(&refs).await?;
        for (u, on) in p.online {
            chat.presence.insert(u.into_owned(), on);
        }
    }
    Ok(())
}

/// Opens a conversation: its last messages, and everything read.
async fn open_conv(chat: &mut Chat, s: &Session, open: Open) -> anyhow::Result<()> {
    println!("--- {} ---", open.title);
    let h = s.history(&open.conv, None, None, Some(20)).await?;
    chat.oldest_shown = h.msgs.first().map(|m| m.seq);
    chat.open = Some(open.clone());
    for m in &h.msgs {
        println!("{}", chat.line(m));
    }
    if let Some(last) = h.msgs.last() {
        read(chat, s, &open.conv, last.seq).await?;
    }
    Ok(())
}

async fn read(chat: &mut Chat, s: &Session, conv: &str, seq: u64) -> anyhow::Result<()> {
    if chat.needs_read(conv, seq) {
        s.read(conv, seq).await?;
        chat.read(conv, seq);
    }
    Ok(())
}

async fn on_event(chat: &mut Chat, s: &Session, ev: Event) -> anyhow::Result<()> {
    match ev {
        Event::Connected { resumed: true, .. } => println!("* connected again"),
        Event::Connected { .. } => {}
        Event::Synced(sync) => {
            let first = chat.convs.is_empty();
            chat.synced(&sync);
            if first {
                refresh(chat, s).await?;
                print!("{}", chat.list());
            }
        }
        Event::Message(m) => {
            let open = chat.open.as_ref().is_some_and(|o| o.conv == m.conv);
            chat.received(&m);
            if open {
                println!("{}", chat.line(&m));
                read(chat, s, &m.conv.clone(), m.seq).await?;
            } else if m.from != chat.me {
                let unread = chat.convs.get(m.conv.as_ref()).map_or(0, |c| c.unread);
                println!(
                    "* new message in {} from {} (unread {unread})",
                    chat.title(&m.conv),
                    m.from
                );
            }
        }
        Event::Receipt(r) => {
            if let Some(line) = chat.receipt(&r) {
                println!("{line}");
            }
        }
        Event::Typing(t) => {
            if chat.open.as_ref().is_some_and(|o| o.conv == t.conv) {
                println!("* {} is typing…", t.user);
            }
        }
        Event::Presence(p) => {
            chat.presence.insert(p.user.to_string(), p.online);
            println!(
                "* {} is {}",
                p.user,
                if p.online { "online" } else { "offline" }
            );
        }
        Event::Friend(f) => match &*f.status {
            "incoming" => println!("* {} asked to be your friend (/friend {0} accepts)", f.user),
            "outgoing" => println!("* you asked {} to be your friend", f.user),
            "friends" => println!("* you and {} are friends", f.user),
            _ => println!("* {} is no longer your friend", f.user),
        },
        Event::Recalled(r) => println!(
            "* {} recalled message #{} in {}",
            r.by,
            r.seq,
            chat.title(&r.conv)
        ),
        Event::Edited(e) => println!(
            "* {} edited message #{} in {}: {}",
            e.by,
            e.seq,
            chat.title(&e.conv),
            e.content.get()
        ),
        Event::Reaction(r) => println!(
            "* {} {} {} on message #{} in {}",
            r.user,
            if r.on { "reacted" } else { "took back" },
            r.emoji,
            r.seq,
            chat.title(&r.conv)
        ),
        Event::Profile(p) => println!("{}", settings::profile_text(&p, &chat.me)),
        Event::ConvSettings(c) => println!(
            "{}",
            settings::conv_settings_text(&chat.title(&c.conv), &c, now_ms())
        ),
        Event::Disconnected {
            reconnecting,
            reason,
            ..
        } => {
            if reconnecting {
                println!("* disconnected ({reason}); reconnecting");
            } else {
                println!("* session ended ({reason})");
            }
        }
        Event::ServerError(e) => println!("! {}: {}", e.code, e.message),
        Event::OfflineDone { .. } | Event::Notify(_) | Event::RoomMessage(_) => {}
    }
    Ok(())
}
