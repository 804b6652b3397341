//! A bot that answers every text message with the same text.
//!
//! ```sh
//! tern serve &
//! cargo run -p tern-client --example echo_bot -- http://127.0.0.1:8080 echo password1
//! ```
//!
//! It registers the account if it does not exist yet, then runs until the
//! session ends (Ctrl-C to stop). The session reconnects by itself when
//! the server restarts.

use tern_client::{Client, Event, OutMessage, Target};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let user = args.next().unwrap_or_else(|| "echo".into());
    let password = args.next().unwrap_or_else(|| "password1".into());

    let server = Client::new(&url)?;
    match server.register(&user, &password, Some("Echo bot")).await {
        Ok(()) => println!("registered {user}"),
        Err(e) if e.code() == Some(tern_client::ErrorCode::UserExists) => {}
        Err(e) => return Err(e.into()),
    }
    let me = server.login(&user, &password).await?;
    let (session, mut events) = me.connect("bot").await?;
    println!("{user} is listening on {url}");

    while let Some(ev) = events.recv().await {
        match ev {
            Event::Message(m) if m.from != user && m.kind == "text" => {
                let text: String = m
                    .content
                    .as_ref()
                    .and_then(|c| serde_json::from_str(c.get()).ok())
                    .unwrap_or_default();
                let to = match &m.group {
                    Some(g) => Target::Group(g.to_string()),
                    None => Target::User(m.from.to_string()),
                };
                let reply = OutMessage::new(to, "text", &serde_json::Value::from(text))?;
                session.send(reply).await?;
                session.read(&m.conv, m.seq).await?;
            }
            Event::Disconnected {
                reconnecting: false,
                reason,
                ..
            } => println!("session ended: {reason}"),
            _ => {}
        }
    }
    Ok(())
}
